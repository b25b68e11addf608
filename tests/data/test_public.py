"""The public-set adapters and data configs, on the real files in ../shared/data."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.conftest import PUBLIC_DATA, needs_public_data
from triage.cli import main
from triage.data.splits import check_no_leakage, load_split
from triage.schema import SPLITS
from triage.text import clean_text, dedup_key

pytestmark = needs_public_data


def run_prepare(root, tmp_path, data: str) -> tuple[pd.DataFrame, dict, dict]:
    out = tmp_path / data
    assert (
        main(["prepare", f"data={data}", f"data.out_dir={out}", f"paths.public_data={PUBLIC_DATA}"])
        == 0
    )
    frame = pd.concat([load_split(out, s).assign(split=s) for s in SPLITS], ignore_index=True)
    return (
        frame,
        json.loads((out / "labels.json").read_text()),
        json.loads((out / "report.json").read_text()),
    )


@pytest.mark.slow
def test_social_mixes_sources_with_both_languages_in_every_split(root, tmp_path):
    frame, labels, report = run_prepare(root, tmp_path, "social")
    for split in SPLITS:
        assert set(frame.loc[frame["split"] == split, "lang"]) == {"nl", "en"}, split
    check_no_leakage(frame)
    assert set(frame["source"]) == {
        "authored",
        "authored_round2",
        "authored_round3",
        "bitext",
        "airline",
        "xed_nl",
        "youtube_spam",
        "tweeteval_hate",
    }
    assert labels["intent"][0] == "order_status" and len(labels["intent"]) == 14
    # mapped labels land where the config says; unmapped heads stay empty
    by_source = frame.groupby("source")
    assert by_source.get_group("airline")["intent"].isna().all()
    assert set(by_source.get_group("youtube_spam")["intent"]) == {"spam"}
    assert set(by_source.get_group("tweeteval_hate")["intent"]) == {"abuse"}
    xed = by_source.get_group("xed_nl")
    assert (xed["lang"] == "nl").all() and set(xed["sentiment"]) == {"negative", "positive"}
    assert set(by_source.get_group("bitext")["intent"].dropna()) <= set(labels["intent"])
    # the report accounts for every row read
    kept = {s: sum(v.values()) for s, v in report["kept_per_source"].items()}
    for source, read in report["read_per_source"].items():
        assert kept.get(source, 0) + sum(report["dropped"].get(source, {}).values()) == read


@pytest.mark.parametrize(
    ("data", "n_labels", "n_test"), [("banking77", 77, 3080), ("clinc150", 150, 4500)]
)
@pytest.mark.slow
def test_benchmarks_keep_their_original_test_split(root, tmp_path, data, n_labels, n_test):
    frame, labels, _ = run_prepare(root, tmp_path, data)
    assert len(labels["intent"]) == n_labels and "sentiment" not in labels
    test = frame[(frame["split"] == "test") & (frame["source"] == data)]
    original = PUBLIC_DATA / "intent_en_fewshot_benchmarks" / data.upper() / "test" / "seq.in"
    lines = original.read_text(encoding="utf-8").splitlines()
    assert len(lines) == n_test
    # the original test split whole, its repeated lines included (as published)
    assert len(test) == n_test > len({dedup_key(t) for t in lines})
    assert set(test["text"]) <= {clean_text(t) for t in lines}
    check_no_leakage(frame)
    if data == "clinc150":
        oos = frame[frame["source"] == "clinc150_oos"]
        # the 100 oos train and 100 oos valid queries calibrate the rejection; none is trained on
        assert oos["split"].value_counts().to_dict() == {"test": 1000, "calib": 200}
        assert oos["intent"].isna().all()
