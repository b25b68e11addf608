"""Building the dataset: label mapping, cleaning, deduplication, then leakage-free splits.

Every source (the authored set, a user's CSV/JSONL/Parquet file, a hub dataset, or one of the
public sets read by :mod:`triage.data.public`) yields raw rows; :func:`build_dataset` turns
them into records of :data:`triage.schema.SCHEMA`, split into train/val/calib/test, with a
report of what was kept and what was dropped and why.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from triage.data.readers import (
    RawRow,
    opt_str,
)
from triage.data.sources import read_source
from triage.data.splits import assign_splits, check_no_leakage, hash_seed
from triage.errors import DataError
from triage.schema import HEADS, SCHEMA, SPLITS
from triage.text import clean_text, dedup_key, detect_languages, mask_pii


@dataclass
class Report:
    """What happened to the rows: counted per source, with dropped rows by reason."""

    read: Counter = field(default_factory=Counter)
    dropped: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    detected_lang: Counter = field(default_factory=Counter)

    def drop(self, source: str, reason: str, where: str) -> None:
        self.dropped[source][reason] += 1
        if len(self.examples[reason]) < 5:
            self.examples[reason].append(where)


# --------------------------------------------------------------------------------------------
# Labels


def check_label_maps(heads: dict[str, list[str] | None], sources: dict[str, Any]) -> None:
    """Fail early when a label map targets a label that the head does not have."""
    for name, source in sources.items():
        for head in HEADS:
            mapping = source.get(f"{head}_map")
            if not mapping:
                continue
            if head not in heads:
                raise DataError(
                    f"data.sources.{name}.{head}_map is set, but the data config has "
                    f"no {head!r} head (heads: {sorted(heads)})"
                )
            labels = heads[head]
            for raw, target in mapping.items():
                if target is not None and labels is not None and target not in labels:
                    raise DataError(
                        f"data.sources.{name}.{head}_map maps {raw!r} to {target!r}, which is not "
                        f"a {head} label. Labels: {labels}. Fix the map or add the label to "
                        f"data.heads.{head}.labels."
                    )


def map_label(raw: Any, mapping: dict[str, str | None] | None) -> tuple[str | None, str | None]:
    """Map a source label (or a list of them, for multi-label sources) into the head's labels.

    Returns:
        ``(label, problem)``: the mapped label or None (unlabelled), and a description of the
        problem when the raw label is not in the map. A list maps to its one mapped label when
        all mapped values agree, else to None.
    """
    if isinstance(raw, (list, tuple)):
        results = [map_label(item, mapping) for item in raw]
        problems = [p for _, p in results if p]
        if problems:
            return None, problems[0]
        labels = {label for label, _ in results if label is not None}
        return (labels.pop() if len(labels) == 1 else None), None
    value = opt_str(raw)
    if value is None:
        return None, None
    if mapping is None:
        return value, None
    if value not in mapping:
        return None, f"label {value!r} is not in the map"
    return mapping[value], None


# --------------------------------------------------------------------------------------------
# Building the dataset


def build_records(
    source_name: str,
    rows: Iterable[RawRow],
    source: dict[str, Any],
    heads: dict[str, list[str] | None],
    report: Report,
) -> list[dict[str, Any]]:
    """Clean, validate and label-map one source's rows into schema records.

    Bad rows raise :class:`DataError` (``on_invalid: error``) or are dropped and counted in the
    report (``on_invalid: drop``).
    """
    strict = source["on_invalid"] == "error"
    keep_unlabelled = bool(source["options"].get("keep_unlabelled", False))
    records = []

    def bad(reason: str, detail: str, where: str) -> None:
        if strict:
            raise DataError(f"{where}: {detail}")
        report.drop(source_name, reason, where)

    for i, row in enumerate(rows):
        report.read[source_name] += 1
        if not isinstance(row.text, str):
            bad(
                "text is not a string",
                f"text must be a string, got {row.text!r}. Fix the row or drop it.",
                row.where,
            )
            continue
        text = clean_text(row.text)
        if not text:
            bad(
                "empty text",
                "empty or whitespace-only text. Remove the row or write the message.",
                row.where,
            )
            continue
        record = {
            "id": row.id or f"{source_name}-{i}",
            "text": text,
            "lang": row.lang or source["lang"],
            "source": source_name,
            "channel": row.channel,
            "created_at": row.created_at,
            "pair_id": row.pair_id,
            "split": row.split,
        }
        ok = True
        for head in HEADS:
            raw = getattr(row, head)
            label, problem = map_label(raw, source.get(f"{head}_map"))
            if problem:
                bad(
                    f"unmapped {head} label",
                    f"{head} {problem} of data.sources.{source_name}.{head}_map; add it there "
                    "(null to leave it unlabelled) or fix the row.",
                    row.where,
                )
                ok = False
                break
            if label is not None and head not in heads:
                label = None  # the data config has no such head (benchmarks: intent only)
            labels = heads.get(head)
            if label is not None and labels is not None and label not in labels:
                bad(
                    f"unknown {head} label",
                    f"unknown {head} label {label!r}; known labels: {labels}. Fix the row, or "
                    f"map the name with data.sources.{source_name}.{head}_map.",
                    row.where,
                )
                ok = False
                break
            record[head] = label
        if not ok:
            continue
        if record["intent"] is None and record["sentiment"] is None and not keep_unlabelled:
            report.drop(source_name, "no label for any head", row.where)
            continue
        records.append(record)
    cap = source.get("max_per_label")
    if cap:
        records = _cap_per_label(records, cap, seed=hash_seed(source_name), report=report)
    return records


def _cap_per_label(records: list[dict], cap: int, seed: int, report: Report) -> list[dict]:
    groups: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        groups[f"{r['intent']}|{r['sentiment']}"].append(i)
    rng = np.random.default_rng(seed)
    keep: set[int] = set()
    for idx in groups.values():
        chosen = idx if len(idx) <= cap else rng.choice(idx, size=cap, replace=False).tolist()
        keep.update(chosen)
    for i, r in enumerate(records):
        if i not in keep:
            report.dropped[r["source"]]["over max_per_label"] += 1
    return [r for i, r in enumerate(records) if i in keep]


def build_dataset(
    data_cfg: dict[str, Any], project_root: Path, public_root: Path
) -> tuple[pd.DataFrame, dict[str, list[str]], dict]:
    """Read every configured source and return ``(records, labels, report)``.

    Args:
        data_cfg: the ``data`` config as plain dicts (enums as strings).
        project_root: resolves relative paths of ``file`` sources.
        public_root: resolves relative paths of the public-set adapters.

    Returns:
        A DataFrame with the schema columns plus ``split``; the label list of each head; the
        data report as a dict.
    """

    heads = {name: head["labels"] for name, head in data_cfg["heads"].items()}
    unknown_heads = set(heads) - set(HEADS)
    if unknown_heads:
        raise DataError(f"data.heads has unknown heads {sorted(unknown_heads)}; heads are {HEADS}")
    if not data_cfg["sources"]:
        raise DataError("data.sources is empty: configure at least one source")
    check_label_maps(heads, data_cfg["sources"])
    report = Report()
    records: list[dict[str, Any]] = []
    for name, source in data_cfg["sources"].items():
        rows = read_source(name, source, project_root, public_root)
        if rows is None:
            continue
        records.extend(build_records(name, rows, source, heads, report))
    if not records:
        raise DataError("no usable rows in any source; see the messages above")

    frame = pd.DataFrame.from_records(records, columns=[*SCHEMA, "split"])
    _check_unique_ids(frame, data_cfg["sources"])
    if data_cfg["pii_mask"]:
        frame["text"] = frame["text"].map(mask_pii)
    _fill_languages(frame, data_cfg["languages"], report)
    frame = _deduplicate(frame, report)
    frame["split"] = assign_splits(frame, data_cfg["split"], data_cfg["seed"])
    check_no_leakage(frame)

    labels = {}
    for head, fixed in heads.items():
        found = sorted(frame[head].dropna().unique())
        labels[head] = list(fixed) if fixed is not None else found
    return frame, labels, make_report(frame, labels, report, data_cfg)


def _check_unique_ids(frame: pd.DataFrame, sources: dict[str, Any]) -> None:
    dup = frame["id"].duplicated(keep=False)
    if dup.any():
        ids = sorted(frame.loc[dup, "id"].unique())
        raise DataError(
            f"ids must be unique, but {len(ids)} repeat (e.g. {ids[:3]}) in sources "
            f"{sorted(frame.loc[dup, 'source'].unique())}. Give every row its own id."
        )


def _fill_languages(frame: pd.DataFrame, languages: list[str], report: Report) -> None:
    missing = frame["lang"].isna()
    if missing.any():
        detected = detect_languages(frame.loc[missing, "text"].tolist(), languages)
        frame.loc[missing, "lang"] = detected
        report.detected_lang.update(detected)


def _deduplicate(frame: pd.DataFrame, report: Report) -> pd.DataFrame:
    """Keep one row per normalised text: a fixed test split's rows (benchmark tests) win, then
    other fixed-split rows, then the first in source order. Later copies are dropped and counted
    (with label conflicts separately), except that a fixed test split is kept whole, repeats
    included, as published (its numbers then compare with published ones)."""
    keys = frame["text"].map(dedup_key)
    fixed_test = (frame["split"] == "test").to_numpy()
    rank = np.where(fixed_test, 0, np.where(frame["split"].isna(), 2, 1))
    order = np.lexsort((np.arange(len(frame)), rank))
    first = ~keys.iloc[order].duplicated()
    keep = pd.Series(False, index=frame.index)
    keep.iloc[order[first.to_numpy()]] = True
    keep |= fixed_test
    winner = {k: i for i, k in zip(frame.index[keep], keys[keep], strict=True)}
    for i in frame.index[~keep]:
        w = winner[keys[i]]
        same = all(frame.at[i, h] == frame.at[w, h] or pd.isna(frame.at[i, h]) for h in HEADS)
        reason = "duplicate text" if same else "duplicate text with other labels"
        report.drop(
            frame.at[i, "source"], reason, f"{frame.at[i, 'id']} (kept {frame.at[w, 'id']})"
        )
    return frame[keep].reset_index(drop=True)


def make_report(
    frame: pd.DataFrame, labels: dict[str, list[str]], report: Report, data_cfg: dict[str, Any]
) -> dict[str, Any]:
    """Counts per source, language, label and split; dropped rows by reason; warnings."""

    def crosstab(col: str) -> dict[str, dict[str, int]]:
        table = pd.crosstab(frame[col].fillna("(missing)"), frame["split"])
        return {str(k): {s: int(v) for s, v in row.items() if v} for k, row in table.iterrows()}

    warnings = []
    for split in SPLITS:
        present = set(frame.loc[frame["split"] == split, "lang"])
        missing = [lang for lang in data_cfg["languages"] if lang not in present]
        if (frame["split"] == split).any() and missing:
            warnings.append(f"split {split} has no rows in {missing}")
    for head, names in labels.items():
        train = set(frame.loc[frame["split"] == "train", head].dropna())
        absent = [n for n in names if n not in train]
        if absent:
            warnings.append(f"{head} labels with no train rows: {absent}")
    return {
        "data": data_cfg["name"],
        "rows": len(frame),
        "splits": {s: int((frame["split"] == s).sum()) for s in SPLITS},
        "read_per_source": dict(report.read),
        "kept_per_source": crosstab("source"),
        "languages": crosstab("lang"),
        "languages_detected": dict(report.detected_lang),
        "labels": {head: crosstab(head) for head in labels},
        "dropped": {src: dict(c) for src, c in report.dropped.items()},
        "dropped_examples": dict(report.examples),
        "warnings": warnings,
    }
