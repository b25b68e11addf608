"""Bounded fuzzing of the review app's OpenAPI schema on each backend: signed in as a reviewer
and as nobody, a few hundred generated requests, no server error, refusals in one shape."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.audit.support import make_batch
from tests.fuzzing import fuzz
from triage.audit.store import AuditDB
from triage.audit.web.app import create_app

SESSION = frozenset({("POST", "/api/session"), ("DELETE", "/api/session")})


def check(method: str, url: str, response) -> None:
    assert response.status_code < 500, (method, url, response.status_code, response.text[:300])
    if response.status_code >= 400:
        assert isinstance(response.json()["detail"], str | list)


@pytest.mark.slow
def test_fuzzing_the_review_app_finds_no_server_error(db_url):
    db = AuditDB(db_url)
    items = make_batch(db, n=8, dual=2)
    token = db.add_reviewer("alice")
    app = create_app(db)
    known = {"batch_id": ["b1"], "item_id": [str(i["id"]) for i in items]}
    with TestClient(app) as reviewer:
        assert reviewer.post("/api/session", json={"name": "alice", "token": token}).is_success
        signed_in = fuzz(reviewer, app.openapi(), check, examples=250, skip=SESSION, known=known)
        assert reviewer.get("/api/me").json()["name"] == "alice"  # still signed in
    with TestClient(app) as nobody:
        anonymous = fuzz(nobody, app.openapi(), check, examples=100, known=known)
    db.close()
    # Hypothesis sends each distinct request once: the parameterless ones are few
    assert {200, 403, 422} <= set(signed_in) and sum(signed_in.values()) == 250, signed_in
    assert anonymous.get(401, 0) >= 25, anonymous
