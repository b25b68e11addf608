"""The review app's per-item authorisation (only items offered to a reviewer) and sign-in
throttling (failed tries per name and per client address)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.audit.support import make_batch
from triage.audit.web.app import create_app
from triage.audit.web.throttle import SignInThrottle


def signed_in(app, name: str, token: str) -> TestClient:
    client = TestClient(app)
    response = client.post("/api/session", json={"name": name, "token": token})
    assert response.status_code == 200, response.text
    return client


def review(client: TestClient, item_id: int, **body):
    return client.post(f"/api/items/{item_id}/reviews", json=body or {"unclear": True})


def test_a_reviewer_gets_only_the_items_offered_to_them(db):
    items = make_batch(db, n=4, dual=0)
    tokens = {name: db.add_reviewer(name) for name in ("alice", "bob")}
    app = create_app(db)
    alice, bob = (signed_in(app, name, tokens[name]) for name in ("alice", "bob"))
    first = items[0]["id"]
    assert alice.get("/api/batches/b1/next").json()["item"]["id"] == first
    # alice's claim: bob can neither read nor review it, even after fetching his own item
    for _ in range(2):
        got = bob.get(f"/api/items/{first}")
        assert got.status_code == 403 and "not yours" in got.json()["detail"]
        assert review(bob, first).status_code == 403
        assert bob.get("/api/batches/b1/next").json()["item"]["id"] != first
    assert db.history("b1") == []
    # an unknown item reads the same as someone else's
    assert bob.get("/api/items/999999").status_code == 403
    # once alice's claim has expired the queue offers the item to bob, and then he may
    bob_later = signed_in(create_app(db, claim_minutes=0), "bob", tokens["bob"])
    assert bob_later.get("/api/batches/b1/next").json()["item"]["id"] == first
    assert bob_later.get(f"/api/items/{first}").status_code == 200
    assert review(bob_later, first).status_code == 200
    # alice keeps her own claim, and both may go back to what they reviewed
    assert review(alice, first, intent="spam").status_code == 200
    assert alice.get(f"/api/items/{first}").json()["mine"]["intent"] == "spam"
    assert bob.get(f"/api/items/{first}").json()["mine"]["status"] == "unclear"
    bob_who, alice_who = (db.reviewer_named(n) for n in ("bob", "alice"))
    assert db.may_review(bob_who, first) and not db.may_review(alice_who, items[1]["id"])


def test_adjudicators_may_take_a_conflict_and_plain_reviewers_may_not(db):
    items = make_batch(db, n=4, dual=2)
    tokens = {name: db.add_reviewer(name) for name in ("alice", "bob", "dave")}
    tokens["carol"] = db.add_reviewer("carol", adjudicator=True)
    item_id = items[0]["id"]
    db.add_review(item_id, db.reviewer_named("alice"), intent="spam", sentiment="neutral")
    db.add_review(item_id, db.reviewer_named("bob"), intent="abuse", sentiment="neutral")
    assert db.labels("b1")[item_id].state == "conflict"
    app = create_app(db)
    carol, dave = (signed_in(app, name, tokens[name]) for name in ("carol", "dave"))
    assert dave.get(f"/api/items/{item_id}").status_code == 403
    assert review(dave, item_id, intent="spam").status_code == 403
    assert carol.get(f"/api/items/{item_id}").status_code == 200
    # a conflict-free item is no adjudicator's business either
    assert carol.get(f"/api/items/{items[1]['id']}").status_code == 403
    decided = review(carol, item_id, intent="abuse", adjudication=True)
    assert decided.status_code == 200, decided.text
    assert db.labels("b1")[item_id].state == "adjudicated"
    # no longer a conflict, but carol may still go back to her decision
    assert carol.get(f"/api/items/{item_id}").json()["why"] == "adjudication"
    assert [r["reviewer"] for r in db.history("b1")] == ["alice", "bob", "carol"]


def test_failed_sign_ins_are_throttled_per_name_and_per_address(db):
    tokens = {name: db.add_reviewer(name) for name in ("alice", "bob")}
    now = [1000.0]
    client = TestClient(create_app(db, throttle=SignInThrottle(clock=lambda: now[0])))

    def attempt(name: str, token: str = "wrong"):
        return client.post("/api/session", json={"name": name, "token": token})

    for _ in range(5):
        assert attempt("bob").status_code == 401
        now[0] += 1
    blocked = attempt("bob", tokens["bob"])  # the 6th try: refused, right token or not
    assert blocked.status_code == 429 and "too many failed sign-ins" in blocked.json()["detail"]
    assert 0 < int(blocked.headers["Retry-After"]) <= 300
    # another name signs in; that does not clear bob's count
    assert attempt("alice", tokens["alice"]).status_code == 200
    assert attempt("bob", tokens["bob"]).status_code == 429
    now[0] += 300
    assert attempt("bob", tokens["bob"]).status_code == 200
    # per address: 20 failures over many names block every name from it
    for i in range(20):
        assert attempt(f"guess{i}").status_code == 401
    refused = attempt("alice", tokens["alice"])
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) <= 300
    now[0] += 301
    assert attempt("alice", tokens["alice"]).status_code == 200
