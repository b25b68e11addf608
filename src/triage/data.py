"""The data layer: one record schema, readers for user files, label mapping, cleaning,
deduplication and leakage-free splits.

Every source (the authored set, a user's CSV/JSONL/Parquet file, a hub dataset, or one of the
public sets read by :mod:`triage.public`) yields raw rows; :func:`build_dataset` turns them into
records of the schema below, split into train/val/calib/test, with a report of what was kept and
what was dropped and why.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from triage.text import clean_text, dedup_key, detect_languages, mask_pii

SCHEMA = ("id", "text", "lang", "intent", "sentiment", "source", "channel", "created_at")
HEADS = ("intent", "sentiment")
SPLITS = ("train", "val", "calib", "test")
FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}


class DataError(ValueError):
    """Bad input data or a bad data config. The message names the file, row or key and says
    what to do."""


@dataclass
class RawRow:
    """A row as a source gives it, before cleaning and label mapping.

    Labels are the source's own names (a list where the source is multi-label); ``where`` says
    where the row came from (``file:line``) for error messages and the report.
    """

    text: Any
    where: str
    intent: Any = None
    sentiment: Any = None
    lang: str | None = None
    id: str | None = None
    channel: str | None = None
    created_at: str | None = None
    split: str | None = None  # a fixed split (an original benchmark test set); None: ours to draw


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
# Reading files


def check_utf8(path: Path) -> None:
    """Raise :class:`DataError` naming the line of the first byte that is not UTF-8."""
    raw = path.read_bytes()
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(
            f"{path}: not UTF-8 (line {line}, byte {exc.start}: {exc.reason}). "
            "Re-save the file as UTF-8 (for example: iconv -f cp1252 -t utf-8 in > out)."
        ) from None


def load_table(path: Path, fmt: str | None = None, **csv_options: Any) -> pd.DataFrame:
    """Read a CSV, JSONL or Parquet file with ``datasets`` into a DataFrame of strings.

    Args:
        path: the file.
        fmt: ``csv``, ``jsonl`` or ``parquet``; None infers it from the suffix.
        **csv_options: passed to the CSV reader (``sep``, ``column_names``, ``quoting``...).

    Raises:
        DataError: missing file, unknown format, not UTF-8, unparsable or empty.
    """
    import datasets

    if not path.is_file():
        raise DataError(
            f"{path}: file not found. Check the source's `path` (relative paths "
            "resolve against the project folder, or paths.public_data for public sets)."
        )
    fmt = fmt or FORMATS.get(path.suffix.lower())
    if fmt not in ("csv", "jsonl", "parquet"):
        raise DataError(
            f"{path}: unknown format; set the source's `format` to csv, jsonl or "
            "parquet, or use one of the suffixes " + ", ".join(FORMATS)
        )
    if fmt != "parquet":
        check_utf8(path)
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty")
    builder = {"csv": "csv", "jsonl": "json", "parquet": "parquet"}[fmt]
    datasets.disable_progress_bars()
    try:
        table = datasets.load_dataset(builder, data_files=str(path), split="train", **csv_options)
    except Exception as exc:  # datasets wraps pyarrow/pandas errors in many types
        raise DataError(f"{path}: cannot be read as {fmt}: {exc}") from exc
    frame = table.to_pandas()
    # ids and labels may be read as numbers; the schema is text
    return frame.astype(object).where(frame.notna(), None)


def read_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file, read with ``datasets``' text builder."""
    import datasets

    if not path.is_file():
        raise DataError(f"{path}: file not found")
    check_utf8(path)
    datasets.disable_progress_bars()
    return datasets.load_dataset("text", data_files=str(path), split="train")["text"]


