"""Fixtures of the audit tests: an empty database on each backend, and the store on it."""

from __future__ import annotations

import pytest

from tests.audit.support import DB_BACKENDS, fresh_db_url
from triage.audit.store import AuditDB


@pytest.fixture(params=DB_BACKENDS)
def db_url(request, tmp_path):
    """An empty database on each backend: SQLite always, PostgreSQL when configured."""
    yield from fresh_db_url(request.param, tmp_path)


@pytest.fixture(scope="module", params=DB_BACKENDS)
def module_db_url(request, tmp_path_factory):
    """An empty database on each backend for a module's shared fixture."""
    yield from fresh_db_url(request.param, tmp_path_factory.mktemp("db"))


@pytest.fixture
def db(db_url):
    database = AuditDB(db_url)
    yield database
    database.close()
