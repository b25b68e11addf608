"""``triage audit-labelstudio``: a batch to Label Studio and its annotations back.

``audit.labelstudio.action=export`` reads a batch (``audit.batch``, default the newest) and
writes ``audit.labelstudio.file`` (default ``<project>/audit/labelstudio/<batch>.json``), Label
Studio's JSON import format: one task per item with ``data`` (the text and the ids to map it
back) and the model's labels as a pre-annotation (``predictions``), plus the labeling config
beside it (``<batch>.xml``: the text, single-choice ``intent`` and ``sentiment``, an ``unclear``
choice and a ``note`` text area) to paste into the project's settings.

``audit.labelstudio.action=import`` reads Label Studio's JSON export (``audit.labelstudio.file``)
and appends each annotation as a review in the audit database, by the reviewer
``labelstudio:<annotator e-mail or id>`` (created without a token), at the annotation's time.
An annotation is imported once (its task and annotation ids are kept); cancelled (skipped)
annotations and the ``unclear`` choice become ``unclear`` reviews; a head the annotator left
unanswered keeps the model's label (accepting the pre-annotation).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from triage.audit.store import AuditDB, AuditError
from triage.config import Config
from triage.errors import MissingInputError
from triage.io import write_atomic
from triage.schema import HEADS
from triage.serving.predlog import parse_time

log = logging.getLogger(__name__)
UNCLEAR = "unclear"


def labeling_config(labels: dict[str, list[str]]) -> str:
    """Label Studio's labeling config (XML) for a batch's label sets."""
    lines = ["<View>", '  <Text name="text" value="$text"/>']
    for head in HEADS:
        if labels.get(head):
            lines.append(f'  <Header value="{head}"/>')
            lines.append(f'  <Choices name="{head}" toName="text" choice="single">')
            lines += [f"    <Choice value={quoteattr(label)}/>" for label in labels[head]]
            lines.append("  </Choices>")
    lines.append(f'  <Choices name="{UNCLEAR}" toName="text" choice="single">')
    lines.append(f'    <Choice value="{UNCLEAR}"/>')
    lines.append("  </Choices>")
    lines.append('  <TextArea name="note" toName="text" maxSubmissions="1" editable="true"/>')
    lines.append("</View>")
    return "\n".join(lines) + "\n"


def to_tasks(batch: dict[str, Any], items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Label Studio import tasks for a batch's items, with the model's labels pre-annotated."""
    tasks = []
    for item in items:
        result = [
            {
                "from_name": head,
                "to_name": "text",
                "type": "choices",
                "value": {"choices": [item[head]]},
            }
            for head in HEADS
            if item[head] is not None and item[head] in (batch["labels"].get(head) or [])
        ]
        tasks.append(
            {
                "data": {
                    "text": item["text"],
                    "item_id": item["id"],
                    "batch": batch["id"],
                    "message_id": item["message_id"],
                    "lang": item["lang"],
                    "model_intent": item["intent"],
                    "model_sentiment": item["sentiment"],
                },
                "predictions": [
                    {
                        "model_version": str(item["model_version"]),
                        "score": item["intent_prob"],
                        "result": result,
                    }
                ],
            }
        )
    return tasks


def _annotator(annotation: dict[str, Any]) -> str:
    who = annotation.get("completed_by")
    if isinstance(who, dict):
        who = who.get("email") or who.get("id")
    return f"labelstudio:{who if who is not None else 'unknown'}"


def read_annotation(annotation: dict[str, Any]) -> dict[str, Any]:
    """``{head: label}``, ``unclear`` and ``note`` of one Label Studio annotation."""
    out: dict[str, Any] = {"unclear": bool(annotation.get("was_cancelled")), "note": None}
    for result in annotation.get("result") or []:
        name, value = result.get("from_name"), result.get("value") or {}
        if name in HEADS and value.get("choices"):
            out[name] = value["choices"][0]
        elif name == UNCLEAR and value.get("choices"):
            out["unclear"] = True
        elif name == "note" and value.get("text"):
            out["note"] = " ".join(value["text"])
    return out


def import_tasks(db: AuditDB, tasks: list[dict[str, Any]]) -> dict[str, int]:
    """Append every not yet imported annotation of a Label Studio export as a review."""
    counts = {"imported": 0, "already imported": 0, "not from this project": 0}
    for task in tasks:
        item_id = (task.get("data") or {}).get("item_id")
        if item_id is None:
            counts["not from this project"] += 1
            continue
        item = db.item(int(item_id))
        for annotation in task.get("annotations") or []:
            ref = f"labelstudio:{task.get('id')}:{annotation.get('id')}"
            if db.has_source_ref(ref):
                counts["already imported"] += 1
                continue
            parsed = read_annotation(annotation)
            created = annotation.get("created_at")
            db.add_review(
                int(item_id),
                db.reviewer_named(_annotator(annotation), create=True),
                intent=parsed.get("intent", item["intent"]),
                sentiment=parsed.get("sentiment", item["sentiment"]),
                unclear=parsed["unclear"],
                note=parsed["note"],
                source_ref=ref,
                created_at=parse_time(created).isoformat(timespec="microseconds")
                if created
                else None,
            )
            counts["imported"] += 1
    return counts


def run(cfg: Config) -> Path:
    """Export a batch for Label Studio or import its annotations (``audit.labelstudio``)."""
    acfg, lcfg = cfg.audit, cfg.audit.labelstudio
    db = AuditDB(acfg.db_url)
    try:
        if lcfg.action == "export":
            batch = db.batch(acfg.batch)
            path = Path(lcfg.file or Path(lcfg.out_dir) / f"{batch['id']}.json")
            tasks = to_tasks(batch, db.items(batch["id"]))
            text = json.dumps(tasks, ensure_ascii=False, indent=1)
            write_atomic(path, lambda p: p.write_text(text + "\n", encoding="utf-8"))
            config_path = path.with_suffix(".xml")
            xml = labeling_config(batch["labels"])
            write_atomic(config_path, lambda p: p.write_text(xml, encoding="utf-8"))
            print(f"{path}: {len(tasks)} tasks; labeling config {config_path}")
            return path
        if lcfg.action == "import":
            if not lcfg.file:
                raise AuditError(
                    "audit.labelstudio.file=<Label Studio JSON export> is needed to import"
                )
            path = Path(lcfg.file)
            if not path.is_file():
                raise MissingInputError(f"{path}: no such Label Studio export")
            tasks = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(tasks, list):
                raise AuditError(f"{path}: expected Label Studio's JSON export (a list of tasks)")
            counts = import_tasks(db, tasks)
            print(f"{path}: {counts}")
            return path
        raise AuditError(f"audit.labelstudio.action must be export or import, got {lcfg.action!r}")
    finally:
        db.close()
