"""The authored set meets its own promises: size, balance, valid labels, no duplicates."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from triage.config import load_config
from triage.text import dedup_key


@pytest.fixture(scope="module")
def authored(root):
    rows = []
    # every round: data/authored/*.jsonl and data/authored/round*/*.jsonl
    for path in sorted((root / "data" / "authored").rglob("*.jsonl")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            rows.append({**json.loads(line), "_where": f"{path.relative_to(root)}:{n}"})
    return rows


@pytest.fixture(scope="module")
def labels(root):
    heads = load_config([], root=root).data.heads
    return {head: list(heads[head].labels) for head in ("intent", "sentiment")}


def test_at_least_60_per_intent_per_language(authored, labels):
    counts = Counter((r["intent"], r["lang"]) for r in authored)
    short = {
        k: counts[k]
        for k in [(i, lang) for i in labels["intent"] for lang in ("nl", "en")]
        if counts[k] < 60
    }
    assert not short, f"fewer than 60 rows: {short}"
    assert len(authored) >= 1680


def test_rows_are_valid(authored, labels):
    fields = {"id", "text", "lang", "intent", "sentiment", "channel"}
    for r in authored:
        assert set(r) - {"_where"} == fields, r["_where"]
        assert r["intent"] in labels["intent"], r["_where"]
        assert r["sentiment"] in labels["sentiment"], r["_where"]
        assert r["lang"] in ("nl", "en"), r["_where"]
        assert r["text"].strip() == r["text"] and r["text"], r["_where"]
        assert r["id"].startswith(f"{r['intent']}-{r['lang']}-"), r["_where"]


def test_no_two_rows_the_same_after_normalisation(authored):
    ids = Counter(r["id"] for r in authored)
    assert [i for i, n in ids.items() if n > 1] == []
    keys: dict[str, str] = {}
    clashes = []
    for r in authored:
        key = dedup_key(r["text"])
        if key in keys:
            clashes.append((keys[key], r["_where"]))
        keys[key] = r["_where"]
    assert clashes == []


def test_every_sentiment_occurs_in_both_languages(authored, labels):
    counts = Counter((r["sentiment"], r["lang"]) for r in authored)
    for sentiment in labels["sentiment"]:
        for lang in ("nl", "en"):
            assert counts[(sentiment, lang)] >= 100, (sentiment, lang)
