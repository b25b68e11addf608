"""The prediction record: what the model says of one message and what was done with it.

One dataclass for the runtime's answer, the service's response, the prediction log, the file
classifier's output and the audit store's items; each of those derives its fields from here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass
class Prediction:
    """What the runtime says about one message (the fields of the serving contract), in the
    order the prediction log stores them."""

    intent: str
    intent_prob: float
    intent_threshold: float | None
    intent_probs: dict[str, float]
    sentiment: str | None
    sentiment_prob: float | None
    sentiment_threshold: float | None
    sentiment_probs: dict[str, float] | None
    decision: str  # "auto" | "review"
    action: str
    priority: str
    reason: str
    novelty: float | None  # distance to the training data (triage.novelty); None: not measured
    lang: str
    model_version: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: what the model said of a message and what was done (also kept with each audit item); the
#: message's language and the model version are stored beside them as message fields
PREDICTION_FIELDS: tuple[str, ...] = tuple(
    f.name for f in fields(Prediction) if f.name not in ("lang", "model_version")
)
