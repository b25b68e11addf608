"""Leakage-free splits and the prepared splits on disk."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from triage.errors import DataError
from triage.io import write_atomic, write_json
from triage.schema import MISSING_LABEL, SCHEMA, SPLITS
from triage.text import dedup_key


def hash_seed(text: str) -> int:
    """A stable seed from a string (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")


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
