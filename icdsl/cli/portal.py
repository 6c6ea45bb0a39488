"""``icdsl users``, ``icdsl tokens`` and ``icdsl serve``: the partner portal's accounts and its
server (docs/portal.md). A thin face over :mod:`icdsl.billing.accounts` and :mod:`icdsl.web`.

Passwords are read from the terminal (asked twice) or, for scripts, from standard input with
``--password-stdin``; never from the command line, where other users of the machine see them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import typer

from icdsl.cli.billing import _data_option, _db_option, opened, user_errors
from icdsl.cli.common import app, echo_err, table_console

users_app = typer.Typer(help="The portal's users: add, list, disable; the portal's audit trail (icdsl serve).",
                        no_args_is_help=True)
tokens_app = typer.Typer(help="Partners' API tokens for the portal's JSON API: issue, list, revoke.",
                         no_args_is_help=True)
app.add_typer(users_app, name="users")
app.add_typer(tokens_app, name="tokens")


def _when(v: Any) -> str:
    return v.strftime("%Y-%m-%d %H:%M") if v is not None else ""


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return typer.prompt("password", hide_input=True, confirmation_prompt=True)


@users_app.command("add")
def users_add(
    username: str = typer.Argument(..., help="The user name to sign in with."),
    partner: str | None = typer.Option(None, "--partner", help="The partner the user belongs to (its code)."),
    staff: bool = typer.Option(False, "--staff", help="One of our staff: sees every partner."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from standard input."),
    db: str | None = _db_option(),
    data: Path | None = _data_option(),
) -> None:
    """Add a user of a partner (--partner CODE) or of our staff (--staff)."""
    from icdsl.billing.accounts import add_user  # lazy: the store (SQLAlchemy) and argon2

    if (partner is None) == (not staff):
        echo_err("error: give --partner CODE (a partner's user) or --staff (ours), not both")
        raise typer.Exit(2)
    password = _password(password_stdin)
    with opened(db, data) as store, user_errors(), store.session() as s:
        u = add_user(s, username, password, partner=partner)
        who = f"partner {u.partner_code}" if u.partner_code else "staff"
    typer.echo(f"added user {username} ({who})")


@users_app.command("list")
def users_list(
    partner: str | None = typer.Option(None, "--partner", help="Only this partner's users."),
    db: str | None = _db_option(),
    data: Path | None = _data_option(),
) -> None:
    """Every user: name, partner (or staff), created, disabled."""
    from icdsl.billing.accounts import users  # lazy: the store (SQLAlchemy) and argon2

    with opened(db, data) as store, user_errors(), store.reading() as s:
        rows = users(s, partner)
    # lazy: rich: loaded when this command runs, not at every `icdsl` start
    from rich.table import Table

    table = Table(title="portal users")
    for col in ("user", "partner", "created", "by", "disabled"):
        table.add_column(col, overflow="fold")
    for u in rows:
        table.add_row(u.username, u.partner_code or "(staff)", _when(u.created_at), u.created_by,
                      _when(u.disabled_at))
    table_console().print(table)
    if not rows:
        typer.echo("no users" + (f" of {partner}" if partner else "") + ": add one with `icdsl users add`")


@users_app.command("disable")
def users_disable(
    username: str = typer.Argument(..., help="The user to disable."),
    db: str | None = _db_option(),
    data: Path | None = _data_option(),
) -> None:
    """Disable a user: its sessions end and it is refused from its next request on."""
    from icdsl.billing.accounts import disable_user  # lazy: the store (SQLAlchemy) and argon2

    with opened(db, data) as store, user_errors(), store.session() as s:
        disable_user(s, username)
    typer.echo(f"disabled user {username}; its sessions are ended")


@users_app.command("audit")
def users_audit(
    action: str | None = typer.Option(None, "--action", help="Only this action (sign_in, sign_in_failed, "
                                      "sign_in_limited, sign_out, download, dispute_raised, user_added, ...)."),
    limit: int = typer.Option(200, "--limit", min=1, max=100_000, help="The latest N events."),
    db: str | None = _db_option(),
    data: Path | None = _data_option(),
) -> None:
    """The portal's audit trail, newest first: sign-ins (and refusals), sign-outs, downloads, disputes, accounts."""
    from icdsl.billing.accounts import events  # lazy: the store (SQLAlchemy) and argon2

    with opened(db, data) as store, user_errors(), store.reading() as s:
        rows = events(s, action=action, limit=limit)
    # lazy: rich: loaded when this command runs, not at every `icdsl` start
    from rich.table import Table

    table = Table(title="portal audit trail")
    for col in ("at (UTC)", "action", "who", "partner", "what", "from"):
        table.add_column(col, overflow="fold")
    for e in rows:
        table.add_row(e.at.strftime("%Y-%m-%d %H:%M:%S"), e.action, e.actor, e.partner_code or "", e.target or "",
                      e.remote or "")
    table_console(140).print(table)
    if not rows:
        typer.echo("no events" + (f" of action {action}" if action else ""))


