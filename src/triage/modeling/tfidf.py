"""The baseline a user would otherwise build: TF-IDF word and character n-grams with a linear
model per head (scikit-learn), saved in a checkpoint folder that calibrate and evaluate read like
the transformer's."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import joblib
import numpy as np

from triage.io import atomic_folder
from triage.schema import MISSING_LABEL
from triage.tracking import RUN_ID_FILE

KIND = "tfidf"
PIPELINES_FILE = "pipelines.joblib"


def make_pipeline(c: float, seed: int) -> Any:
    """Word 1-2-grams + character 2-5-grams within word boundaries (robust to typos and Dutch
    compounds), sublinear TF, into a multinomial logistic regression."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline as sk_pipeline
    from sklearn.pipeline import make_union

    features = make_union(
        TfidfVectorizer(
            analyzer="word", ngram_range=(1, 2), min_df=1, sublinear_tf=True, lowercase=True
        ),
        TfidfVectorizer(
            analyzer="char_wb", ngram_range=(2, 5), min_df=2, sublinear_tf=True, lowercase=True
        ),
    )
    return sk_pipeline(features, LogisticRegression(C=c, max_iter=2000, random_state=seed))


class TfidfModel:
    """One fitted pipeline per head; ``logits`` are log-probabilities (softmax gives back the
    model's probabilities, and temperature scaling works on them as on any logits)."""

    def __init__(self, labels: dict[str, list[str]], pipelines: dict[str, Any]):
        self.labels = labels
        self.pipelines = pipelines
        self.meta: dict[str, Any] = {}

    @classmethod
    def fit(
        cls,
        texts: Sequence[str],
        targets: dict[str, np.ndarray],
        labels: dict[str, list[str]],
        c: float,
        seed: int,
    ) -> TfidfModel:
        pipelines = {}
        for head, y in targets.items():
            known = y != MISSING_LABEL
            pipe = make_pipeline(c, seed)
            pipe.fit([t for t, k in zip(texts, known, strict=True) if k], y[known])
            pipelines[head] = pipe
        return cls(labels, pipelines)

    def logits(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        out = {}
        for head, pipe in self.pipelines.items():
            # classes never seen in training get no column from sklearn: give them -inf-ish
            full = np.full((len(texts), len(self.labels[head])), -30.0, dtype=np.float32)
            full[:, pipe.classes_] = np.log(np.clip(pipe.predict_proba(list(texts)), 1e-12, 1))
            out[head] = full
        return out

    def save(self, out_dir: Path, meta: dict[str, Any]) -> None:
        """Write the checkpoint folder atomically (pipelines, ``triage.json``, ``run_id``)."""
        with atomic_folder(out_dir) as tmp:
            joblib.dump(self.pipelines, tmp / PIPELINES_FILE)
            full = {**meta, "kind": KIND, "labels": self.labels}
            (tmp / "triage.json").write_text(
                json.dumps(full, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
            )
            if meta.get("run_id"):
                (tmp / RUN_ID_FILE).write_text(meta["run_id"] + "\n")

    @classmethod
    def load(cls, path: Path) -> TfidfModel:
        meta = json.loads((path / "triage.json").read_text(encoding="utf-8"))
        model = cls(meta["labels"], joblib.load(path / PIPELINES_FILE))
        model.meta = meta
        return model