def read_file_source(path: Path, fmt: str | None, columns: dict[str, str]) -> Iterator[RawRow]:
    """Rows of a user file (or of every data file in a folder) with columns mapped to the schema.

    Args:
        path: a file, or a folder whose ``*.csv``/``*.jsonl``/``*.parquet`` files are read in
            name order.
        fmt: the format, or None to infer it per file from the suffix.
        columns: schema field -> the file's column name; fields not named use their own name.
    """
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in FORMATS)
        if not files:
            raise DataError(f"{path}: folder has no {', '.join(FORMATS)} files")
    else:
        files = [path]
    unknown = set(columns) - set(SCHEMA)
    if unknown:
        raise DataError(
            f"columns maps unknown schema fields {sorted(unknown)}; the fields are {list(SCHEMA)}"
        )
    for file in files:
        frame = load_table(file, fmt)
        names = {name: columns.get(name, name) for name in SCHEMA}
        if names["text"] not in frame.columns:
            raise DataError(
                f"{file}: no text column {names['text']!r}; the file has columns "
                f"{list(frame.columns)}. Map it with the source's `columns: {{text: <column>}}`."
            )
        for name in set(columns) - {"text"}:
            if columns[name] not in frame.columns:
                raise DataError(
                    f"{file}: column {columns[name]!r} (mapped to {name}) not found; "
                    f"the file has columns {list(frame.columns)}"
                )
        present = {name: col for name, col in names.items() if col in frame.columns}
        # line numbers: CSV has a header line, JSONL does not, Parquet has rows
        offset = {"csv": 2, "jsonl": 1}.get(fmt or FORMATS.get(file.suffix.lower(), ""), 0)
        label = "line" if offset else "row"
        for i, row in enumerate(frame[list(present.values())].itertuples(index=False)):
            values = dict(zip(present, row, strict=True))
            yield RawRow(
                text=values["text"],
                where=f"{file}:{label} {i + offset}",
                intent=values.get("intent"),
                sentiment=values.get("sentiment"),
                lang=_opt_str(values.get("lang")),
                id=_opt_str(values.get("id")),
                channel=_opt_str(values.get("channel")),
                created_at=_opt_str(values.get("created_at")),
            )


def has_data_files(path: Path) -> bool:
    """Whether ``path`` is a data file, or a folder with at least one (by suffix)."""
    if path.is_dir():
        return any(p.suffix.lower() in FORMATS for p in path.iterdir())
    return path.is_file()


def read_hub_source(
    name: str, options: dict[str, Any], columns: dict[str, str]
) -> Iterator[RawRow]:
    """Rows of a Hugging Face hub dataset (needs internet). ``options``: ``config``, ``split``."""
    import datasets

    split = options.get("split", "train")
    try:
        table = datasets.load_dataset(name, options.get("config"), split=split)
    except Exception as exc:
        raise DataError(
            f"hub dataset {name!r} cannot be loaded ({exc}). Hub datasets need "
            "internet; offline, export it to a local file and use kind: file."
        ) from exc
    text_col = columns.get("text", "text")
    if text_col not in table.column_names:
        raise DataError(
            f"hub dataset {name!r}: no text column {text_col!r}; it has "
            f"{table.column_names}. Map it with `columns: {{text: <column>}}`."
        )
    for i, row in enumerate(table):
        values = {f: row.get(columns.get(f, f)) for f in SCHEMA}
        yield RawRow(
            text=row[text_col],
            where=f"{name}[{split}]:{i}",
            intent=values["intent"],
            sentiment=values["sentiment"],
            lang=_opt_str(values["lang"]),
            id=_opt_str(values["id"]),
        )


