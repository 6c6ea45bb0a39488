"""Derive tools/numbering.tsv, the numbering plan that make_deck.py prices.

This is how numbering.tsv was made; you do not need to run it: make_deck.py only reads the TSV,
so the decks can be rebuilt without it. It uses the public metadata that ships with the
`phonenumbers` package (ITU country codes, mobile ranges by carrier, NANP area codes), as of
phonenumbers 9.0.43; another version may give slightly different ranges.

    python tools/extract_numbering.py tools/numbering.tsv
"""

from __future__ import annotations

import collections
import re
import sys

from babel import Locale
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE
from phonenumbers.carrierdata import CARRIER_DATA
from phonenumbers.geodata import GEOCODE_DATA

HEADER = (
    "# A numbering plan for the example rate decks: E.164 prefix, destination, pricing zone, kind.\n"
    "# Derived from libphonenumber metadata (phonenumbers 9.0.43) by extract_numbering.py.\n"
    "# prefix\tdestination\tzone\tkind\n"
)

# Short English names where Babel's are long or formal.
NAMES = {
    "US": "United States", "GB": "United Kingdom", "RU": "Russia", "KR": "South Korea", "KP": "North Korea",
    "IR": "Iran", "SY": "Syria", "LA": "Laos", "VN": "Vietnam", "TW": "Taiwan", "BO": "Bolivia",
    "VE": "Venezuela", "TZ": "Tanzania", "MD": "Moldova", "CD": "Congo (DRC)", "CG": "Congo",
    "CI": "Ivory Coast", "BN": "Brunei", "MK": "North Macedonia", "PS": "Palestine", "FM": "Micronesia",
    "HK": "Hong Kong", "MO": "Macao", "CV": "Cape Verde", "SZ": "Eswatini", "MM": "Myanmar",
    "TL": "Timor-Leste", "CZ": "Czechia", "BA": "Bosnia and Herzegovina", "VA": "Vatican City",
    "ST": "Sao Tome and Principe", "KN": "St Kitts and Nevis", "LC": "St Lucia", "VC": "St Vincent",
    "PM": "St Pierre and Miquelon", "SH": "St Helena", "RE": "Reunion", "CW": "Curacao",
    "BL": "St Barthelemy", "TR": "Turkey", "AX": "Aland", "XK": "Kosovo",
}
EU = {"AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE",
      "IT", "LV", "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE"}
# The region that names a country code shared by several regions.
MAIN_REGION = {"44": "GB", "39": "IT", "47": "NO", "61": "AU", "262": "RE", "290": "SH", "358": "FI",
               "590": "GP", "599": "CW", "212": "MA", "7": "RU"}
# Mobile ranges (national digits) of markets whose carrier metadata is patchy.
MOBILE = {
    "33": ["6", "7"], "49": ["15", "16", "17"], "44": ["7"], "39": ["3"], "34": ["6", "7"],
    "45": ["2", "30", "31", "40", "41", "42", "50", "51", "52", "53", "60", "61", "71", "81", "91", "92", "93"],
    "55": ["119", "219", "319", "419", "519", "619", "719", "819", "859", "919"],
    "27": ["6", "71", "72", "73", "74", "76", "78", "79", "81", "82", "83", "84"],
    "91": ["6", "7", "8", "9"], "86": ["13", "15", "17", "18", "19"], "31": ["6"],
    "32": ["46", "47", "48", "49"], "41": ["75", "76", "77", "78", "79"],
    "43": ["650", "660", "664", "676", "680", "688", "699"],
    "48": ["45", "50", "51", "53", "57", "60", "66", "69", "72", "73", "78", "79", "88"],
    "351": ["91", "92", "93", "96"], "353": ["83", "85", "86", "87", "89"], "46": ["70", "72", "73", "76", "79"],
    "47": ["4", "9"], "358": ["4", "50"],
}
KAZAKHSTAN = [
    ("76", "Kazakhstan fixed", "fixed"), ("77", "Kazakhstan mobile", "mobile"),
    ("7700", "Kazakhstan mobile Altel", "mobile"), ("7701", "Kazakhstan mobile Kcell", "mobile"),
    ("7705", "Kazakhstan mobile Beeline", "mobile"), ("7707", "Kazakhstan mobile Tele2", "mobile"),
    ("7747", "Kazakhstan mobile Tele2", "mobile"), ("7771", "Kazakhstan mobile Beeline", "mobile"),
    ("7775", "Kazakhstan mobile Kcell", "mobile"), ("7777", "Kazakhstan mobile Beeline", "mobile"),
    ("7778", "Kazakhstan mobile Kcell", "mobile"),
]
CANADA = {"Alberta", "British Colombia", "British Columbia", "Manitoba", "Montreal, QC", "New Brunswick",
          "Newfoundland and Labrador", "Northwest Territories/Nunavut/Yukon", "Nova Scotia/Prince Edward Island",
          "Ontario", "Quebec", "Saskatchewan", "Toronto, ON"}
