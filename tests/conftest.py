"""Shared fixtures live in helpers.py (imported by name), so that conftest modules never shadow each other."""

import os

# A test's `icdsl` subprocess runs in-process, never in a developer's warm command server (whose
# environment is not the test's); tests/test_server.py starts (and stops) its own servers.
os.environ["ICDSL_SERVER"] = "0"
