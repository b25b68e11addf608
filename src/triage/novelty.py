"""Novelty: how far a message lies from everything the model was trained on.

A model's confidence says little about text unlike its training data: on real restaurant
reviews and tweets the authored-data model answers 31-47% of messages with at least 0.9
confidence and is right about 57-65% of those. Novelty is measured
on the model's own sentence embedding (mean-pooled, unit length): one minus the cosine
similarity to the ``k``-th nearest training message (deep k-nearest-neighbour novelty, Sun et
al. 2022, "Out-of-distribution detection with deep nearest neighbors"). ``calibrate`` keeps the
training embeddings (the *bank*) and sets the threshold at a quantile of the calib rows'
novelty, so that share of ordinary messages is let through; a message at or above it is *far
out* and goes to review whatever its confidence. The runtime, ``calibrate`` and ``evaluate``
all score with :func:`novelty` (numpy only: the runtime imports no torch).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from triage.errors import MissingInputError

#: the bank's file beside calibration.json (``calibration.novelty.npy``)
BANK_SUFFIX = ".novelty.npy"
#: histogram edges for novelty (``/metrics`` buckets, the audit report's drift section):
#: 1 - cosine similarity runs from 0 to 2, ordinary messages mostly below 0.3
EDGES = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 2.0)
#: queries per matrix product: bounds memory to chunk x bank size floats
_CHUNK = 1024


def unit(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32; a zero row stays zero)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, np.float32(1e-12))


def novelty(embeddings: np.ndarray, bank: np.ndarray, k: int) -> np.ndarray:
    """One minus the cosine similarity of each embedding to its ``k``-th nearest bank row.

    Args:
        embeddings: ``(n, d)`` message embeddings (any length; scaled to unit length here).
        bank: ``(m, d)`` unit-length training embeddings (float16 or float32).
        k: which neighbour; clipped to the bank size.

    Returns:
        ``(n,)`` float32 in [0, 2]: 0 = as close as the ``k``-th training message can be.
    """
    if len(bank) == 0:
        raise ValueError("the novelty bank is empty")
    k = min(max(1, int(k)), len(bank))
    queries, reference = unit(embeddings), np.asarray(bank, dtype=np.float32)
    out = np.empty(len(queries), dtype=np.float32)
    for start in range(0, len(queries), _CHUNK):
        sims = queries[start : start + _CHUNK] @ reference.T
        # the k-th largest similarity: partition so that index m - k holds it
        kth = np.partition(sims, len(reference) - k, axis=1)[:, len(reference) - k]
        out[start : start + _CHUNK] = 1.0 - kth
    return np.clip(out, 0.0, 2.0)


def save_bank(path: Path, bank: np.ndarray) -> None:
    """Write a bank as ``.npy`` to ``path`` exactly (``np.save`` on a name would add a suffix)."""
    with Path(path).open("wb") as f:
        np.save(f, bank, allow_pickle=False)


def load_bank(path: Path) -> np.ndarray:
    """A bank file as float32 (stored as float16; widened once here, not on every call)."""
    return np.load(Path(path), allow_pickle=False).astype(np.float32)


@dataclass(frozen=True)
class NoveltySpec:
    """What decides "far out": the bank of training embeddings, ``k`` and the threshold."""

    bank: np.ndarray
    k: int
    threshold: float

    def score(self, embeddings: np.ndarray) -> np.ndarray:
        return novelty(embeddings, self.bank, self.k)

    def far(self, scores: np.ndarray | float) -> np.ndarray:
        """Which scores are at or above the threshold (sent to review); a bool for one score."""
        return np.asarray(scores) >= self.threshold

    @classmethod
    def load(cls, entry: dict[str, Any], folder: Path) -> NoveltySpec:
        """From a calibration's or manifest's ``novelty`` entry; its bank file is in ``folder``."""
        path = Path(folder) / entry["bank"]
        if not path.is_file():
            raise MissingInputError(
                f"{path} not found: the novelty bank belongs beside the calibration file that "
                "names it; copy both together or re-run `triage calibrate`"
            )
        bank = load_bank(path)
        return cls(bank=bank, k=int(entry["k"]), threshold=float(entry["threshold"]))