def _opt_str(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


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
    value = _opt_str(raw)
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


def hash_seed(text: str) -> int:
    """A stable seed from a string (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")


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


def assign_splits(frame: pd.DataFrame, shares: dict[str, float], seed: int) -> pd.Series:
    """Draw train/val/calib/test for rows without a fixed split, stratified by language and label.

    Within each stratum (source + language + intent, or + sentiment for rows with no intent) rows
    are shuffled and cut by the shares, the remainder going by largest fraction, so a stratum of
    10 rows at 0.7/0.1/0.1/0.1 gives exactly 7/1/1/1 and a stratum of 1 goes to train. Each
    stratum draws from its own generator, seeded by the seed and the stratum's name: a source's
    rows land in the same splits whatever other sources are added (the authored test split is the
    same under data=authored and data=social, so the two can be compared on it).
    """
    total = sum(shares.values())
    if total <= 0 or any(v < 0 for v in shares.values()):
        raise DataError(f"data.split shares must be >= 0 and not all 0, got {shares}")
    fractions = np.array([shares[s] / total for s in SPLITS])
    split = frame["split"].copy()
    free = split.isna()
    strata = (
        frame["source"].astype(str)
        + "|"
        + frame["lang"].astype(str)
        + "|"
        + frame["intent"].fillna("").astype(str)
        + "|"
        + np.where(frame["intent"].isna(), frame["sentiment"].fillna("").astype(str), "")
    )
    for key in sorted(strata[free].unique()):
        index = frame.index[free & (strata == key)].to_numpy()
        rng = np.random.default_rng([seed, hash_seed(key)])
        index = index[rng.permutation(len(index))]
        exact = fractions * len(index)
        counts = np.floor(exact).astype(int)
        # largest remainder; ties go to the earlier split (train first)
        order = sorted(range(len(SPLITS)), key=lambda k: (-(exact[k] - counts[k]), k))
        for k in order[: len(index) - counts.sum()]:
            counts[k] += 1
        start = 0
        for name, count in zip(SPLITS, counts, strict=True):
            split.loc[index[start : start + count]] = name
            start += count
    return split


def check_no_leakage(frame: pd.DataFrame) -> None:
    """Raise :class:`DataError` if any normalised text appears in more than one split."""
    keys = frame["text"].map(dedup_key)
    per_key = frame.groupby(keys)["split"].nunique()
    shared = per_key[per_key > 1]
    if len(shared):
        raise DataError(
            f"{len(shared)} texts appear in more than one split, e.g. {list(shared.index[:3])}"
        )


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
    from triage.public import read_public_source

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
        kind = source["kind"]
        if kind == "file":
            path = _resolve(source["path"], project_root)
            if source.get("optional") and not has_data_files(path):
                continue  # nothing yet (the report stays as without the source)
            rows = read_file_source(path, source["format"], source["columns"])
        elif kind == "hub":
            rows = read_hub_source(source["path"], source["options"], source["columns"])
        else:
            path = _resolve(source["path"], public_root)
            if not path.exists():
                raise DataError(
                    f"data.sources.{name}: {path} not found. Public data is read from "
                    f"paths.public_data ({public_root}); set TRIAGE_DATA_ROOT to the folder that "
                    "holds the public datasets, or use data=authored."
                )
            rows = read_public_source(kind, path, source["options"])
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


def _resolve(path: str, root: Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else root / p


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
    """Keep one row per normalised text: fixed-split rows (benchmark tests) win, then the first
    in source order. Later copies are dropped and counted (with label conflicts separately)."""
    keys = frame["text"].map(dedup_key)
    order = np.lexsort((np.arange(len(frame)), frame["split"].isna().to_numpy()))
    first = ~keys.iloc[order].duplicated()
    keep = pd.Series(False, index=frame.index)
    keep.iloc[order[first.to_numpy()]] = True
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


# --------------------------------------------------------------------------------------------
# Writing and reading prepared data

MISSING_LABEL = -100  # label id of a missing label (PyTorch's cross-entropy ignore_index)


def label_ids(frame: pd.DataFrame, labels: dict[str, list[str]]) -> dict[str, np.ndarray]:
    """Per head, the label index of each row, or ``MISSING_LABEL`` where the label is missing."""
    out = {}
    for head, names in labels.items():
        index = {name: i for i, name in enumerate(names)}
        out[head] = np.array(
            [
                index.get(v, MISSING_LABEL) if isinstance(v, str) else MISSING_LABEL
                for v in frame[head]
            ],
            dtype=np.int64,
        )
    return out


def write_atomic(path: Path, write: Any) -> None:
    """Write a file through ``write(tmp_path)`` into a temporary sibling, then rename it into
    place: a crash leaves the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_folder(out_dir: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``out_dir`` to fill; when the block ends without error it
    replaces ``out_dir`` (the old one is removed), otherwise it is deleted. Readers see the old
    folder or the new one, never half of one."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        yield tmp
        tmp.chmod(0o755)  # mkdtemp makes it private
        old = None
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
            out_dir.replace(old / out_dir.name)
        tmp.replace(out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_json(path: Path, obj: Any) -> None:
    write_atomic(
        path,
        lambda p: p.write_text(
            json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        ),
    )


def save_splits(frame: pd.DataFrame, labels: dict[str, list[str]], out_dir: Path) -> None:
    """Write ``{split}.parquet`` per split and ``labels.json`` into ``out_dir``."""
    import datasets

    for split in SPLITS:
        part = frame.loc[frame["split"] == split, list(SCHEMA)].reset_index(drop=True)
        table = datasets.Dataset.from_pandas(part, preserve_index=False)
        write_atomic(out_dir / f"{split}.parquet", lambda p, t=table: t.to_parquet(str(p)))
    write_json(out_dir / "labels.json", labels)


def load_split(out_dir: Path, split: str) -> pd.DataFrame:
    """Read one prepared split back (schema columns)."""
    path = Path(out_dir) / f"{split}.parquet"
    if not path.is_file():
        raise DataError(f"{path} not found: run `triage prepare` (with the same data=...) first")
    return pd.read_parquet(path)


def load_labels(out_dir: Path) -> dict[str, list[str]]:
    """The label order per head that `prepare` wrote (``labels.json``)."""
    path = Path(out_dir) / "labels.json"
    if not path.is_file():
        raise DataError(f"{path} not found: run `triage prepare` (with the same data=...) first")
    return json.loads(path.read_text(encoding="utf-8"))
