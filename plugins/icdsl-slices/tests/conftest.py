"""Make the plugin importable from its source tree, installed or not; the author kit's fixture."""

import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

from icdsl.testing import icdsl_kit  # noqa: E402,F401  (the fixture)
