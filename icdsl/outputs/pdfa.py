"""The last touches that make a Factur-X file PDF/A-3 conforming where its writers leave gaps.

fpdf2 writes the PDF (fonts embedded, the sRGB output intent) and the ``factur-x`` package embeds
the CII XML and writes the XMP metadata (``pdfaid:part`` 3, conformance B, the Factur-X extension
schema). What they leave, found by running a PDF/A validator on our files (Apache PDFBox
Preflight, ``tests/test_pdfa.py``) and by reading ISO 19005-3, is done here with pypdf:

- the document information dictionary and the XMP metadata must say the same (ISO 19005-3
  6.6.2.3.1): factur-x writes ``pdf:Producer`` "pypdf" and no ``pdf:Keywords`` in the XMP while
  the information dictionary keeps our producer and carries the keywords, and computes the two
  dates from two clock readings. The XMP is made to say what the dictionary says;
- each ``rdf:Description`` gets ``rdf:about=""`` (XMP as PDF/A-1 and its validators read it);
- the metadata stream is written unfiltered (PDF/A-1 forbids a filter on it; harmless in PDF/A-3);
- fpdf2 gives every page a transparency group though nothing on our pages is transparent: it is
  removed, so the file has no transparency at all.
"""

from __future__ import annotations

import copy
import io
import re
from datetime import datetime

from lxml import etree
from pypdf import PdfReader, PdfWriter
from pypdf.generic import DecodedStreamObject, NameObject

RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
PDF_NS = "http://ns.adobe.com/pdf/1.3/"
XMP_NS = "http://ns.adobe.com/xap/1.0/"


def xmp_date(pdf_date: str) -> str:
    """A PDF date (``D:20260331120000+00'00'``) as an XMP date (``2026-03-31T12:00:00+00:00``)."""
    m = re.fullmatch(r"D:(\d{14})(?:([+-])(\d\d)'?(\d\d)'?|Z.*)?", pdf_date.strip())
    if m is None:
        raise ValueError(f"not a PDF date: {pdf_date!r}")
    when = datetime.strptime(m.group(1), "%Y%m%d%H%M%S").strftime("%Y-%m-%dT%H:%M:%S")
    return f"{when}{m.group(2)}{m.group(3)}:{m.group(4)}" if m.group(2) else f"{when}+00:00"


def _xmp_like_info(xmp: bytes, info: dict[str, str]) -> bytes:
    root = etree.fromstring(xmp, etree.XMLParser(resolve_entities=False, no_network=True))
    descs = root.findall(f".//{{{RDF}}}Description")
    for d in descs:
        d.set(f"{{{RDF}}}about", "")

    def put(ns: str, prefix: str, name: str, value: str | None) -> None:
        found = root.findall(f".//{{{ns}}}{name}")
        if value is None:
            for el in found:
                el.getparent().remove(el)
            return
        if not found:
            desc = etree.SubElement(descs[0].getparent(), f"{{{RDF}}}Description", nsmap={prefix: ns})
            desc.set(f"{{{RDF}}}about", "")
            found = [etree.SubElement(desc, f"{{{ns}}}{name}")]
        for el in found:
            el.text = value

    put(PDF_NS, "pdf", "Producer", info.get("/Producer"))
    put(PDF_NS, "pdf", "Keywords", info.get("/Keywords"))
    for key, name in (("/CreationDate", "CreateDate"), ("/ModDate", "ModifyDate")):
        if info.get(key):
            put(XMP_NS, "xmp", name, xmp_date(info[key]))
    body = etree.tostring(_declared_locally(root), encoding="utf-8")
    return (b'<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?>\n' + body
            + b'\n<?xpacket end="w"?>')


def _declared_locally(root: etree._Element) -> etree._Element:
    """The same XMP with each namespace declared on the ``rdf:Description`` that uses it (as
    PDFBox's XMP reader expects; equivalent XML), none on the root."""
    meta = etree.Element(root.tag, nsmap={"x": etree.QName(root).namespace})
    rdf = etree.SubElement(meta, f"{{{RDF}}}RDF", nsmap={"rdf": RDF})
    for d in root.iter(f"{{{RDF}}}Description"):
        used = {el.prefix: etree.QName(el).namespace for el in d.iter() if isinstance(el.tag, str) and el.prefix}
        new = etree.SubElement(rdf, f"{{{RDF}}}Description", nsmap=used)
        for k, v in d.attrib.items():
            new.set(k, v)
        for child in d:
            new.append(copy.deepcopy(child))
    return meta


def finish(data: bytes) -> bytes:
    """The Factur-X PDF ``data`` with the gaps above closed (everything else as it was)."""
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    for page in writer.pages:
        group = page.get("/Group")
        if group is not None and group.get_object().get("/S") == "/Transparency":
            del page[NameObject("/Group")]
    info = {str(k): str(v) for k, v in (writer._info.get_object() if writer._info else {}).items()}
    catalog = writer._root_object
    old = catalog["/Metadata"].get_object()
    stream = DecodedStreamObject()
    stream.update({NameObject("/Type"): NameObject("/Metadata"), NameObject("/Subtype"): NameObject("/XML")})
    stream.set_data(_xmp_like_info(old.get_data(), info))
    catalog[NameObject("/Metadata")] = writer._add_object(stream)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


__all__ = ["finish", "xmp_date"]
