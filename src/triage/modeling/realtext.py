"""Extra evaluation sets: real text the model never trained on, scored beside the test split
(``evaluate.extra``). Each set is a data source (its reader and label map, as in
``configs/data``) read through the same cleaning and label mapping as training data; a head is
scored where the set has labels for it.

Per set and head (``extra/<set>/<head>/...``): ``n``, ``accuracy``, ``macro_f1``, ``ece``, and
for the answers given with confidence at least 0.9 and 0.7 their share (``share_at_0.9``) and
accuracy (``accuracy_at_0.9``): what a service that acts on confident answers can trust. And
the routing rules that use sentiment, re-checked on real text (:func:`negative_replies`): of the
truly negative messages, the share that the routing table would answer with a template
(``extra/<set>/routing/negative_auto_reply``), and the share it would without the negative rule
or without the novelty rule (:mod:`triage.novelty`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from triage.data.build import Report, build_records
from triage.data.sources import read_source
from triage.errors import ConfigError, DataError
from triage.modeling.metrics import ece, summary
from triage.routing import REVIEW, Action, RoutingTable, decide_head, route
from triage.schema import MISSING_LABEL

#: confidence levels at which the accuracy of the answers given is reported
CONFIDENCE_LEVELS = (0.9, 0.7)


def read_eval_set(
    name: str,
    sets: dict[str, Any],
    labels: dict[str, list[str]],
    project_root: Path,
    public_root: Path,
) -> pd.DataFrame:
    """The rows of evaluation set ``name`` (``text``, ``lang``, one column per head), labels
    mapped and cleaned as ``prepare`` does; rows whose label the model does not know are left
    out (the set's ``on_invalid``).

    Raises:
        ConfigError: ``name`` is not among ``sets`` (``evaluate.sets``).
        DataError: the set cannot be read, or has no usable rows.
    """
    if name not in sets:
        raise ConfigError(
            f"evaluate.extra names {name!r}, which evaluate.sets does not define; "
            f"defined: {', '.join(sets) or 'none'}"
        )
    source = sets[name]
    rows = read_source(name, source, project_root, public_root)
    records = build_records(name, rows or [], source, dict(labels), Report())
    if not records:
        raise DataError(f"evaluate.extra: set {name!r} has no usable rows")
    frame = pd.DataFrame.from_records(records)
    if frame["lang"].isna().any():
        raise DataError(f"evaluate.sets.{name}: set `lang` (the set's language)")
    return frame


def score_eval_set(
    probs: dict[str, np.ndarray],
    targets: dict[str, np.ndarray],
    labels: dict[str, list[str]],
    name: str,
    n_bins: int,
    far: np.ndarray | None = None,
) -> dict[str, float]:
    """The metrics of one set (keys ``extra/<name>/<head>/...``) for every head it labels.

    With ``far`` (which rows are far out by :mod:`triage.novelty`, sent to review whatever
    their confidence): ``extra/<name>/novelty/far_share``, and per head and confidence level
    the share and accuracy of the answers still given (``share_at_0.9_near``,
    ``accuracy_at_0.9_near``).
    """
    out: dict[str, float] = {}
    if far is not None:
        out[f"extra/{name}/novelty/far_share"] = float(far.mean())
    for head, names in labels.items():
        known = targets[head] != MISSING_LABEL
        if not known.any():
            continue
        p, y = probs[head][known], targets[head][known]
        pred, confidence = p.argmax(axis=1), p.max(axis=1)
        key = f"extra/{name}/{head}"
        headline = summary(y, pred, names)
        out[f"{key}/n"] = headline["n"]
        out[f"{key}/accuracy"] = headline["accuracy"]
        out[f"{key}/macro_f1"] = headline["macro_f1"]
        out[f"{key}/ece"] = ece(p, y, n_bins)
        for level in CONFIDENCE_LEVELS:
            given = confidence >= level
            variants = [("", given)]
            if far is not None:
                variants.append(("_near", given & ~far[known]))
            for suffix, answered in variants:
                out[f"{key}/share_at_{level}{suffix}"] = float(answered.mean())
                out[f"{key}/accuracy_at_{level}{suffix}"] = (
                    float((pred[answered] == y[answered]).mean()) if answered.any() else 0.0
                )
    return out


def negative_replies(
    probs: dict[str, np.ndarray],
    y_sentiment: np.ndarray,
    intent_thresholds: np.ndarray,
    labels: dict[str, list[str]],
    table: RoutingTable,
    margin: float,
    name: str,
    far: np.ndarray | None = None,
) -> dict[str, float]:
    """Of the messages whose true sentiment is the table's negative label, the share routed to
    an automatic template reply (``auto_reply``) by :func:`triage.routing.route`; the share
    without the negative rule (no sentiment given to it), and with ``far``, the share without
    the novelty rule (far-out rows decided like the others): what each rule saves on real text.

    Args:
        probs: calibrated probabilities of both heads.
        y_sentiment: true sentiment label ids (``MISSING_LABEL`` where missing).
        intent_thresholds: ``(n, k)`` intent thresholds per row (its language's).
        far: which rows are far out (never automatic); None = no novelty rule.
    """
    negative = labels["sentiment"].index(table.negative.label)
    rows = np.flatnonzero(y_sentiment == negative)
    if not len(rows):
        return {}
    far = np.zeros(len(y_sentiment), bool) if far is None else far
    replied = {"all": 0, "without_rule": 0, "without_novelty": 0}
    for i in rows:
        decided = decide_head(
            "intent",
            probs["intent"][i].tolist(),
            labels["intent"],
            dict(zip(labels["intent"], intent_thresholds[i].tolist(), strict=True)),
            margin,
        )
        sentiment = dict(zip(labels["sentiment"], probs["sentiment"][i].tolist(), strict=True))
        for variant, given, gated in (
            ("all", sentiment, far[i]),
            ("without_rule", None, far[i]),
            ("without_novelty", sentiment, False),
        ):
            routed = route(table, decided, given)
            replied[variant] += (
                not gated and routed.decision != REVIEW and routed.action is Action.auto_reply
            )
    key = f"extra/{name}/routing"
    return {
        f"{key}/negative_n": float(len(rows)),
        f"{key}/negative_auto_reply": replied["all"] / len(rows),
        f"{key}/negative_auto_reply_without_rule": replied["without_rule"] / len(rows),
        f"{key}/negative_auto_reply_without_novelty": replied["without_novelty"] / len(rows),
    }