CARIBBEAN = {"1242": "BS", "1246": "BB", "1264": "AI", "1268": "AG", "1284": "VG", "1340": "VI", "1345": "KY",
             "1441": "BM", "1473": "GD", "1649": "TC", "1658": "JM", "1664": "MS", "1670": "MP", "1671": "GU",
             "1684": "AS", "1721": "SX", "1758": "LC", "1767": "DM", "1784": "VC", "1787": "PR", "1809": "DO",
             "1829": "DO", "1849": "DO", "1868": "TT", "1869": "KN", "1876": "JM", "1939": "PR"}
SPECIALS = [
    ("4470", "United Kingdom personal numbering", "europe_other", "special"),
    ("4476", "United Kingdom pagers", "europe_other", "special"),
    ("44843", "United Kingdom non-geographic", "europe_other", "special"),
    ("44844", "United Kingdom non-geographic", "europe_other", "special"),
    ("44845", "United Kingdom non-geographic", "europe_other", "special"),
    ("44870", "United Kingdom non-geographic", "europe_other", "special"),
    ("44871", "United Kingdom non-geographic", "europe_other", "special"),
    ("338", "France special services", "eu", "special"),
    ("339", "France VoIP", "eu", "fixed"),
    ("4932", "Germany national numbers", "eu", "special"),
    ("870", "Inmarsat", "satellite", "satellite"),
    ("881", "Global Mobile Satellite System", "satellite", "satellite"),
    ("8816", "Iridium", "satellite", "satellite"),
    ("8817", "Iridium", "satellite", "satellite"),
    ("882", "International Networks", "satellite", "satellite"),
    ("88213", "Thuraya", "satellite", "satellite"),
    ("88216", "Thuraya", "satellite", "satellite"),
]
MAX_RANGES = 12  # mobile ranges and operator rows kept per country


def country_name(iso: str, territories) -> str:
    name = NAMES.get(iso) or territories.get(iso, iso)
    return name.replace("&", "and").replace("\u2019", "'")


def zone(cc: str, iso: str) -> str:
    """A pricing zone: where the country is, roughly, as a carrier's price list groups them."""
    if cc == "1":
        return "nanp" if iso in ("US", "CA", "PR", "VI", "GU", "MP", "AS") else "caribbean"
    if cc in ("7", "992", "993", "994", "995", "996", "998"):
        return "cis"
    if cc in ("297", "590", "596", "599"):
        return "caribbean"
    if cc in ("298", "299", "90"):
        return "europe_other"
    if cc in ("870", "881", "882", "883"):
        return "satellite"
    if cc in ("61", "64"):
        return "oceania"
    first = cc[0]
    if first == "2":
        return "africa"
    if first in "34":
        return "eu" if iso in EU else "europe_other"
    if first == "5":
        return "latam"
    if first == "6":
        return "pacific" if cc[:2] in ("67", "68", "69") else "asia"
    if cc[:2] in ("96", "97", "98") and cc not in ("975", "976", "977"):
        return "middle_east"
    return "asia"


def collapse(prefixes) -> list[str]:
    """Replace complete sets of ten siblings by their parent; drop prefixes covered by a shorter one."""
    s = set(prefixes)
    changed = True
    while changed:
        changed = False
        for parent in {p[:-1] for p in s if len(p) > 1}:
            kids = {parent + str(d) for d in range(10)}
            if kids <= s:
                s = (s - kids) | {parent}
                changed = True
    return sorted(p for p in s if not any(p != q and p.startswith(q) for q in s))


