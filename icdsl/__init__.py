"""icdsl: interconnect billing as code.

The pipeline (see docs/architecture.md):
rule files -> lang (parse, check) -> plan (compile) -> rating (executors) -> billing -> outputs.
"""

__version__ = "0.1.0"
