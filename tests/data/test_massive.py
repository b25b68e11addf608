"""The MASSIVE adapter on literal lines of the real files' schema: parallel ids, partitions,
one-language training and the per-intent cap; and the data configs built on it."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from triage.config import load_config, to_container
from triage.data.build import build_dataset
from triage.data.public import read_massive
from triage.errors import DataError

# (id, partition, intent, nl text, en text): the real files' fields, shortened
ROWS = [
    (0, "test", "alarm_set", "maak me om vijf uur wakker", "wake me up at five am"),
    (1, "test", "alarm_set", "zet een alarm", "set an alarm"),
    (2, "test", "alarm_set", "zet een alarm", "set an alarm please"),  # a repeat within test
    (3, "train", "alarm_set", "wek me om zes uur", "wake me at six"),
    (4, "train", "alarm_set", "wek me morgen", "wake me tomorrow"),
    (5, "train", "alarm_set", "zet een alarm", "set an alarm"),  # repeats a test text: dropped
    (6, "train", "weather_query", "wordt het zonnig", "will it be sunny"),
    (7, "dev", "alarm_set", "alarm om acht uur", "alarm at eight"),
    (8, "dev", "weather_query", "regent het morgen", "will it rain tomorrow"),
    (9, "dev", "weather_query", "hoe warm is het", "how warm is it"),
    (10, "test", "weather_query", "hoe koud wordt het", "how cold will it get"),
]


@pytest.fixture
def massive(tmp_path):
    folder = tmp_path / "massive_nl_en"
    folder.mkdir()
    for locale, column in (("nl-NL", 3), ("en-US", 4)):
        lines = [
            {
                "id": row[0],
                "locale": locale,
                "partition": row[1],
                "scenario": row[2].split("_")[0],
                "intent": row[2],
                "utt": row[column],
                "annot_utt": row[column],
                "worker_id": 7,
            }
            for row in ROWS
        ]
        text = "\n".join(json.dumps(line, ensure_ascii=False) for line in lines)
        (folder / f"{locale}.jsonl").write_text(text, encoding="utf-8")  # no final newline
    return folder


def test_adapter_keeps_ids_parallel_and_partitions(massive):
    rows = list(read_massive(massive, {}))
    assert len(rows) == 2 * len(ROWS)
    by_id = {r.id: r for r in rows}
    nl, en = by_id["massive-nl-0"], by_id["massive-en-0"]
    assert nl.pair_id == en.pair_id == "massive-0"
    assert (nl.lang, en.lang, nl.text, en.text) == ("nl", "en", ROWS[0][3], ROWS[0][4])
    assert {r.split for r in rows if r.pair_id == "massive-3"} == {"train"}
    assert {r.split for r in rows if r.pair_id == "massive-7"} == {None}  # dev: ours to draw
    assert nl.where.endswith("nl-NL.jsonl:line 1")


def test_one_language_trains_and_the_cap_draws_per_intent(massive):
    en_only = list(read_massive(massive, {"train_languages": ["en"]}))
    assert {r.split for r in en_only if r.lang == "nl"} == {"test"}
    assert sum(r.lang == "en" for r in en_only) == len(ROWS)
    capped = list(read_massive(massive, {"train_per_intent": {"nl": 1}}))
    nl_train = [r for r in capped if r.lang == "nl" and r.split == "train"]
    assert sorted(r.intent for r in nl_train) == ["alarm_set", "weather_query"]
    assert capped == list(read_massive(massive, {"train_per_intent": {"nl": 1}}))  # seeded
    none = list(read_massive(massive, {"train_per_intent": {"nl": 0}}))
    assert not [r for r in none if r.lang == "nl" and r.split == "train"]
    with pytest.raises(DataError, match="unknown languages"):
        list(read_massive(massive, {"languages": ["de"]}))


def test_train_utterances_as_neutral_sentiment_rows(massive, root):
    options = {"partitions": ["train"], "sentiment": "neutral", "train_per_intent": {"nl": 1}}
    rows = list(read_massive(massive, options))
    assert {r.split for r in rows} == {"train"} and {r.sentiment for r in rows} == {"neutral"}
    assert {r.intent for r in rows} == {None}
    assert sum(r.lang == "nl" for r in rows) == 2  # one per intent
    with pytest.raises(DataError, match=r"options\.partitions"):
        list(read_massive(massive, {"partitions": ["validation"]}))
    # beside the authored set: sentiment-only training rows, nothing in the other splits
    cfg = load_config(["data=authored_massive", f"paths.public_data={massive.parent}"], root=root)
    frame, _, _ = build_dataset(to_container(cfg.data), root, massive.parent)
    added = frame[frame["source"] == "massive"]
    assert len(added) and set(added["split"]) == {"train"}
    assert set(added["sentiment"]) == {"neutral"} and added["intent"].isna().all()


@pytest.mark.parametrize("data", ["massive", "massive_en"])
def test_data_configs_keep_test_whole_and_split_dev_into_val_and_calib(massive, root, data):
    cfg = load_config([f"data={data}", f"paths.public_data={massive.parent}"], root=root)
    frame, labels, _ = build_dataset(to_container(cfg.data), root, massive.parent)
    assert labels["intent"] == ["alarm_set", "weather_query"]
    test = frame[frame["split"] == "test"]
    assert len(test) == 2 * 4 and set(test["lang"]) == {"nl", "en"}  # repeats kept
    assert test.groupby("pair_id")["lang"].nunique().eq(2).all()  # every test id in both
    dev = frame[frame["pair_id"].isin(["massive-7", "massive-8", "massive-9"])]
    assert set(dev["split"]) <= {"val", "calib"}
    train = frame[frame["split"] == "train"]
    assert "massive-5" not in set(train["pair_id"])  # a test text never trains
    langs = {"massive": {"nl", "en"}, "massive_en": {"en"}}[data]
    assert set(train["lang"]) == langs and set(dev["lang"]) == langs
    assert isinstance(frame, pd.DataFrame)