def mobile_ranges(nationals: list[str]) -> list[str]:
    """The shortest prefixes (2 or 3 national digits) that cover the carrier ranges, at most 12."""
    for depth in (2, 3):
        ranges = collapse(n[:depth] for n in nationals if n)
        if sum(10.0 ** -len(p) for p in ranges) <= 0.35:
            break
    if len(ranges) > MAX_RANGES:
        weight = {p: sum(1 for n in nationals if n.startswith(p)) for p in ranges}
        ranges = sorted(sorted(ranges, key=lambda p: (-weight[p], p))[:MAX_RANGES])
    return ranges


def main(out_path: str) -> None:
    territories = Locale("en").territories
    codes = sorted((str(k) for k in COUNTRY_CODE_TO_REGION_CODE if k), key=len, reverse=True)
    by_cc: dict[str, list[tuple[str, str]]] = collections.defaultdict(list)
    for key, names in CARRIER_DATA.items():
        cc = next((c for c in codes if key.startswith(c)), None)
        if cc:
            by_cc[cc].append((key[len(cc):], names.get("en", "").strip()))

    rows: list[tuple[str, str, str, str]] = []
    for code, regions in sorted(COUNTRY_CODE_TO_REGION_CODE.items()):
        cc = str(code)
        iso = MAIN_REGION.get(cc, regions[0])
        if cc == "1" or iso == "001":
            continue
        z = zone(cc, iso)
        name = country_name(iso, territories)
        rows.append((cc, f"{name} fixed", z, "fixed"))
        if cc == "7":
            rows.append(("79", "Russia mobile", z, "mobile"))
            rows += [(p, d, z, k) for p, d, k in KAZAKHSTAN]
            continue
        nationals = [n for n, _ in by_cc.get(cc, [])]
        if not nationals:
            continue
        ranges = MOBILE.get(cc) or mobile_ranges(nationals)
        siblings = collections.Counter(p[:-1] for p in ranges if len(p) > 1)
        rows += [(cc + parent, f"{name} mobile", z, "mobile") for parent, n in siblings.items() if n >= 6]
        rows += [(cc + p, f"{name} mobile", z, "mobile") for p in ranges]
        # operator rows one digit below a range, where one carrier holds 80 % of the numbers
        carriers: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        for n, carrier in by_cc[cc]:
            for p in ranges:
                if n.startswith(p) and len(n) > len(p):
                    carriers[n[: len(p) + 1]][carrier] += 1
        for sub, counts in sorted(carriers.items())[:MAX_RANGES]:
            carrier, k = counts.most_common(1)[0]
            if carrier and k / sum(counts.values()) >= 0.8:
                carrier = re.sub(r"\s+", " ", carrier.split(",")[0].replace('"', "")).strip()
                carrier = carrier.title() if carrier.islower() else carrier
                rows.append((cc + sub, f"{name} mobile {carrier}", z, "mobile"))

    rows.append(("1", "United States", "nanp", "fixed"))
    for key in sorted(GEOCODE_DATA):
        if key.startswith("1") and len(key) == 4:
            where = GEOCODE_DATA[key]["en"]
            if where in CANADA:
                rows.append((key, "Canada", "nanp", "fixed"))
            elif where in ("Alaska", "Hawaii"):
                rows.append((key, f"United States {where}", "nanp", "fixed"))
            else:
                rows.append((key, "United States", "nanp", "fixed"))
    for npa, iso in CARIBBEAN.items():
        z = zone("1", iso)
        name = country_name(iso, territories)
        rows.append((npa, name, z, "fixed"))
        if z == "caribbean":
            mobiles = collapse(n[:4] for n, _ in by_cc["1"] if n.startswith(npa[1:]))
            rows += [("1" + p, f"{name} mobile", z, "mobile") for p in mobiles]
    rows += SPECIALS

    seen: set[str] = set()
    unique = []
    for r in rows:
        if r[0] not in seen:
            seen.add(r[0])
            unique.append(r)
    unique.sort(key=lambda r: r[0])
    with open(out_path, "w", encoding="utf-8", newline="\n") as f:
        f.write(HEADER)
        for r in unique:
            f.write("\t".join(r) + "\n")
    print(f"{len(unique)} prefixes written to {out_path}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tools/numbering.tsv")
