"""The review app's HTTP API: sign-in, the queue, saving reviews, escaping, and several
reviewers hitting a live server at once."""

from __future__ import annotations

import threading

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.audit.support import LiveApp, audit_overrides, make_batch
from triage.audit.store import AuditDB
from triage.audit.store.tables import NAME_MAX
from triage.audit.web.app import NOTE_MAX, create_app
from triage.cli import main


@pytest.fixture
def setup(db_url):
    db = AuditDB(db_url)
    items = make_batch(db, n=8, dual=2)
    tokens = {name: db.add_reviewer(name) for name in ("alice", "bob")}
    yield db, items, tokens
    db.close()


def signed_in(app, name: str, token: str) -> TestClient:
    client = TestClient(app)
    response = client.post("/api/session", json={"name": name, "token": token})
    assert response.status_code == 200, response.text
    return client


def test_sign_in_is_required_and_checked(setup):
    db, _, tokens = setup
    client = TestClient(create_app(db))
    assert client.get("/api/batches").status_code == 401
    assert client.post("/api/session", json={"name": "alice", "token": "x"}).status_code == 401
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert client.get("/static/app.js").status_code == 200
    # app.py lies one folder above the static files: a path that climbs out is not served
    assert client.get("/static/../app.py").status_code == 404
    client = signed_in(create_app(db), "alice", tokens["alice"])
    cookie = client.cookies.get("audit_session")
    assert cookie and cookie != tokens["alice"]
    assert client.get("/api/me").json() == {"name": "alice", "adjudicator": False}
    assert client.delete("/api/session").status_code == 200
    assert client.get("/api/me").status_code == 401


def test_review_flow_over_the_api(setup):
    db, items, tokens = setup
    app = create_app(db)
    alice = signed_in(app, "alice", tokens["alice"])
    batches = alice.get("/api/batches").json()
    assert [b["id"] for b in batches] == ["b1"] and batches[0]["progress"]["items"] == 8
    data = alice.get("/api/batches/b1/next").json()
    item = data["item"]
    assert item["id"] == items[0]["id"] and data["why"] == "review"
    assert data["labels"]["sentiment"] == ["negative", "neutral", "positive"]
    # exactly what the page shows, in this order; reviewers judge blind (no stratum, weight)
    assert list(item) == [
        *("id", "batch_id", "position", "message_id", "text", "lang", "channel"),
        *("message_created_at", "model_version", "intent", "intent_prob", "intent_threshold"),
        *("sentiment", "sentiment_prob", "decision", "action", "priority", "reason", "extra"),
        "top_intents",
    ]
    assert item["top_intents"][0][0] == item["intent"]
    saved = alice.post(
        f"/api/items/{item['id']}/reviews",
        json={"intent": "spam", "sentiment": item["sentiment"], "note": "advert 🙄"},
    ).json()
    assert saved["review"]["status"] == "corrected" and saved["progress"]["mine"] == 1
    bad = alice.post(f"/api/items/{item['id']}/reviews", json={"intent": "nope"})
    assert bad.status_code == 400 and "not one of" in bad.json()["detail"]
    form = alice.post(f"/api/items/{item['id']}/reviews", data={"intent": "spam"})
    assert form.status_code in (415, 422)  # JSON only
    back = alice.get(f"/api/items/{item['id']}").json()
    assert back["mine"]["intent"] == "spam" and back["mine"]["note"] == "advert 🙄"
    history = db.history("b1")
    assert len(history) == 1 and history[0]["reviewer"] == "alice"


def test_message_markup_comes_back_as_plain_text(setup, tmp_path):
    db, _, tokens = setup
    text = '<script>alert("x")</script><b>bold</b> & 🎉 Waar blijft mijn pakket?'
    db.create_batch(
        {"id": "xss", "kind": "sample", "design": {}, "labels": {"intent": ["spam"]}},
        [
            {
                "message_id": "m1",
                "text": text,
                "intent": "spam",
                "stratum": "rest",
                "in_control": True,
                "inclusion_prob": 1.0,
                "reviews_required": 1,
            }
        ],
    )
    client = signed_in(create_app(db), "alice", tokens["alice"])
    assert client.get("/api/batches/xss/next").json()["item"]["text"] == text
    # the page renders it with textContent only (the browser test checks what is shown)
    script = client.get("/static/app.js").text
    assert ".innerHTML" not in script and "insertAdjacentHTML" not in script


