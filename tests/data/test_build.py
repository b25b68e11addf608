"""The data layer on real (small) files: readers, label maps, errors, splits, leakage."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from triage.config import load_config, to_container
from triage.data.build import build_dataset
from triage.data.splits import assign_splits, check_no_leakage, load_split
from triage.errors import DataError
from triage.pipeline.prepare import run as prepare
from triage.schema import SPLITS

ROWS = [
    {"msg": "Waar blijft mijn pakket?", "label": "where", "mood": "neg"},
    {"msg": "where is my order #NR-482913", "label": "where", "mood": "neu"},
    {"msg": "Top geholpen, dank jullie!", "label": "thanks", "mood": "pos"},
    {"msg": "love this product", "label": "thanks", "mood": "pos"},
]
INTENT_MAP = {"where": "order_status", "thanks": "praise"}
SENTIMENT_MAP = {"neg": "negative", "neu": "neutral", "pos": "positive"}


def data_cfg(root: Path, path: Path, **source) -> dict:
    """The default data config with one user-file source instead of the authored set."""
    cfg = to_container(load_config([], root=root).data)
    cfg["sources"] = {
        "user": {
            "kind": "file",
            "path": str(path),
            "format": None,
            "columns": {"text": "msg", "intent": "label", "sentiment": "mood"},
            "intent_map": INTENT_MAP,
            "sentiment_map": SENTIMENT_MAP,
            "lang": None,
            "max_per_label": None,
            "on_invalid": "error",
            "options": {},
            **source,
        }
    }
    return cfg


def write(path: Path, rows: list[dict], fmt: str) -> Path:
    frame = pd.DataFrame(rows)
    if fmt == "csv":
        frame.to_csv(path, index=False)
    elif fmt == "jsonl":
        frame.to_json(path, orient="records", lines=True, force_ascii=False)
    else:
        frame.to_parquet(path)
    return path


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_reads_each_format_with_mapped_columns_and_labels(root, tmp_path, fmt):
    path = write(tmp_path / f"messages.{fmt}", ROWS, fmt)
    frame, labels, report = build_dataset(data_cfg(root, path), root, tmp_path)
    assert sorted(frame["text"]) == sorted(r["msg"] for r in ROWS)
    by_text = frame.set_index("text")
    assert by_text.loc["love this product", "intent"] == "praise"
    assert by_text.loc["Waar blijft mijn pakket?", "sentiment"] == "negative"
    # no lang column: detected per row
    assert by_text.loc["Waar blijft mijn pakket?", "lang"] == "nl"
    assert by_text.loc["love this product", "lang"] == "en"
    assert report["languages_detected"] == {"nl": 2, "en": 2}
    assert labels["intent"][0] == "order_status"  # label order from the config, not the data
    assert set(frame["source"]) == {"user"}


def test_missing_label_is_missing_for_that_head_only(root, tmp_path):
    rows = [*ROWS, {"msg": "cancel my order pls", "label": None, "mood": "neu"}]
    frame, _, _ = build_dataset(
        data_cfg(root, write(tmp_path / "m.csv", rows, "csv")), root, tmp_path
    )
    row = frame.set_index("text").loc["cancel my order pls"]
    assert pd.isna(row["intent"]) and row["sentiment"] == "neutral"


def expect_error(root, tmp_path, path, *fragments, **source):
    with pytest.raises(DataError) as err:
        build_dataset(data_cfg(root, path, **source), root, tmp_path)
    for fragment in fragments:
        assert fragment in str(err.value), str(err.value)


def test_missing_file(root, tmp_path):
    expect_error(root, tmp_path, tmp_path / "nope.csv", "nope.csv", "not found")


def test_unknown_source_kind_names_the_known_ones(root, tmp_path):
    path = write(tmp_path / "k.csv", ROWS, "csv")
    known = "file, hub, bitext"
    expect_error(root, tmp_path, path, "data.sources.user.kind='csvfile'", known, kind="csvfile")


def test_missing_column(root, tmp_path):
    path = write(tmp_path / "m.csv", [{"message": "hoi", "label": "where"}], "csv")
    expect_error(root, tmp_path, path, "m.csv", "'msg'", "['message', 'label']", "columns")


def test_unknown_label_name(root, tmp_path):
    path = write(
        tmp_path / "m.csv", [*ROWS, {"msg": "hallo?", "label": "huh", "mood": "neu"}], "csv"
    )
    expect_error(root, tmp_path, path, "m.csv:line 6", "'huh'", "intent_map")


def test_unknown_label_without_a_map(root, tmp_path):
    rows = [{"msg": "hallo?", "label": "order_staus", "mood": "neutral"}]
    path = write(tmp_path / "m.jsonl", rows, "jsonl")
    expect_error(
        root,
        tmp_path,
        path,
        "m.jsonl:line 1",
        "unknown intent label 'order_staus'",
        intent_map=None,
        sentiment_map=None,
    )


@pytest.mark.parametrize("text", ["", "   \t ", "\u200b"])
def test_empty_text(root, tmp_path, text):
    path = write(
        tmp_path / "m.jsonl", [*ROWS, {"msg": text, "label": "where", "mood": "neu"}], "jsonl"
    )
    expect_error(root, tmp_path, path, "m.jsonl:line 5", "empty")


def test_empty_text_dropped_and_reported_when_allowed(root, tmp_path):
    path = write(
        tmp_path / "m.jsonl", [*ROWS, {"msg": " ", "label": "where", "mood": "neu"}], "jsonl"
    )
    frame, _, report = build_dataset(data_cfg(root, path, on_invalid="drop"), root, tmp_path)
    assert len(frame) == len(ROWS)
    assert report["dropped"]["user"]["empty text"] == 1
    assert report["dropped_examples"]["empty text"] == [f"{path}:line 5"]


def test_non_utf8_file(root, tmp_path):
    path = tmp_path / "m.csv"
    path.write_bytes("msg,label,mood\nhoi,where,neu\ncafé,where,neu\n".encode("cp1252"))
    expect_error(root, tmp_path, path, "m.csv", "not UTF-8 (line 3", "UTF-8")


def test_label_map_to_a_label_the_taxonomy_lacks(root, tmp_path):
    path = write(tmp_path / "m.csv", ROWS, "csv")
    expect_error(
        root,
        tmp_path,
        path,
        "data.sources.user.intent_map",
        "'where'",
        "'order_tracking'",
        intent_map={"where": "order_tracking", "thanks": "praise"},
    )


def test_duplicate_ids(root, tmp_path):
    rows = [{**r, "id": "same"} for r in ROWS[:2]]
    path = write(tmp_path / "m.csv", rows, "csv")
    with pytest.raises(DataError, match="ids must be unique"):
        build_dataset(
            data_cfg(
                root,
                path,
                columns={"text": "msg", "intent": "label", "sentiment": "mood", "id": "id"},
            ),
            root,
            tmp_path,
        )


def test_duplicates_after_normalisation_are_dropped_and_reported(root, tmp_path):
    rows = [
        *ROWS,
        {"msg": "WHERE is my order   #NR-482913!!", "label": "where", "mood": "neg"},
        {"msg": "Ｌｏｖｅ this product 😍", "label": "thanks", "mood": "pos"},
    ]
    frame, _, report = build_dataset(
        data_cfg(root, write(tmp_path / "m.csv", rows, "csv")), root, tmp_path
    )
    assert len(frame) == len(ROWS)
    assert report["dropped"]["user"] == {"duplicate text": 1, "duplicate text with other labels": 1}


def test_pii_masking_switch(root, tmp_path):
    rows = [
        {
            "msg": "mail me at jan@example.com or call 06-12345678 re #NR-482913 @norrland_nl "
            "https://norrland.nl/x",
            "label": "where",
            "mood": "neu",
        }
    ]
    cfg = data_cfg(root, write(tmp_path / "m.csv", rows, "csv"))
    cfg["pii_mask"] = True
    frame, _, _ = build_dataset(cfg, root, tmp_path)
    assert frame["text"][0] == "mail me at <EMAIL> or call <PHONE> re <ORDER> <USER> <URL>"


def test_assign_splits_is_stratified_exact_and_deterministic():
    frame = pd.DataFrame(
        {
            "source": ["user"] * 31,
            "lang": ["nl"] * 20 + ["en"] * 10 + ["en"],
            "intent": ["praise"] * 10 + ["spam"] * 10 + ["praise"] * 10 + [None],
            "sentiment": [None] * 30 + ["neutral"],
            "split": [None] * 31,
        }
    )
    shares = {"train": 0.7, "val": 0.1, "calib": 0.1, "test": 0.1}
    split = assign_splits(frame, shares, seed=1)
    for lang, intent in [("nl", "praise"), ("nl", "spam"), ("en", "praise")]:
        part = split[(frame["lang"] == lang) & (frame["intent"] == intent)]
        assert part.value_counts().to_dict() == {"train": 7, "val": 1, "calib": 1, "test": 1}
    assert split.iloc[-1] == "train"  # a stratum of one goes to train
    assert split.equals(assign_splits(frame, shares, seed=1))
    assert not split.equals(assign_splits(frame, shares, seed=2))


def test_a_sources_splits_do_not_depend_on_other_sources():
    def rows(source: str, n: int) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "source": [source] * n,
                "lang": ["nl"] * n,
                "intent": ["praise"] * n,
                "sentiment": [None] * n,
                "split": [None] * n,
            }
        )

    shares = {"train": 0.7, "val": 0.1, "calib": 0.1, "test": 0.1}
    alone = assign_splits(rows("authored", 40), shares, seed=5)
    mixed = pd.concat([rows("bitext", 33), rows("authored", 40)], ignore_index=True)
    together = assign_splits(mixed, shares, seed=5)
    assert together.iloc[33:].tolist() == alone.tolist()


def test_fixed_split_is_kept():
    frame = pd.DataFrame(
        {
            "source": ["user"] * 4,
            "lang": ["en"] * 4,
            "intent": ["a"] * 4,
            "sentiment": [None] * 4,
            "split": ["test", None, None, None],
        }
    )
    split = assign_splits(frame, {"train": 1, "val": 0, "calib": 0, "test": 0}, seed=0)
    assert split.tolist() == ["test", "train", "train", "train"]


def test_leakage_check_catches_shared_text():
    frame = pd.DataFrame({"text": ["Hoi!", "hoi", "doei"], "split": ["train", "test", "test"]})
    with pytest.raises(DataError, match="more than one split"):
        check_no_leakage(frame)


def prepared(root: Path, out: Path, *overrides: str) -> dict[str, pd.DataFrame]:
    cfg = load_config([f"data.out_dir={out}", *overrides], root=root)
    prepare(cfg)
    return {s: load_split(out, s) for s in SPLITS}


@pytest.mark.slow
def test_prepare_authored_without_public_data(root, tmp_path, monkeypatch):
    monkeypatch.setenv("TRIAGE_DATA_ROOT", str(tmp_path / "no-shared-here"))
    splits = prepared(root, tmp_path / "a")
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    labels = json.loads((tmp_path / "a" / "labels.json").read_text())
    assert len(labels["intent"]) == 14 and labels["sentiment"] == [
        "negative",
        "neutral",
        "positive",
    ]
    for name, split in splits.items():
        assert set(split["lang"]) == {"nl", "en"}, name
        assert set(split["intent"]) == set(labels["intent"]), name  # every class in every split
    everything = pd.concat(splits.values(), keys=SPLITS, names=["split"]).reset_index("split")
    check_no_leakage(everything)
    assert report["rows"] == len(everything) and not report["dropped"]
    assert report["warnings"] == []
    # deterministic under the seed, different under another
    again = prepared(root, tmp_path / "b")
    assert all(splits[s]["id"].tolist() == again[s]["id"].tolist() for s in SPLITS)
    other = prepared(root, tmp_path / "c", "data.seed=99")
    assert splits["test"]["id"].tolist() != other["test"]["id"].tolist()


def test_social_requires_public_data_with_a_clear_error(root, tmp_path, monkeypatch):
    monkeypatch.setenv("TRIAGE_DATA_ROOT", str(tmp_path / "no-shared-here"))
    cfg = load_config(["data=social", f"data.out_dir={tmp_path}"], root=root)
    with pytest.raises(DataError, match="TRIAGE_DATA_ROOT"):
        prepare(cfg)
