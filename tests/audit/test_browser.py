"""The review app in a real headless Chromium (Playwright): sign in, review a batch with the
keyboard only, and check what the database recorded; a message with markup shows as text."""

from __future__ import annotations

import pytest

from tests.audit.support import (
    BROWSER_MARKS,
    CHROMIUM,
    CHROMIUM_ARGS,
    LiveApp,
    current_item_id,
    open_batch,
    sign_in,
    wait_for_new_item,
)
from triage.audit.store import AuditDB
from triage.audit.web.app import create_app

pytestmark = BROWSER_MARKS

LABELS = {
    "intent": ["order_status", "refund_return", "spam", "praise", "other"],
    "sentiment": ["negative", "neutral", "positive"],
}
MESSAGES = [
    ("m1", "Waar blijft mijn pakket? Al 5 dagen 😤📦", "nl", "order_status", "negative"),
    ("m2", "I want my money back for the broken tent", "en", "order_status", "neutral"),
    ("m3", "??? 🤷", "und", "other", "neutral"),
    (
        "m4",
        '<script>alert("pwned")</script><img src=x onerror=alert(1)> gratis iPhone!!',
        "nl",
        "spam",
        "neutral",
    ),
    ("m5", "Top geholpen, dank jullie wel! ❤️", "nl", "praise", "positive"),
]


@pytest.fixture
def app_with_batch(db_url):
    db = AuditDB(db_url)
    rows = [
        {
            "message_id": mid,
            "text": text,
            "lang": lang,
            "channel": "instagram_dm",
            "intent": intent,
            "intent_prob": 0.9,
            "intent_probs": {
                label: (0.9 if label == intent else 0.025) for label in LABELS["intent"]
            },
            "sentiment": sentiment,
            "sentiment_prob": 0.8,
            "decision": "auto",
            "action": "auto_reply",
            "priority": "normal",
            "reason": "confident",
            "model_version": "v1",
            "stratum": "rest",
            "in_control": True,
            "inclusion_prob": 1.0,
            "reviews_required": 1,
        }
        for mid, text, lang, intent, sentiment in MESSAGES
    ]
    db.create_batch({"id": "week47", "kind": "sample", "design": {}, "labels": LABELS}, rows)
    token = db.add_reviewer("anna")
    with LiveApp(create_app(db)) as live:
        yield db, live, token
    db.close()


def test_review_a_batch_with_the_keyboard(app_with_batch):
    from playwright.sync_api import sync_playwright

    db, live, token = app_with_batch
    dialogs: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page()
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        sign_in(page, live.url, "anna", token)
        open_batch(page, "week47")

        # m1: accept as is
        assert current_item_id(page) == "m1"
        assert page.locator("#text").inner_text() == MESSAGES[0][1]
        page.keyboard.press("a")
        wait_for_new_item(page, "m1")

        # m2: correct the intent (type-ahead in the list), the sentiment (1..3) and add a note
        assert current_item_id(page) == "m2"
        page.keyboard.press("i")
        page.keyboard.type("ref")
        page.keyboard.press("Enter")
        page.keyboard.press("1")
        page.keyboard.press("c")
        page.keyboard.type("asks for a refund 💸")
        page.keyboard.press("Enter")
        assert page.locator("#save").inner_text().endswith("Save correction")
        page.keyboard.press("a")
        wait_for_new_item(page, "m2")

        # m3: unclear, then back to it and label it after all
        page.keyboard.press("x")
        wait_for_new_item(page, "m3")
        page.keyboard.press("b")
        wait_for_new_item(page, "m4")
        assert current_item_id(page) == "m3"
        assert "You said: unclear" in page.locator("#previous").inner_text()
        page.keyboard.press("r")
        page.keyboard.press("2")
        page.keyboard.press("a")
        wait_for_new_item(page, "m3")

        # m4: markup in a message is shown as text, never run
        assert current_item_id(page) == "m4"
        assert page.locator("#text").inner_text() == MESSAGES[3][1]
        assert page.locator("#text script, #text img").count() == 0
        page.keyboard.press("?")
        assert page.locator("#help").is_visible()
        page.keyboard.press("?")
        page.keyboard.press("Enter")  # Enter accepts too
        wait_for_new_item(page, "m4")
        page.keyboard.press("a")
        page.locator("#done").wait_for(state="visible")
        assert page.locator("#progress-text").inner_text().startswith("5/5 done")
        browser.close()
    assert dialogs == []

    history = db.history("week47")
    by_item = {}
    for row in history:
        by_item.setdefault(db.item(row["item_id"])["message_id"], []).append(row)
    assert [r["status"] for r in by_item["m1"]] == ["accepted"]
    m2 = by_item["m2"][0]
    assert (m2["status"], m2["intent"], m2["sentiment"]) == (
        "corrected",
        "refund_return",
        "negative",
    )
    assert m2["note"] == "asks for a refund 💸" and m2["prev_intent"] == "order_status"
    m3 = by_item["m3"]
    assert [r["status"] for r in m3] == ["unclear", "accepted"]
    assert m3[1]["previous_review_id"] == m3[0]["id"] and m3[1]["prev_status"] == "unclear"
    assert [r["status"] for r in by_item["m4"]] == ["accepted"]
    assert {r["reviewer"] for r in history} == {"anna"}
    assert db.progress("week47")["done"] == 5


def test_a_refused_save_shows_the_servers_reason_and_keeps_the_note(app_with_batch):
    from playwright.sync_api import sync_playwright

    db, live, token = app_with_batch
    note = "x" * 2001
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page()
        sign_in(page, live.url, "anna", token)
        open_batch(page, "week47")
        page.locator("#note").fill(note)  # not cut by the page: the server says why it refuses
        page.locator("#save").click()
        status = page.locator("#status")
        status.filter(has_text="not saved").wait_for(timeout=10_000)
        assert status.inner_text() == "not saved: note: String should have at most 2000 characters"
        assert page.locator("#note").input_value() == note
        assert current_item_id(page) == "m1"
        browser.close()
    assert db.history("week47") == []
