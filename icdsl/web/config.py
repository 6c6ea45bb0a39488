"""The portal's configuration: from the environment, or a TOML file (``icdsl serve --config``),
the file's values first, the environment's for what it leaves out, then the defaults.

=================  =======================  ==============================================
file key           environment              meaning
=================  =======================  ==============================================
``db``             ``ICDSL_DB``             the store's database URL
``data``           ``ICDSL_DATA``           the store's data folder
``secret_key``     ``ICDSL_SECRET_KEY``     signs the sign-in form's CSRF token (required,
                                            at least 32 characters)
``bind``           ``ICDSL_BIND``           ``HOST:PORT`` to listen on (127.0.0.1:8000)
``secure_cookies`` ``ICDSL_SECURE_COOKIES`` ``0`` only behind plain HTTP in development
``forwarded``      ``ICDSL_FORWARDED``      ``1``: trust X-Forwarded-For (behind a proxy)
=================  =======================  ==============================================
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ConfigError(Exception):
    """A configuration that cannot serve: the message says what to set."""


@dataclass(frozen=True)
class WebConfig:
    db: str | None
    data: str | None
    secret_key: str
    host: str = "127.0.0.1"
    port: int = 8000
    secure_cookies: bool = True
    forwarded: bool = False


def _flag(v: Any) -> bool:
    return v if isinstance(v, bool) else str(v).strip().lower() not in ("0", "false", "no", "off", "")


def load_config(path: str | os.PathLike[str] | None = None, env: dict[str, str] | None = None,
                **given: Any) -> WebConfig:
    """The configuration: ``given`` (command-line options that are not None), then the file, then
    the environment."""
    env = dict(os.environ) if env is None else env
    values: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        try:
            values = tomllib.loads(p.read_text(encoding="utf-8"))
        except OSError as e:
            raise ConfigError(f"cannot read the configuration file {p}: {e.strerror}") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{p}: not a TOML file: {e}") from None
        unknown = set(values) - {"db", "data", "secret_key", "bind", "secure_cookies", "forwarded"}
        if unknown:
            raise ConfigError(f"{p}: unknown key(s) {', '.join(sorted(unknown))}")
    values.update({k: v for k, v in given.items() if v is not None})

    def pick(key: str, var: str, default: Any = None) -> Any:
        return values[key] if key in values else env.get(var, default)

    secret = pick("secret_key", "ICDSL_SECRET_KEY")
    if not secret or len(str(secret)) < 32:
        raise ConfigError("set a secret key of at least 32 characters: ICDSL_SECRET_KEY or secret_key in the "
                          "configuration file (for instance: python3 -c 'import secrets; print(secrets.token_hex(32))')")
    bind = str(pick("bind", "ICDSL_BIND", "127.0.0.1:8000"))
    host, _, port = bind.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"bind must be HOST:PORT (127.0.0.1:8000), not {bind!r}")
    return WebConfig(db=pick("db", "ICDSL_DB"), data=pick("data", "ICDSL_DATA"), secret_key=str(secret),
                     host=host.strip("[]"), port=int(port),
                     secure_cookies=_flag(pick("secure_cookies", "ICDSL_SECURE_COOKIES", True)),
                     forwarded=_flag(pick("forwarded", "ICDSL_FORWARDED", False)))
