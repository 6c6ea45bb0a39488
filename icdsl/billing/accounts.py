"""Who may use the partner portal (``icdsl serve``) and how they prove it: users (one partner's, or
our staff's), their passwords (argon2, memory-hard), browser sessions, API tokens, the sign-in
rate limit and the portal's audit trail (migration 0017).

Every check reads the database at each request: a user disabled or a token revoked is refused at
its very next request, not when a cache or a cookie expires.

- A password is kept only as its argon2id hash (argon2-cffi's RFC 9106 low-memory profile:
  64 MiB, 3 passes); a user name that does not exist costs the same time as a wrong password.
- An API token is ``icdsl_`` + 43 characters of 256 random bits, shown once by ``icdsl tokens
  issue``; the store keeps its SHA-256 (a slow hash adds nothing to a secret of that strength).
- A session cookie is 256 random bits; the store keeps its SHA-256, its CSRF token and its end.
- Sign-in: more than :data:`MAX_FAILURES_PER_USER` failures for one user name, or
  :data:`MAX_FAILURES_PER_ADDRESS` from one address, within :data:`WINDOW` refuse further tries
  until the window has passed (counted in the database: every server process sees the same).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from argon2.profiles import RFC_9106_LOW_MEMORY
from sqlalchemy import select
from sqlalchemy.orm import Session

from icdsl.billing import models as M
from icdsl.billing.base import actor, now
from icdsl.billing.errors import StoreError

WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_USER = 5
MAX_FAILURES_PER_ADDRESS = 30
SESSION_HOURS = 12
MIN_PASSWORD = 12
USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{1,199}$")
TOKEN_PREFIX = "icdsl_"

_hasher = PasswordHasher.from_parameters(RFC_9106_LOW_MEMORY)
_dummy: list[str] = []


def _dummy_hash() -> str:
    """Verified against when the user name is unknown: the same work as for a wrong password."""
    if not _dummy:
        _dummy.append(_hasher.hash(secrets.token_urlsafe(16)))
    return _dummy[0]


class AccessError(StoreError):
    """A user or token refused, a user name taken or invalid: the message says which."""


@dataclass(frozen=True)
class Principal:
    """Who is asking: a signed-in user or an API token. ``partner``: the partner whose rows it may
    read, or None for our staff (every partner)."""

    kind: str  # "user" or "token"
    id: int
    name: str
    partner: str | None
    csrf: str | None = None  # a session's CSRF token (users in a browser)
    session_id: int | None = None

    @property
    def is_staff(self) -> bool:
        return self.partner is None


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise AccessError(f"a password needs at least {MIN_PASSWORD} characters")
    return _hasher.hash(password)


# --------------------------------------------------------------------------- users


def add_user(s: Session, username: str, password: str, *, partner: str | None) -> M.PortalUser:
    """A new user of ``partner`` (a partner code the store knows), or of our staff (None)."""
    if not USERNAME.match(username):
        raise AccessError(f"invalid user name {username!r}: letters, digits and . _ @ + - (2 to 200 characters)")
    if s.scalars(select(M.PortalUser.id).where(M.PortalUser.username == username)).first() is not None:
        raise AccessError(f"there is already a user {username!r}")
    pid = None
    if partner is not None:
        p = s.scalars(select(M.Partner).where(M.Partner.code == partner)).first()
        if p is None:
            raise AccessError(f"no partner {partner!r} in the store (load the rules first: `icdsl load`)")
        pid = p.id
    u = M.PortalUser(username=username, partner_id=pid, partner_code=partner, password_hash=hash_password(password),
                     created_at=now(), created_by=actor(), disabled_at=None)
    s.add(u)
    s.flush()
    event(s, "user_added", actor(), partner=partner, target=username)
    return u


def users(s: Session, partner: str | None = None) -> list[M.PortalUser]:
    q = select(M.PortalUser).order_by(M.PortalUser.username)
    if partner is not None:
        q = q.where(M.PortalUser.partner_code == partner)
    return list(s.scalars(q))


def disable_user(s: Session, username: str) -> M.PortalUser:
    """Disable a user and end its sessions: refused from its next request on."""
    u = s.scalars(select(M.PortalUser).where(M.PortalUser.username == username)).first()
    if u is None:
        raise AccessError(f"no user {username!r} (`icdsl users list` lists them)")
    t = now()
    if u.disabled_at is None:
        u.disabled_at = t
    s.execute(sa.update(M.PortalSession).where(M.PortalSession.user_id == u.id, M.PortalSession.ended_at.is_(None))
              .values(ended_at=t))
    event(s, "user_disabled", actor(), user_id=u.id, partner=u.partner_code, target=username)
    return u


def _attempts(s: Session, column: Any, value: str | None, since: datetime) -> int:
    return s.scalar(select(sa.func.count()).select_from(M.PortalLoginAttempt).where(
        column == value, M.PortalLoginAttempt.at >= since, M.PortalLoginAttempt.ok.is_(False))) or 0


@dataclass(frozen=True)
class SignIn:
    """A sign-in's outcome: the principal and the session cookie's value, or why not (``limited``:
    refused by the rate limit). Returned, not raised: the refusal is recorded in the same
    transaction, which must commit."""

    principal: Principal | None
    cookie: str | None
    error: str | None = None
    limited: bool = False


def sign_in(s: Session, username: str, password: str, remote: str | None) -> SignIn:
    """Check a user's password and open a session. Every try is recorded; too many failures
    refuse without checking the password."""
    t = now()
    since = t - WINDOW
    username = username.strip()[:200]
    if (_attempts(s, M.PortalLoginAttempt.username, username, since) >= MAX_FAILURES_PER_USER
            or (remote and _attempts(s, M.PortalLoginAttempt.remote, remote, since) >= MAX_FAILURES_PER_ADDRESS)):
        event(s, "sign_in_limited", username, target=username, remote=remote)
        return SignIn(None, None, "too many failed sign-ins: try again in 15 minutes", limited=True)
    u = s.scalars(select(M.PortalUser).where(M.PortalUser.username == username)).first()
    ok = False
    try:
        ok = _hasher.verify(u.password_hash if u is not None else _dummy_hash(), password) and u is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        ok = False
    if ok and u.disabled_at is not None:
        ok = False
    s.add(M.PortalLoginAttempt(username=username, remote=remote, at=t, ok=ok))
    if not ok:
        event(s, "sign_in_failed", username, target=username, remote=remote)
        return SignIn(None, None, "wrong user name or password")
    if _hasher.check_needs_rehash(u.password_hash):
        u.password_hash = _hasher.hash(password)
    cookie = secrets.token_urlsafe(32)
    sess = M.PortalSession(user_id=u.id, session_hash=sha256(cookie), csrf=secrets.token_urlsafe(32), created_at=t,
                           expires_at=t + timedelta(hours=SESSION_HOURS), ended_at=None, remote=remote)
    s.add(sess)
    s.flush()
    event(s, "sign_in", u.username, user_id=u.id, partner=u.partner_code, remote=remote)
    return SignIn(Principal("user", u.id, u.username, u.partner_code, sess.csrf, sess.id), cookie)


_SESSION = (select(M.PortalSession.id, M.PortalSession.csrf, M.PortalSession.expires_at, M.PortalUser.id,
                   M.PortalUser.username, M.PortalUser.partner_code)
            .join(M.PortalUser, M.PortalUser.id == M.PortalSession.user_id)
            .where(M.PortalSession.session_hash == sa.bindparam("h"), M.PortalSession.ended_at.is_(None),
                   M.PortalUser.disabled_at.is_(None)))


def session_principal(s: Session, cookie: str | None) -> Principal | None:
    """The user of a session cookie, or None (unknown, ended, expired, or its user disabled)."""
    if not cookie or len(cookie) > 100:
        return None
    row = s.execute(_SESSION, {"h": sha256(cookie)}).first()
    if row is None or row[2] <= now():
        return None
    return Principal("user", row[3], row[4], row[5], row[1], row[0])


def sign_out(s: Session, p: Principal, remote: str | None) -> None:
    if p.session_id is not None:
        s.execute(sa.update(M.PortalSession).where(M.PortalSession.id == p.session_id).values(ended_at=now()))
    event(s, "sign_out", p.name, user_id=p.id, partner=p.partner, remote=remote)


# --------------------------------------------------------------------------- tokens


def issue_token(s: Session, partner: str, name: str) -> tuple[M.PortalToken, str]:
    """A new API token of ``partner``: (its row, the token: shown once, never stored)."""
    p = s.scalars(select(M.Partner).where(M.Partner.code == partner)).first()
    if p is None:
        raise AccessError(f"no partner {partner!r} in the store (load the rules first: `icdsl load`)")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = M.PortalToken(partner_id=p.id, partner_code=partner, name=name[:200], prefix=token[:12],
                        token_hash=sha256(token), created_at=now(), created_by=actor(), revoked_at=None)
    s.add(row)
    s.flush()
    event(s, "token_issued", actor(), token_id=row.id, partner=partner, target=name[:200])
    return row, token


def tokens(s: Session, partner: str | None = None) -> list[M.PortalToken]:
    q = select(M.PortalToken).order_by(M.PortalToken.id)
    if partner is not None:
        q = q.where(M.PortalToken.partner_code == partner)
    return list(s.scalars(q))


def revoke_token(s: Session, token_id: int) -> M.PortalToken:
    row = s.get(M.PortalToken, token_id)
    if row is None:
        raise AccessError(f"no token #{token_id} (`icdsl tokens list` lists them)")
    if row.revoked_at is None:
        row.revoked_at = now()
    event(s, "token_revoked", actor(), token_id=row.id, partner=row.partner_code, target=row.name)
    return row


_TOKEN = (select(M.PortalToken.id, M.PortalToken.name, M.PortalToken.partner_code)
          .where(M.PortalToken.token_hash == sa.bindparam("h"), M.PortalToken.revoked_at.is_(None)))


def token_principal(s: Session, token: str | None) -> Principal | None:
    """The partner of a bearer token, or None (unknown or revoked)."""
    if not token or not token.startswith(TOKEN_PREFIX) or len(token) > 100:
        return None
    row = s.execute(_TOKEN, {"h": sha256(token)}).first()
    return None if row is None else Principal("token", row[0], f"token:{row[1]}", row[2])


# --------------------------------------------------------------------------- audit


def event(s: Session, action: str, who: str, *, user_id: int | None = None, token_id: int | None = None,
          partner: str | None = None, target: str | None = None, remote: str | None = None,
          details: dict[str, Any] | None = None) -> None:
    s.add(M.PortalEvent(at=now(), action=action, actor=who[:200], user_id=user_id, token_id=token_id,
                        partner_code=partner, target=(target or "")[:300] or None, remote=remote, details=details))


def principal_event(s: Session, p: Principal, action: str, *, partner: str | None, target: str,
                    remote: str | None, details: dict[str, Any] | None = None) -> None:
    event(s, action, p.name, user_id=p.id if p.kind == "user" else None,
          token_id=p.id if p.kind == "token" else None, partner=partner, target=target, remote=remote,
          details=details)


def events(s: Session, *, action: str | None = None, limit: int = 200) -> list[M.PortalEvent]:
    q = select(M.PortalEvent).order_by(M.PortalEvent.id.desc()).limit(limit)
    if action is not None:
        q = q.where(M.PortalEvent.action == action)
    return list(s.scalars(q))
