"""Apache PDFBox Preflight, the PDF/A validator Debian packages (``libpdfbox2-java``), run on a PDF.

Preflight validates PDF/A-1b (ISO 19005-1) only; there is no PDF/A-3 validator in the package
registries this project reaches (veraPDF is on none of them). A Factur-X file is PDF/A-3b, which
is PDF/A-1b's rules but for what PDF/A-2/3 allow: so Preflight's findings are read against
:data:`ALLOWED_IN_PDFA3`, the findings whose rule PDF/A-3 relaxes, and every other finding is an
error. What PDF/A-3 adds (the embedded file's relationship and type) is checked by the tests.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

JARS = ("preflight", "pdfbox2", "fontbox2", "xmpbox", "commons-logging", "javax.activation", "jaxb-api")
PACKAGES = "default-jre-headless libpdfbox2-java libactivation-java libjaxb-api-java"

#: Preflight's findings (code, text) that PDF/A-3 allows, with the clause that allows them
ALLOWED_IN_PDFA3 = (
    # ISO 19005-3 6.8: embedded files of any kind, with their relationship (the Factur-X XML)
    ("1.4.7", re.compile(r"EmbeddedFile entry is present in the Names dictionary")),
    ("1.2.9", re.compile(r"EmbeddedFile entry is present in a FileSpecification dictionary")),
    # ISO 19005-3 6.2.11.4.2: a CIDSet is optional (required by PDF/A-1 only)
    ("3.1.11", re.compile(r"The CIDSet entry is missing for the Composite Subset")),
    # the identification says part 3, as it must (PDF/A-1b wants 1)
    ("7.11.2", re.compile(r"part must be 1")),
)


def classpath() -> str | None:
    paths = [Path("/usr/share/java") / f"{name}.jar" for name in JARS]
    if shutil.which("java") is None or not all(p.exists() for p in paths):
        return None
    return ":".join(str(p) for p in paths)


def require() -> str:
    cp = classpath()
    if cp is None:
        reason = f"Apache PDFBox Preflight is not installed (apt-get install {PACKAGES})"
        if os.environ.get("ICDSL_REQUIRE_PDFBOX"):
            pytest.fail(f"{reason}; .ci/run installs it and sets ICDSL_REQUIRE_PDFBOX=1")
        pytest.skip(reason)
    return cp


def findings(path: Path) -> list[tuple[str, str]]:
    """Preflight's findings on ``path``: (code, text), none for a valid PDF/A-1b file."""
    cp = require()
    r = subprocess.run(["java", "-cp", cp, "org.apache.pdfbox.preflight.Validator_A1b", str(path)],
                       capture_output=True, text=True, timeout=120)
    out = r.stdout + r.stderr
    if "is a valid PDF/A-1b file" in out:
        return []
    found = re.findall(r"^(\d+(?:\.\d+)*) : (.+)$", out, flags=re.M)
    assert found, f"Preflight said neither valid nor what is wrong:\n{out}"
    return found


def pdfa3_errors(path: Path) -> list[tuple[str, str]]:
    """The findings PDF/A-3 does not allow."""
    return [(code, text) for code, text in findings(path)
            if not any(code == c and pattern.search(text) for c, pattern in ALLOWED_IN_PDFA3)]
