"""``triage audit-reviewer audit.reviewer.name=<name>``: add a reviewer and print their token.

Writes the reviewer into the audit database (``audit.db_url``) with the scrypt hash of a new
random token; the token itself is printed once and stored nowhere. ``audit.reviewer.adjudicator
=true`` lets the reviewer settle conflicts between two reviewers; ``audit.reviewer.rotate=true``
gives an existing reviewer a new token (the old one and their sessions stop working).
"""

from __future__ import annotations

from triage.audit.store import AuditDB, AuditError
from triage.config import Config


def run(cfg: Config) -> str:
    """Create (or rotate) the reviewer of ``audit.reviewer`` and print the token."""
    rcfg = cfg.audit.reviewer
    if not rcfg.name:
        raise AuditError("name the reviewer: triage audit-reviewer audit.reviewer.name=<name>")
    db = AuditDB(cfg.audit.db_url)
    try:
        token = db.add_reviewer(rcfg.name, bool(rcfg.adjudicator), bool(rcfg.rotate))
    finally:
        db.close()
    role = " (adjudicator)" if rcfg.adjudicator else ""
    print(f"reviewer {rcfg.name}{role}; token (shown once, stored only as a hash):\n{token}")
    return token
