"""Label-issue detection on the authored data with planted errors, the issues as a review
batch whose corrections reach the data layer, and the Label Studio round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.audit.support import audit_overrides
from triage.audit import feedback as auditexport
from triage.audit import label_issues
from triage.audit import labelstudio as auditlabelstudio
from triage.audit import report as auditreport
from triage.audit.store import AuditDB
from triage.config import load_config, to_container
from triage.data.build import build_dataset
from triage.errors import MissingInputError
from triage.io import write_json

PLANTED = 20


WORDS = {
    "order_status": "pakket bestelling verzonden tracking bezorgd waar",
    "refund_return": "geld terug retour terugbetaling refund return",
    "spam": "klik hier gratis verdien volg link",
    "praise": "dank top geweldig blij super bedankt",
    "cancellation": "opzeggen annuleren abonnement stoppen cancel",
    "account_technical": "inloggen wachtwoord app error betaling crash",
}


@pytest.fixture(scope="module")
def noisy(root, tmp_path_factory, module_db_url):
    """A train split of 300 messages built from each intent's own words (a model can tell
    them apart), with the intent of 20 rows changed."""
    tmp = tmp_path_factory.mktemp("audit-interop")
    rng = np.random.default_rng(1)
    filler = ["ik", "jullie", "de", "het", "een", "is", "van", "we", "you", "the", "hoi"]
    rows = []
    for intent, words in WORDS.items():
        for k in range(50):
            text = " ".join(
                [*rng.choice(words.split(), size=3), *rng.choice(filler, size=4), str(k)]
            )
            rows.append(
                {
                    "id": f"{intent}-{k:02d}",
                    "text": text,
                    "lang": "nl",
                    "intent": intent,
                    "sentiment": "neutral",
                }
            )
    frame = pd.DataFrame(rows)
    intents = sorted(WORDS)
    truth = dict(zip(frame["id"], frame["intent"], strict=True))
    flipped = rng.choice(len(frame), size=PLANTED, replace=False)
    for i in flipped:
        frame.loc[i, "intent"] = intents[(intents.index(frame.loc[i, "intent"]) + 1) % len(intents)]
    frame["source"], frame["split"], frame["channel"], frame["created_at"] = (
        "authored",
        "train",
        None,
        None,
    )
    data_dir = tmp / "data"
    data_dir.mkdir()
    frame.to_parquet(data_dir / "train.parquet")
    write_json(
        data_dir / "labels.json",
        {"intent": intents, "sentiment": ["negative", "neutral", "positive"]},
    )
    cfg = load_config(
        [
            *audit_overrides(tmp, module_db_url),
            f"audit.issues.data_dir={data_dir}",
            "audit.issues.folds=3",
            "audit.issues.c=1.0",
            "audit.issues.push=true",
            "audit.batch=issues-w47",
            "tracking.enabled=false",  # MLflow logging: test_audit_report
        ],
        root=root,
    )
    return cfg, tmp, frame, set(frame.loc[flipped, "id"]), truth


def test_planted_label_errors_rank_first(noisy):
    cfg, _, _, planted, _ = noisy
    issues = label_issues.run(cfg)
    csv = pd.read_csv(cfg.audit.issues.out_file)
    assert list(csv.columns) == label_issues.COLUMNS
    assert csv["rank"].tolist() == list(range(1, len(csv) + 1))
    assert csv["self_confidence"].is_monotonic_increasing
    intent = issues[issues["head"] == "intent"]
    found = set(intent["id"]) & planted
    top = set(intent.head(PLANTED)["id"])
    # confident learning on out-of-fold TF-IDF probabilities finds the planted errors and
    # ranks them first (the rest of the set is clean; one sentiment label: no sentiment issues)
    assert len(found) >= 0.75 * PLANTED
    assert len(top & planted) >= 0.9 * min(len(intent), PLANTED)
    assert set(issues["head"]) == {"intent"}
    flipped_row = intent[intent["id"].isin(planted)].iloc[0]
    assert flipped_row["given"] != flipped_row["suggested"]


def test_issue_batch_corrections_reach_the_data(noisy, root):
    cfg, tmp, frame, planted, truth = noisy
    db = AuditDB(cfg.audit.db_url)
    batch = db.batch("issues-w47")
    items = db.items("issues-w47")
    assert batch["kind"] == "label_issues" and items
    assert all(i["inclusion_prob"] is None and i["extra"]["suggested"] for i in items)
    db.add_reviewer("rita")
    rita = db.reviewer_named("rita")
    for item in items:  # the reviewer restores the true intent
        db.add_review(item["id"], rita, truth[item["message_id"]], item["sentiment"])
    db.close()
    report = auditreport.run(cfg)
    metrics = json.loads((report / "metrics.json").read_text())
    wrong = sum(i["message_id"] in planted for i in items)
    assert metrics["flagged_wrong"]["estimate"] == pytest.approx(wrong / len(items))
    path = auditexport.run(cfg)
    rows = {r["id"]: r for r in map(json.loads, path.read_text().splitlines())}
    fixed = next(i for i in items if i["message_id"] in planted)
    assert rows[f"feedback-{fixed['message_id']}"]["intent"] == truth[fixed["message_id"]]
    # feedback comes first in the data config: its copy of the text wins deduplication
    data = to_container(load_config([f"data.sources.feedback.path={path.parent}"], root=root).data)
    source = tmp / "noisy.jsonl"
    frame.drop(columns=["split"]).to_json(source, orient="records", lines=True, force_ascii=False)
    data["sources"]["authored"]["path"] = str(source)
    built, _, report = build_dataset(data, root, root)
    row = built[built["text"] == fixed["text"]]
    assert len(row) == 1 and row.iloc[0]["intent"] == truth[fixed["message_id"]]
    assert row.iloc[0]["source"] == "feedback"
    assert report["dropped"]["authored"]["duplicate text with other labels"] >= 1


def test_label_studio_round_trip(noisy):
    cfg, tmp, _, _, _ = noisy
    path = auditlabelstudio.run(cfg)  # export (default action), batch issues-w47
    tasks = json.loads(Path(path).read_text())
    db = AuditDB(cfg.audit.db_url)
    items = db.items("issues-w47")
    assert len(tasks) == len(items)
    first = tasks[0]
    assert first["data"]["text"] == items[0]["text"] and first["data"]["item_id"] == items[0]["id"]
    result = first["predictions"][0]["result"]
    assert {r["from_name"] for r in result} <= {"intent", "sentiment"}
    assert result[0]["type"] == "choices" and result[0]["to_name"] == "text"
    xml = Path(path).with_suffix(".xml").read_text()
    assert '<Choices name="intent" toName="text" choice="single">' in xml
    assert all(f'value="{label}"' in xml for label in db.batch("issues-w47")["labels"]["intent"])

    # what Label Studio exports after two annotators worked: one changed the intent, one
    # skipped, one accepted the pre-annotation (no result for a head: the model's label stays)
    other = next(
        lab for lab in db.batch("issues-w47")["labels"]["intent"] if lab != items[1]["intent"]
    )
    export = [
        {
            **tasks[0],
            "id": 101,
            "annotations": [
                {
                    "id": 1,
                    "completed_by": {"email": "lisa@example.com"},
                    "was_cancelled": False,
                    "created_at": "2026-11-24T10:00:00.000000Z",
                    "result": [
                        {
                            "from_name": "intent",
                            "to_name": "text",
                            "type": "choices",
                            "value": {"choices": [items[0]["intent"]]},
                        },
                        {
                            "from_name": "note",
                            "to_name": "text",
                            "type": "textarea",
                            "value": {"text": ["fine"]},
                        },
                    ],
                }
            ],
        },
        {
            **tasks[1],
            "id": 102,
            "annotations": [
                {
                    "id": 2,
                    "completed_by": 7,
                    "was_cancelled": False,
                    "created_at": "2026-11-24T10:01:00Z",
                    "result": [
                        {
                            "from_name": "intent",
                            "to_name": "text",
                            "type": "choices",
                            "value": {"choices": [other]},
                        }
                    ],
                },
                {
                    "id": 3,
                    "completed_by": {"email": "lisa@example.com"},
                    "was_cancelled": True,
                    "created_at": "2026-11-24T10:02:00Z",
                    "result": [],
                },
            ],
        },
    ]
    ls_file = tmp / "ls_export.json"
    ls_file.write_text(json.dumps(export))
    cfg_import = load_config(
        [
            *audit_overrides(tmp, cfg.audit.db_url),
            "audit.labelstudio.action=import",
            f"audit.labelstudio.file={ls_file}",
        ],
        root=cfg.paths.root and Path(cfg.paths.root),
    )
    before = len(db.history("issues-w47"))
    auditlabelstudio.run(cfg_import)
    history = db.history("issues-w47")[before:]
    assert [(h["reviewer"], h["status"]) for h in history] == [
        ("labelstudio:lisa@example.com", "accepted"),
        ("labelstudio:7", "corrected"),
        ("labelstudio:lisa@example.com", "unclear"),
    ]
    assert history[0]["note"] == "fine" and history[0]["created_at"].startswith("2026-11-24T10:00")
    assert history[1]["intent"] == other
    auditlabelstudio.run(cfg_import)  # importing the same export again adds nothing
    assert len(db.history("issues-w47")) == before + 3
    db.close()
    missing = load_config(
        [
            *audit_overrides(tmp, cfg.audit.db_url),
            "audit.labelstudio.action=import",
            f"audit.labelstudio.file={tmp}/no_export.json",
        ],
        root=cfg.paths.root and Path(cfg.paths.root),
    )
    with pytest.raises(MissingInputError, match="no such Label Studio export"):
        auditlabelstudio.run(missing)