@tokens_app.command("issue")
def tokens_issue(
    partner: str = typer.Argument(..., help="The partner whose systems will use the token."),
    name: str = typer.Option("api", "--name", help="What the token is for (shown in the list)."),
    db: str | None = _db_option(),
    data: Path | None = _data_option(),
) -> None:
    """Issue an API token for a partner: printed once (the store keeps only its hash)."""
    from icdsl.billing.accounts import issue_token  # lazy: the store (SQLAlchemy) and argon2

    with opened(db, data) as store, user_errors(), store.session() as s:
        row, token = issue_token(s, partner, name)
        tid = row.id
    echo_err(f"token #{tid} of {partner} ({name}): keep it now, it is not shown again")
    typer.echo(token)


@tokens_app.command("list")
def tokens_list(
    partner: str | None = typer.Option(None, "--partner", help="Only this partner's tokens."),
    db: str | None = _db_option(),
    data: Path | None = _data_option(),
) -> None:
    """Every token: id, partner, name, its first characters, issued, revoked."""
    from icdsl.billing.accounts import tokens  # lazy: the store (SQLAlchemy) and argon2

    with opened(db, data) as store, user_errors(), store.reading() as s:
        rows = tokens(s, partner)
    # lazy: rich: loaded when this command runs, not at every `icdsl` start
    from rich.table import Table

    table = Table(title="API tokens")
    for col in ("id", "partner", "name", "starts", "issued", "by", "revoked"):
        table.add_column(col, overflow="fold", justify="right" if col == "id" else "left")
    for t in rows:
        table.add_row(str(t.id), t.partner_code, t.name, t.prefix + "...", _when(t.created_at), t.created_by,
                      _when(t.revoked_at))
    table_console().print(table)
    if not rows:
        typer.echo("no tokens" + (f" of {partner}" if partner else "") + ": issue one with `icdsl tokens issue`")


@tokens_app.command("revoke")
def tokens_revoke(
    token_id: int = typer.Argument(..., help="The token's id (`icdsl tokens list`)."),
    db: str | None = _db_option(),
    data: Path | None = _data_option(),
) -> None:
    """Revoke a token: refused from its next request on."""
    from icdsl.billing.accounts import revoke_token  # lazy: the store (SQLAlchemy) and argon2

    with opened(db, data) as store, user_errors(), store.session() as s:
        t = revoke_token(s, token_id)
        who = t.partner_code
    typer.echo(f"revoked token #{token_id} of {who}")


@app.command("serve")
def serve_cmd(
    config: Path | None = typer.Option(None, "--config", help="A TOML file: db, data, secret_key, bind, "
                                       "secure_cookies, forwarded (docs/portal.md)."),
    bind: str | None = typer.Option(None, "--bind", help="HOST:PORT to listen on (default $ICDSL_BIND, else "
                                    "127.0.0.1:8000)."),
    db: str | None = typer.Option(None, "--db", help="Database URL (default $ICDSL_DB)."),
    data: Path | None = typer.Option(None, "--data", help="The store's data folder (default $ICDSL_DATA)."),
    workers: int = typer.Option(1, "--workers", min=1, max=32, help="Server processes (one per core: each "
                                "request's work is Python, one core per process)."),
) -> None:
    """Serve the partner portal: pages for partners' people and our staff, a JSON API for partners' systems."""
    import uvicorn  # lazy: the server, only for `icdsl serve`

    # lazy: the web face (FastAPI), only for `icdsl serve`
    from icdsl.web.config import ConfigError, load_config

    try:
        cfg = load_config(config, db=db, data=str(data) if data else None, bind=bind)
    except ConfigError as e:
        echo_err(f"error: {e}")
        raise typer.Exit(2) from None
    from icdsl.web.app import create_app  # lazy: FastAPI, Jinja2 and the store

    with user_errors():  # opened (and migrated) here once: a store that cannot be opened is said now
        application = create_app(cfg)
    typer.echo(f"serving the portal on http://{cfg.host}:{cfg.port} (store {application.state.store.dialect}, "
               f"{workers} process{'es' * (workers > 1)}); API description at /api/docs")
    # uvicorn's lines and the portal's own (sign-ins, downloads, disputes), each with its time
    log_config = {
        "version": 1, "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
        "handlers": {"err": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"}},
        "loggers": {"uvicorn": {"handlers": ["err"], "level": "INFO", "propagate": False},
                    "uvicorn.access": {"handlers": ["err"], "level": "INFO", "propagate": False},
                    "icdsl.web": {"handlers": ["err"], "level": "INFO", "propagate": False}},
    }
    options = {"host": cfg.host, "port": cfg.port, "log_config": log_config, "proxy_headers": cfg.forwarded,
               "server_header": False}
    if workers == 1:
        uvicorn.run(application, **options)
        return
    application.state.store.close()
    # each process makes its own app (and store connections) from the same configuration
    os.environ.update({"ICDSL_SECRET_KEY": cfg.secret_key, "ICDSL_BIND": f"{cfg.host}:{cfg.port}",
                       "ICDSL_SECURE_COOKIES": "1" if cfg.secure_cookies else "0",
                       "ICDSL_FORWARDED": "1" if cfg.forwarded else "0",
                       **({"ICDSL_DB": cfg.db} if cfg.db else {}), **({"ICDSL_DATA": cfg.data} if cfg.data else {})})
    # a process starting on a busy machine (imports, the store's check) must not be taken for a dead one
    uvicorn.run("icdsl.web.app:from_environment", factory=True, workers=workers, timeout_worker_healthcheck=60,
                **options)
