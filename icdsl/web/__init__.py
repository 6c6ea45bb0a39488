"""The web face of icdsl: the partner portal (``icdsl serve``, :mod:`icdsl.web.app`).

Above the billing store like the command line and the TUI: it reads and writes only through
:mod:`icdsl.billing.portal` and :mod:`icdsl.billing.accounts`, whose every call is scoped to the
principal asking.
"""
