"""Storage of the weekly audit: reviewers, batches, items, reviews and their full history.

SQLAlchemy Core on SQLite or PostgreSQL (:mod:`.connection`), the tables (:mod:`.tables`) kept
current by Alembic migrations (:mod:`.migrate`), and the parts of :class:`AuditDB`: reviewers
and sign-in (:mod:`.auth`), batches and items (:mod:`.batches`), append-only reviews and item
states (:mod:`.reviews`), the reviewers' queue (:mod:`.queue`).
"""

from triage.audit.store.auth import Reviewer, verify_token
from triage.audit.store.connection import AuditError, now_iso
from triage.audit.store.db import AuditDB, load_batch
from triage.audit.store.reviews import ItemLabel
from triage.audit.store.tables import ITEM_FIELDS, metadata

__all__ = [
    "ITEM_FIELDS",
    "AuditDB",
    "AuditError",
    "ItemLabel",
    "Reviewer",
    "load_batch",
    "metadata",
    "now_iso",
    "verify_token",
]
