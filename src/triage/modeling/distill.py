"""Knowledge distillation (issue 18): a smaller student learns from a trained teacher's
temperature-softened probabilities, on the labelled train texts and on unlabelled texts.

The teacher's logits are computed once, before training (a forward pass of the 12-layer model
over a few thousand texts), and travel with each batch; the loss per head is Hinton et al.'s
``T^2 * KL(teacher_T || student_T)``, averaged over the batch's rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from triage.errors import ConfigError
from triage.modeling.model import load_checkpoint, predict_outputs


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


def check_teacher(path: str | Path, teacher: dict, labels: dict) -> None:
    """Raise :class:`ConfigError` unless the teacher has the student's heads and label order."""
    if teacher != labels:
        raise ConfigError(
            f"train.distill.teacher={path} has labels {teacher}, the data {labels}: "
            "distil from a teacher trained on the same taxonomy"
        )


def teacher_logits(
    path: str | Path, labels: dict[str, list[str]], texts: Sequence[str], batch_size: int
) -> dict[str, np.ndarray]:
    """The teacher checkpoint's logits per head on ``texts`` (its own prefix and length).

    Raises:
        ConfigError: the teacher's heads or label order differ from the student's data.
    """
    model, tokenizer, meta = load_checkpoint(Path(path))
    check_teacher(path, model.labels, labels)
    logits, _ = predict_outputs(
        model, tokenizer, texts, meta["input_prefix"], meta["max_length"], batch_size
    )
    return logits
