# The fuzzers here run on demand (docs/testing.md, Fuzzing), never in the test suite: pytest
# collects nothing from this folder, even when it is named on the command line.
collect_ignore_glob = ["*.py"]
