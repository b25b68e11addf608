"""Knowledge distillation (issue 18): a smaller student learns from a trained teacher's
temperature-softened probabilities, on the labelled train texts and on unlabelled texts.

The teacher's logits are computed once, before training (a forward pass of the 12-layer model
over a few thousand texts), and travel with each batch; the loss per head is Hinton et al.'s
``T^2 * KL(teacher_T || student_T)``, averaged over the batch's rows.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from triage.data.sources import read_source
from triage.errors import ConfigError, DataError
from triage.modeling.model import load_checkpoint, predict_outputs
from triage.text import clean_text, dedup_key, mask_pii


def soft_target_loss(
    student: dict[str, torch.Tensor], teacher: dict[str, torch.Tensor], temperature: float
) -> torch.Tensor:
    """Sum over heads of ``T^2 * KL(softmax(teacher/T) || softmax(student/T))``, batch mean."""
    total = next(iter(student.values())).new_zeros(()).float()
    for head, logits in student.items():
        log_p = torch.log_softmax(logits.float() / temperature, dim=-1)
        log_q = torch.log_softmax(teacher[head].float() / temperature, dim=-1)
        kl = (log_q.exp() * (log_q - log_p)).sum(-1).mean()
        total = total + temperature**2 * kl
    return total


def teacher_logits(
    path: str | Path, labels: dict[str, list[str]], texts: Sequence[str], batch_size: int
) -> dict[str, np.ndarray]:
    """The teacher checkpoint's logits per head on ``texts`` (its own prefix and length).

    Raises:
        ConfigError: the teacher's heads or label order differ from the student's data.
    """
    model, tokenizer, meta = load_checkpoint(Path(path))
    if model.labels != labels:
        raise ConfigError(
            f"train.distill.teacher={path} has labels {model.labels}, the data {labels}: "
            "distil from a teacher trained on the same taxonomy"
        )
    logits, _ = predict_outputs(
        model, tokenizer, texts, meta["input_prefix"], meta["max_length"], batch_size
    )
    return logits


def unlabelled_texts(
    sources: dict[str, Any],
    exclude: Sequence[str],
    max_rows: int,
    seed: int,
    project_root: Path,
    public_root: Path,
    pii_mask: bool,
) -> list[str]:
    """Texts of ``sources`` (data source configs as dicts; labels ignored), cleaned like the
    train texts, without those whose dedup key is in ``exclude`` (every split's texts: nothing
    of val, calib or test leaks in), deduplicated, at most ``max_rows`` (a seeded sample).

    Raises:
        DataError: a source has no usable text.
    """
    seen = {dedup_key(t) for t in exclude}
    texts: list[str] = []
    for name, source in sources.items():
        rows = read_source(name, source, project_root, public_root) or []
        before = len(texts)
        for row in rows:
            if row.split == "test" or not isinstance(row.text, str):
                continue  # a public set's fixed test partition is never trained on
            text = clean_text(row.text)
            key = dedup_key(text)
            if text and key not in seen:
                seen.add(key)
                texts.append(mask_pii(text) if pii_mask else text)
        if len(texts) == before:
            raise DataError(f"train.distill.unlabelled.{name}: no text left to distil on")
    random.Random(seed).shuffle(texts)
    return texts[:max_rows]
