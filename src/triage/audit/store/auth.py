"""Reviewers and sign-in: scrypt-hashed tokens, the reviewers and the web app's sessions."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, select, update

from triage.audit.store.connection import AuditError, Store, now_iso
from triage.audit.store.tables import NAME_MAX, reviewers, sessions
from triage.text import storable

SESSION_HOURS = 12
# scrypt cost: ~50 ms per sign-in on one core; tokens are random, so this only guards a leaked
# database against offline guessing of short hand-made tokens
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


def hash_token(token: str) -> str:
    """``scrypt$n$r$p$salt$hash`` of a sign-in token, with a fresh 16-byte salt."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(token.encode("utf-8", "surrogatepass"), salt=salt, dklen=32, **_SCRYPT)
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${salt.hex()}${digest.hex()}"


def verify_token(token: str, stored: str | None) -> bool:
    """Whether ``token`` matches a :func:`hash_token` string (constant-time compare)."""
    if not stored:
        return False
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    candidate = hashlib.scrypt(
        token.encode("utf-8", "surrogatepass"),
        salt=bytes.fromhex(salt),
        n=int(n),
        r=int(r),
        p=int(p),
        dklen=32,
    )
    return hmac.compare_digest(candidate.hex(), digest)


def reviewer_name(name: str) -> str:
    """A reviewer's name as stored: stripped, :func:`storable`, at most ``NAME_MAX`` characters.

    Raises:
        AuditError: the name is empty or longer than ``NAME_MAX``.
    """
    name = storable(name.strip())
    if not name:
        raise AuditError("a reviewer needs a name: audit.reviewer.name=<name>")
    if len(name) > NAME_MAX:
        raise AuditError(
            f"a reviewer name has at most {NAME_MAX} characters, got {len(name)}: choose a "
            "shorter audit.reviewer.name"
        )
    return name


@dataclass(frozen=True)
class Reviewer:
    id: int
    name: str
    adjudicator: bool


class ReviewerStore(Store):
    """The reviewers and their sessions (part of :class:`~triage.audit.store.AuditDB`)."""

    def add_reviewer(self, name: str, adjudicator: bool = False, rotate: bool = False) -> str:
        """Create a reviewer (or give an existing one a new token with ``rotate``); return the
        sign-in token, which is stored only as a hash.

        Raises:
            AuditError: the name is empty, too long (:func:`reviewer_name`) or taken (without
                ``rotate``), or unknown (with it).
        """
        name = reviewer_name(name)
        token = secrets.token_urlsafe(18)
        with self._write() as conn:
            row = conn.execute(select(reviewers.c.id).where(reviewers.c.name == name)).first()
            if rotate:
                if row is None:
                    raise AuditError(f"no reviewer named {name!r}; leave out rotate to add one")
                conn.execute(
                    update(reviewers)
                    .where(reviewers.c.id == row.id)
                    .values(token_hash=hash_token(token), adjudicator=adjudicator)
                )
                conn.execute(sessions.delete().where(sessions.c.reviewer_id == row.id))
                return token
            if row is not None:
                raise AuditError(
                    f"reviewer {name!r} exists; add audit.reviewer.rotate=true to give them a "
                    "new token (the old one stops working)"
                )
            conn.execute(
                insert(reviewers).values(
                    name=name,
                    token_hash=hash_token(token),
                    adjudicator=adjudicator,
                    created_at=now_iso(),
                )
            )
        return token

    def reviewer_named(self, name: str, create: bool = False) -> Reviewer:
        """The reviewer called ``name``; with ``create``, one without a token is made when
        missing (annotators imported from Label Studio).

        Raises:
            AuditError: no such reviewer (without ``create``), or a name :func:`reviewer_name`
                refuses (with it).
        """
        name = reviewer_name(name) if create else storable(name)
        with self._write() as conn:
            row = conn.execute(select(reviewers).where(reviewers.c.name == name)).first()
            if row is None and create:
                conn.execute(
                    insert(reviewers).values(
                        name=name, token_hash=None, adjudicator=False, created_at=now_iso()
                    )
                )
                row = conn.execute(select(reviewers).where(reviewers.c.name == name)).first()
        if row is None:
            raise AuditError(f"no reviewer named {name!r}")
        return Reviewer(row.id, row.name, bool(row.adjudicator))

    def sign_in(self, name: str, token: str) -> tuple[Reviewer, str] | None:
        """Check a reviewer's token; on success a new session id (valid ``SESSION_HOURS``)."""
        with self._read() as conn:
            row = conn.execute(
                select(reviewers).where(reviewers.c.name == storable(name.strip()))
            ).first()
        if row is None:
            hash_token(token)  # spend the same time as a real check: names are not probed
            return None
        if not verify_token(token, row.token_hash):
            return None
        session = secrets.token_urlsafe(32)
        expires = datetime.now(UTC) + timedelta(hours=SESSION_HOURS)
        with self._write() as conn:
            conn.execute(
                insert(sessions).values(
                    id_hash=hashlib.sha256(session.encode()).hexdigest(),
                    reviewer_id=row.id,
                    expires_at=expires.isoformat(timespec="microseconds"),
                )
            )
        return Reviewer(row.id, row.name, bool(row.adjudicator)), session

    def session_reviewer(self, session: str | None) -> Reviewer | None:
        """The reviewer of a live session id, or None."""
        if not session:
            return None
        with self._read() as conn:
            row = conn.execute(
                select(reviewers, sessions.c.expires_at)
                .join(sessions, sessions.c.reviewer_id == reviewers.c.id)
                .where(sessions.c.id_hash == hashlib.sha256(session.encode()).hexdigest())
            ).first()
        if row is None or row.expires_at < now_iso():
            return None
        return Reviewer(row.id, row.name, bool(row.adjudicator))

    def sign_out(self, session: str) -> None:
        with self._write() as conn:
            conn.execute(
                sessions.delete().where(
                    sessions.c.id_hash == hashlib.sha256(session.encode()).hexdigest()
                )
            )
