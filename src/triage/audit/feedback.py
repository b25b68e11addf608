"""``triage audit-export``: the reviewed labels of a batch as a new version of the feedback source.

Reads the batch (``audit.batch``, default the newest) from the audit database; writes
``<audit.export.out_dir>/<batch>.jsonl`` (default ``data/feedback/``) in the project's record
schema (``id, text, lang, intent, sentiment, source, channel, created_at``; ``source:
feedback``; plus ``batch``, ``exported_at``, ``status`` and ``reviewers``, which the data layer
ignores) and updates ``manifest.yaml`` beside it (per batch: file, rows, SHA-256, export time,
what was held back). With ``audit.export.dvc_add`` and a DVC project, ``dvc add`` versions the
file (``<batch>.jsonl.dvc``, to commit; the data goes to the DVC cache and remote). The data
config ``authored`` reads the folder as its ``feedback`` source, which ``dvc.yaml`` lists as a
dependency of ``prepare``: the next ``dvc repro`` trains on the corrections.

Exported: items whose required reviewers agree (accepted or corrected) and adjudicated items.
Held back (counted in the manifest): conflicts (two reviewers disagree; an adjudicator settles
them in the review app), items still waiting for their second reviewer, unclear items and
unreviewed ones. A message already exported by another batch file is not exported twice (the
data layer needs unique ids); the earlier file keeps it.

Re-running the export for the same batch writes a new version of the same file (more reviews
may have come in).
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
from collections import Counter
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Any

import yaml

from triage.audit.store import ItemLabel, load_batch, now_iso
from triage.config import Config
from triage.io import write_atomic
from triage.text import UNDETERMINED

log = logging.getLogger(__name__)
SOURCE = "feedback"
MANIFEST = "manifest.yaml"
EXPORTED_STATES = ("reviewed", "adjudicated")


def feedback_id(message_id: str) -> str:
    return f"{SOURCE}-{message_id}"


def feedback_rows(
    batch: dict[str, Any],
    items: list[dict[str, Any]],
    labels: dict[int, ItemLabel],
    exported_at: str,
    skip_ids: AbstractSet[str] = frozenset(),
) -> tuple[list[dict[str, Any]], Counter]:
    """The exportable items of a batch as data records, and what was held back by reason.

    Args:
        batch: the batch row.
        items: its items.
        labels: :meth:`AuditDB.labels` of the batch.
        exported_at: the export time written into every row.
        skip_ids: record ids other feedback files already hold.
    """
    rows, held = [], Counter()
    for item in items:
        label = labels[item["id"]]
        if label.state not in EXPORTED_STATES:
            held[label.state] += 1
            continue
        if label.intent is None and label.sentiment is None:
            held["no label"] += 1
            continue
        record_id = feedback_id(item["message_id"])
        if record_id in skip_ids:
            held["exported by another batch"] += 1
            continue
        same = label.intent == item["intent"] and label.sentiment == item["sentiment"]
        rows.append(
            {
                "id": record_id,
                "text": item["text"],
                "lang": None if item["lang"] in (None, UNDETERMINED) else item["lang"],
                "intent": label.intent,
                "sentiment": label.sentiment,
                "source": SOURCE,
                "channel": item["channel"],
                "created_at": item["message_created_at"],
                "batch": batch["id"],
                "exported_at": exported_at,
                "status": "accepted" if same else "corrected",
                "reviewers": label.reviewers,
            }
        )
    return rows, held


def ids_in_other_files(folder: Path, own: Path) -> set[str]:
    """Record ids in the folder's other feedback files."""
    ids: set[str] = set()
    for path in sorted(folder.glob("*.jsonl")):
        if path.resolve() == own.resolve():
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                ids.add(json.loads(line)["id"])
    return ids


def dvc_add(path: Path, root: Path) -> bool:
    """``dvc add path`` in the project; False (with a hint) when DVC is missing or fails."""
    if not (root / ".dvc").is_dir() or not path.resolve().is_relative_to(root.resolve()):
        log.info("%s is not inside the DVC project %s: not DVC-versioned", path, root)
        return False
    result = subprocess.run(
        [sys.executable, "-m", "dvc", "add", "-q", str(path.resolve().relative_to(root.resolve()))],
        cwd=root,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        log.warning(
            "dvc add %s failed (%s); version it by hand: dvc add %s",
            path,
            (result.stderr or result.stdout).strip()[-300:],
            path,
        )
        return False
    return True


def run(cfg: Config) -> Path:
    """Export ``audit.batch`` (default: the newest) into the feedback folder; return the file."""
    acfg, ecfg = cfg.audit, cfg.audit.export
    batch, items, labels = load_batch(acfg.db_url, acfg.batch)
    folder = Path(ecfg.out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{batch['id']}.jsonl"
    exported_at = now_iso()
    rows, held = feedback_rows(batch, items, labels, exported_at, ids_in_other_files(folder, out))
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    if rows:
        write_atomic(out, lambda p: p.write_text(text, encoding="utf-8"))
    else:  # the data layer refuses empty files; nothing to train on yet
        out.unlink(missing_ok=True)
    manifest_path = folder / MANIFEST
    manifest = (
        yaml.safe_load(manifest_path.read_text(encoding="utf-8")) or {}
        if manifest_path.is_file()
        else {}
    )
    manifest.setdefault("batches", {})[batch["id"]] = {
        "file": out.name,
        "rows": len(rows),
        "corrected": sum(r["status"] == "corrected" for r in rows),
        "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        "exported_at": exported_at,
        "batch_kind": batch["kind"],
        "period": [batch["since"], batch["until"]],
        "held_back": dict(held),
    }
    write_atomic(
        manifest_path,
        lambda p: p.write_text(
            "# Written by `triage audit-export`: one entry per exported audit batch.\n"
            + yaml.safe_dump(manifest, sort_keys=True, allow_unicode=True),
            encoding="utf-8",
        ),
    )
    versioned = bool(rows) and bool(ecfg.dvc_add) and dvc_add(out, Path(cfg.paths.root))
    log.info(
        "batch %s: %d rows (%d corrected) to %s%s; held back %s",
        batch["id"],
        len(rows),
        manifest["batches"][batch["id"]]["corrected"],
        out,
        " (dvc add: commit the .dvc file)" if versioned else "",
        dict(held) or "nothing",
    )
    print(f"{out}: {len(rows)} rows; held back {dict(held) or 'nothing'}")
    return out
