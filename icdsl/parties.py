"""Who is who on a document: our company (the seller, declared once with ``company``) and each
partner's legal details (``address``, ``postcode``, ``city``, ``tax id``, ``registration``, ``iban``,
``bic``, ``peppol``, ``contact`` in its ``partner`` block), and how its documents are written
(``locale``, ``template``: :mod:`icdsl.layouts`).

- :class:`Party` holds the declared details (plain text, as written, except the IBAN and VAT
  identifier, kept compact: no spaces, upper case).
- :func:`check_field` validates one detail offline: the IBAN's ISO 13616 mod-97 checksum and
  country length, the VAT identifier's format and check digits for its EU country
  (``python-stdnum``: ``stdnum.eu.vat``; ``GB`` and ``CH`` too), a BIC's shape, a Peppol
  endpoint's ``SCHEME:ID`` form. It returns the problem as text, or None.
- :func:`missing_for_invoice` lists what a document needs and the parties lack (EN 16931:
  seller name, postal address with country, VAT identifier, bank account; buyer name, postal
  address with country, and the buyer's VAT identifier when the invoice is reverse-charged), each
  with where to declare it. Finalizing refuses a document with such a gap (the built-in
  ``parties`` validator of :mod:`icdsl.validators`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from stdnum import get_cc_module, iban
from stdnum.exceptions import ValidationError

#: EU member states (VAT identifiers use EL for Greece) and the ones stdnum also checks
EU_COUNTRIES = frozenset(["AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE", "IT", "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK"])

_BIC = re.compile(r"^[A-Z]{4}[A-Z]{2}[A-Z0-9]{2}([A-Z0-9]{3})?$")
_PEPPOL = re.compile(r"^[0-9]{4}:[^\s:]{1,125}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True, slots=True)
class Contact:
    name: str
    email: str | None = None
    phone: str | None = None


@dataclass(frozen=True, slots=True)
class Template:
    """A document layout a party names (``template "FILE" [stream NAME]``): the file's text as
    the rules were loaded with it (a TOML layout, :mod:`icdsl.layouts`)."""

    stream: str | None
    name: str
    text: str


@dataclass(frozen=True, slots=True)
class Party:
    """A seller or buyer as a document names it."""

    code: str
    name: str
    country: str | None = None
    address: tuple[str, ...] = ()
    postcode: str | None = None
    city: str | None = None
    vat: str | None = None
    registration: str | None = None
    iban: str | None = None
    bic: str | None = None
    peppol: str | None = None
    contacts: tuple[Contact, ...] = field(default=())
    locale: str | None = None  # how numbers and dates are written on its documents (babel: de_DE)
    templates: tuple[Template, ...] = ()  # its documents' layouts (icdsl.layouts), per stream

    def as_json(self) -> dict[str, Any]:
        out = {"code": self.code, "name": self.name, "country": self.country, "address": list(self.address),
               "postcode": self.postcode, "city": self.city, "vat": self.vat, "registration": self.registration,
               "iban": self.iban, "bic": self.bic, "peppol": self.peppol,
               "contacts": [{"name": c.name, "email": c.email, "phone": c.phone} for c in self.contacts]}
        # (only when declared: the details of a party that declares neither stay as they were stored)
        if self.locale:
            out["locale"] = self.locale
        if self.templates:
            out["templates"] = [{"stream": t.stream, "name": t.name, "text": t.text} for t in self.templates]
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any] | None) -> Party | None:
        if not d:
            return None
        return cls(code=d.get("code") or "", name=d.get("name") or "", country=d.get("country"),
                   address=tuple(d.get("address") or ()), postcode=d.get("postcode"), city=d.get("city"),
                   vat=d.get("vat"), registration=d.get("registration"), iban=d.get("iban"), bic=d.get("bic"),
                   peppol=d.get("peppol"),
                   contacts=tuple(Contact(c.get("name") or "", c.get("email"), c.get("phone"))
                                  for c in d.get("contacts") or ()),
                   locale=d.get("locale"),
                   templates=tuple(Template(t.get("stream"), t.get("name") or "", t.get("text") or "")
                                   for t in d.get("templates") or ()))

    @property
    def has_details(self) -> bool:
        return bool(self.address or self.postcode or self.city or self.vat or self.registration or self.iban
                    or self.peppol or self.contacts)


def compact(key: str, text: str) -> str:
    """The stored form of a detail: IBAN, VAT identifier and BIC without spaces, upper case."""
    if key in ("iban", "vat", "bic"):
        return re.sub(r"[\s.\-]", "", text).upper()
    return text.strip()


def vat_country(vat: str) -> str:
    """The ISO country of a VAT identifier (Greece's prefix EL is GR)."""
    prefix = vat[:2].upper()
    return "GR" if prefix == "EL" else prefix


def check_field(key: str, text: str, country: str | None = None) -> str | None:
    """What is wrong with one declared detail, or None. ``country``: the party's country (a VAT
    identifier of another country is accepted: a company may be registered abroad; an EU one
    must carry its country prefix)."""
    value = compact(key, text)
    if not value:
        return f"the {key} is empty"
    if key == "iban":

        try:
            iban.validate(value)  # ISO 13616: country length and mod-97
        except ValidationError as exc:
            return f"'{text}' is not a valid IBAN: {_reason(exc, 'the mod-97 check digits do not match')}"
        return None
    if key == "vat":
        prefix = vat_country(value)
        module = _vat_module(prefix)
        if module is None:
            if country in EU_COUNTRIES or prefix in EU_COUNTRIES:
                return f"'{text}' does not start with an EU country prefix (e.g. FR, DE, EL)"
            if not re.fullmatch(r"[A-Z]{2}[A-Z0-9]{2,13}", value):
                return f"'{text}' is not a VAT identifier: a country prefix then 2 to 13 letters or digits"
            return None
        try:
            module.validate(value)
        except ValidationError as exc:
            return f"'{text}' is not a valid {prefix} VAT identifier: {_reason(exc, 'wrong format or check digits')}"
        return None
    if key == "bic":
        if not _BIC.match(value):
            return f"'{text}' is not a BIC: 8 or 11 characters, bank (4 letters), country (2), place (2), branch (3)"
        return None
    if key == "peppol":
        if not _PEPPOL.match(value):
            return (f"'{text}' is not a Peppol endpoint: write the scheme's 4 digits, ':' and the identifier, "
                    "e.g. \"0009:30326504500017\" (SIRET) or \"0088:5790000435975\" (GLN)")
        return None
    if key == "email" and not _EMAIL.match(value):
        return f"'{text}' is not an email address"
    return None


def _reason(exc: Exception, default: str) -> str:
    msg = str(exc).strip().rstrip(".")
    return msg[0].lower() + msg[1:] if msg else default


def _vat_module(prefix: str) -> Any:
    """stdnum's VAT module of a country (EU members, GB, CH), or None."""
    if prefix in EU_COUNTRIES or prefix in ("GB", "CH"):
        return get_cc_module(prefix.lower(), "vat")
    return None


@dataclass(frozen=True, slots=True)
class Gap:
    """A detail a document needs and a party lacks: ``where`` says where to declare it."""

    party: str  # "seller" | "buyer"
    what: str
    where: str

    def __str__(self) -> str:
        return f"{self.party}: {self.what} (declare it {self.where})"


def missing_for_invoice(seller: Party | None, buyer: Party | None, *, reverse_charge: bool = False,
                        taxed: bool = True) -> list[Gap]:
    """What EN 16931 requires of the parties of an invoice or credit note, and they lack."""
    out: list[Gap] = []
    if seller is None:
        out.append(Gap("seller", "no company is declared: our legal name, address, VAT identifier and bank account",
                       "with a `company CODE \"Legal name\" { ... }` block in the rules"))
    else:
        where = f"in `company {seller.code}`"
        if not seller.address:
            out.append(Gap("seller", "street address", f"{where} as `address \"...\"`"))
        if not seller.city:
            out.append(Gap("seller", "city", f"{where} as `city \"...\"`"))
        if not seller.postcode:
            out.append(Gap("seller", "postcode", f"{where} as `postcode \"...\"`"))
        if not seller.country:
            out.append(Gap("seller", "country", f"{where} as `country XX`"))
        if not seller.vat and (taxed or reverse_charge):
            out.append(Gap("seller", "VAT identifier", f"{where} as `tax id \"...\"`"))
        if not seller.iban:
            out.append(Gap("seller", "bank account (IBAN) for payment", f"{where} as `iban \"...\"`"))
    if buyer is not None:
        where = f"in `partner {buyer.code}`"
        if not buyer.address:
            out.append(Gap("buyer", "street address", f"{where} as `address \"...\"`"))
        if not buyer.city:
            out.append(Gap("buyer", "city", f"{where} as `city \"...\"`"))
        if not buyer.country:
            out.append(Gap("buyer", "country", f"{where} as `country XX`"))
        if reverse_charge and not buyer.vat:
            out.append(Gap("buyer", "VAT identifier (required on a reverse-charge invoice)",
                           f"{where} as `tax id \"...\"`"))
    return out
