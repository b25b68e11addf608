"""The routing rules (docs/taxonomy.md's table) and the per-head decision rule: pure Python."""

from __future__ import annotations

import pytest

from triage.config import load_config, to_container
from triage.routing import Action, Priority, RoutingTable, decide_head, route

INTENTS = ["order_status", "order_problem", "refund_return", "abuse", "complaint", "human_agent"]


@pytest.fixture(scope="module")
def cfg(root):
    return load_config([], root=root)


@pytest.fixture(scope="module")
def table(cfg) -> RoutingTable:
    """The shipped default table, through the config loader (as export writes routing.json)."""
    return RoutingTable.from_dict(to_container(cfg.routing))


def confident(label: str, p: float = 0.99, threshold: float = 0.9):
    probs = [(1 - p) / (len(INTENTS) - 1)] * len(INTENTS)
    probs[INTENTS.index(label)] = p
    return decide_head("intent", probs, INTENTS, dict.fromkeys(INTENTS, threshold))


def sentiment(negative: float, neutral: float | None = None) -> dict[str, float]:
    neutral = (1 - negative) if neutral is None else neutral
    return {"negative": negative, "neutral": neutral, "positive": 1 - negative - neutral}


def test_table_covers_the_taxonomy(table, cfg):
    authored = cfg.data.heads["intent"].labels
    assert authored and table.unrouted(authored) == []
    assert RoutingTable.from_dict(table.to_dict()) == table


@pytest.mark.parametrize("p", [0.5, 0.95, 0.999, 1.0])
def test_abuse_is_never_automatic(table, p):
    decided = decide_head("intent", [p, 1 - p], ["abuse", "other"], {"abuse": 0.5, "other": 0.5})
    assert decided.automatic
    r = route(table, decided, sentiment(0.0, 0.5))
    assert (r.decision, r.action) == ("review", Action.moderation_review)
    assert "never handled automatically" in r.reason


@pytest.mark.parametrize(
    ("intent", "before", "after"),
    [
        ("order_problem", Priority.high, Priority.urgent),
        ("refund_return", Priority.high, Priority.urgent),
        ("human_agent", Priority.urgent, Priority.urgent),  # already the top
    ],
)
def test_negative_raises_support_priority(table, intent, before, after):
    calm = route(table, confident(intent), sentiment(0.1, 0.8))
    angry = route(table, confident(intent), sentiment(0.8, 0.15))
    assert (calm.decision, calm.action, calm.priority) == ("auto", Action.support_queue, before)
    assert (angry.decision, angry.action, angry.priority) == ("auto", Action.support_queue, after)
    assert ("raises it to urgent" in angry.reason) == (before != after)


def test_negative_raise_needs_a_confident_top_negative(table):
    # negative top-1 but under raise_priority_at (0.5), and negative not top-1
    assert route(table, confident("order_problem"), sentiment(0.45, 0.3)).priority == "high"
    assert route(table, confident("order_problem"), sentiment(0.4, 0.6)).priority == "high"
    # the care queue is not raised: complaints are negative by nature
    assert route(table, confident("complaint"), sentiment(0.95, 0.05)).priority == "normal"


@pytest.mark.parametrize(("p_negative", "blocked"), [(0.2, False), (0.29, False), (0.3, True)])
def test_negative_blocks_template_replies(table, p_negative, blocked):
    r = route(table, confident("order_status"), sentiment(p_negative))
    if blocked:
        assert (r.decision, r.action) == ("review", Action.review)
        assert "rules out a template reply" in r.reason
    else:
        assert (r.decision, r.action) == ("auto", Action.auto_reply)


def test_not_confident_goes_to_review(table):
    below = confident("order_status", p=0.8, threshold=0.9)
    assert not below.automatic and below.threshold == 0.9
    r = route(table, below, sentiment(0.0, 0.9))
    assert (r.decision, r.action, r.priority) == ("review", Action.review, Priority.normal)
    assert "below its threshold 0.90" in r.reason
    never = decide_head("intent", [0.999, 0.001], ["spam", "other"], {"spam": None, "other": 0.5})
    assert not never.automatic and never.threshold is None
    assert route(table, never, None).decision == "review"
    # a label missing from the thresholds, or an infinite threshold, is never automatic too
    assert not decide_head("intent", [1.0, 0.0], ["spam", "x"], {"x": 0.1}).automatic
    assert not decide_head("intent", [1.0, 0.0], ["spam", "x"], {"spam": float("inf")}).automatic


def test_threshold_is_inclusive_and_top1_is_the_first_maximum():
    at = decide_head("intent", [0.75, 0.25], ["a", "b"], {"a": 0.75, "b": 0.75})
    assert at.automatic and at.label == "a"
    tie = decide_head("intent", [0.5, 0.5], ["a", "b"], {"a": 0.5, "b": 0.5})
    assert tie.label == "a"


@pytest.mark.parametrize(
    ("margin", "automatic"),
    [(0.0, True), (0.2, True), (0.5, True), (0.5000001, False), (0.7, False)],
)
def test_margin_rule(margin, automatic):
    # gap 0.75 - 0.25 = 0.5 exactly in binary floating point
    decided = decide_head(
        "intent", [0.75, 0.25, 0.0], ["a", "b", "c"], dict.fromkeys("abc", 0.5), margin
    )
    assert decided.automatic is automatic
    if not automatic:
        assert "less than the margin" in decided.why


def test_unknown_intent_gets_the_default_rule(table):
    decided = decide_head("intent", [0.99, 0.01], ["new_label", "other"], {"new_label": 0.5})
    r = route(table, decided, None)
    assert (r.decision, r.action) == ("review", table.default.action)


def test_without_sentiment_the_negative_rule_is_off(table):
    r = route(table, confident("order_status"), None)
    assert (r.decision, r.action) == ("auto", Action.auto_reply)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("not_confident"), "missing key"),
        (lambda d: d["intents"]["spam"].update(action="delete"), "intents.spam.action"),
        (lambda d: d["intents"]["spam"].update(priority="asap"), "intents.spam.priority"),
        (lambda d: d["intents"]["spam"].update(automatic="no"), "automatic must be true or false"),
        (lambda d: d["negative"].update(block_auto_reply_at=1.5), "block_auto_reply_at"),
        (lambda d: d["negative"].pop("label"), "'label'"),
    ],
)
def test_bad_tables_fail_naming_the_key(table, change, message):
    data = table.to_dict()
    change(data)
    with pytest.raises(ValueError, match=message):
        RoutingTable.from_dict(data)