@pytest.mark.e2e
def test_many_reviewers_at_once_on_a_live_server(db_url):
    db = AuditDB(db_url)
    items = make_batch(db, n=60, dual=15)
    tokens = {f"r{i}": db.add_reviewer(f"r{i}") for i in range(5)}
    posted: list[int] = []
    failures: list[str] = []
    with LiveApp(create_app(db)) as live:

        def work(name: str) -> None:
            with httpx.Client(base_url=live.url, timeout=30) as client:
                client.post("/api/session", json={"name": name, "token": tokens[name]})
                while True:
                    data = client.get("/api/batches/b1/next").json()
                    if data["item"] is None:
                        return
                    item = data["item"]
                    response = client.post(
                        f"/api/items/{item['id']}/reviews",
                        json={"intent": item["intent"], "sentiment": item["sentiment"]},
                    )
                    if response.status_code != 200:
                        failures.append(response.text)
                        return
                    posted.append(response.json()["review"]["id"])

        threads = [threading.Thread(target=work, args=(name,)) for name in tokens]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    assert not failures
    history = db.history("b1")
    assert sorted(h["id"] for h in history) == sorted(posted)
    assert len(posted) == sum(i["reviews_required"] for i in items)
    assert db.progress("b1")["done"] == 60
    db.close()


def test_refused_bodies_get_a_clean_422_that_says_what_is_needed(setup):
    db, items, tokens = setup
    client = TestClient(create_app(db))
    raw = {"content-type": "application/json"}
    # a lone surrogate: the 422 says what is wrong and where, without echoing the input (which
    # cannot even be encoded as UTF-8)
    bad_name = client.post("/api/session", content=b'{"name":"\\ud800","token":"x"}', headers=raw)
    assert bad_name.status_code == 422, bad_name.text
    assert bad_name.json()["detail"][0]["loc"] == ["body", "name"]
    assert "input" not in bad_name.json()["detail"][0]
    # the sign-in limit is add_reviewer's: stripped, at most NAME_MAX characters
    long = "n" * (NAME_MAX + 1)
    assert client.post("/api/session", json={"name": long, "token": "x"}).status_code == 422
    name = "n" * NAME_MAX
    token = db.add_reviewer(name)
    assert client.post("/api/session", json={"name": f" {name} ", "token": token}).is_success
    client = signed_in(create_app(db), "alice", tokens["alice"])
    assert client.get("/api/batches/b1/next").json()["item"]["id"] == items[0]["id"]
    url = f"/api/items/{items[0]['id']}/reviews"
    bad_note = client.post(url, content=b'{"unclear":true,"note":"\\udc00"}', headers=raw)
    assert bad_note.status_code == 422 and "input" not in bad_note.json()["detail"][0]
    empty = client.post(url, json={})
    assert empty.status_code == 422
    assert "needs an intent and/or a sentiment" in empty.json()["detail"][0]["msg"]
    too_long = client.post(url, json={"unclear": True, "note": "x" * (NOTE_MAX + 1)})
    assert too_long.status_code == 422 and str(NOTE_MAX) in too_long.json()["detail"][0]["msg"]
    # an id past the columns' 32 bits (found by the fuzzing test): 422, not a database error
    assert client.get(f"/api/items/{2**31}").status_code == 422
    assert db.history("b1") == []  # nothing refused was saved
    nul = client.post(url, json={"unclear": True, "note": "a\x00b"})
    assert nul.status_code == 200 and nul.json()["review"]["note"] == "a\ufffdb"


def test_audit_reviewer_refuses_a_long_name_in_one_line(tmp_path, capsys, db_url):
    name = "n" * (NAME_MAX + 1)
    assert (
        main(["audit-reviewer", f"audit.reviewer.name={name}", *audit_overrides(tmp_path, db_url)])
        == 1
    )
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"at most {NAME_MAX} characters" in err
