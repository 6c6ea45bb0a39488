"""icdsl-mediation: switch CDR readers for icdsl (Asterisk cdr_csv, FreeSWITCH mod_cdr_csv).

An icdsl plugin (entry point group ``icdsl``): ``icdsl rate --reader asterisk_csv
--reader-option timezone=Europe/Madrid --reader-option partner=ORFR ...``, or let the readers
claim the files by their content. See README.md for the options and the mapping rules.
"""

from __future__ import annotations

from icdsl.hookspecs import hookimpl

ICDSL_HOOK_API = 1
__version__ = "0.1.0"


@hookimpl
def icdsl_record_readers():
    from icdsl_mediation.asterisk import AsteriskCsv
    from icdsl_mediation.freeswitch import FreeswitchCsv

    return [AsteriskCsv, FreeswitchCsv]


@hookimpl
def icdsl_reject_reasons():
    from icdsl_mediation.cdr import REASONS

    return dict(REASONS)
