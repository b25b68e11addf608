"""``triage audit-sample``: draw this week's audit batch from the prediction log.

Reads the prediction log (``audit.prediction_log``, the file the service writes) for a period and
writes one batch of items into the audit database (``audit.db_url``).

The design (documented in docs/audit.md, reproducible from ``audit.sample.seed`` and the log):

* The population is every message logged in the period (one record per ``message_id``: the
  latest, if the service logged an id twice), ``N`` of them.
* A **control slice**: a simple random sample of ``n_c`` of all ``N`` messages, at least
  ``audit.sample.control_share`` of the batch (20% or more). On its own it estimates any rate of
  the population without bias.
* **Targeted strata**, each a share of the batch (``audit.sample.strata``, in priority order):
  ``automated`` (decided automatically; split equally over the actions seen, one stratum per
  action), ``near_threshold`` (intent probability within ``near_band`` of its class
  threshold), ``low_confidence`` (intent probability below ``low_confidence_below``),
  ``negative`` (negative sentiment), ``rare_class`` (predicted intents that make up less than
  ``rare_share`` of the period). A message that matches several strata belongs to the first in
  that order; messages that match none form the stratum ``rest``, sampled by the control slice
  only. Each stratum ``h`` (``N_h`` messages) gets a simple random sample of ``n_h``, drawn
  independently of the control slice.
* A message drawn by both is reviewed once. Its inclusion probability is exact:
  ``pi = 1 - (1 - n_c / N) * (1 - n_h / N_h)`` (``n_c / N`` in ``rest``), stored per item; the
  report weighs each reviewed message by ``1 / pi`` (Horvitz-Thompson). Because of such
  overlaps a batch can hold a few items less than ``audit.sample.size``.
* Allocation: shares times the batch size by largest remainder; a stratum smaller than its
  allocation is taken whole and the rest of its allocation goes to the control slice.
* ``audit.sample.dual_share`` of the items (a random subset) need two reviewers, to measure
  agreement. The queue order is shuffled so that reviewers cannot tell a stratum by position.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from triage.audit.store import AuditDB, AuditError
from triage.config import AuditSampleConfig, Config, to_container
from triage.errors import ConfigError
from triage.schema import HEADS
from triage.serving.predlog import parse_time
from triage.serving.shared import open_prediction_log

log = logging.getLogger(__name__)

STRATA = ("automated", "near_threshold", "low_confidence", "negative", "rare_class")
CONTROL, REST = "control", "rest"
MIN_CONTROL_SHARE = 0.2


def period(
    since: str | None, until: str | None, days: int, now: datetime | None = None
) -> tuple[datetime, datetime]:
    """The half-open period ``[since, until)`` from config values.

    Both None: the ``days`` days before now. One given: the other is ``days`` away from it.
    Dates (``2026-11-16``) mean midnight UTC.
    """
    if since is not None and until is not None:
        start, end = parse_time(since), parse_time(until)
    elif since is not None:
        start = parse_time(since)
        end = start + timedelta(days=days)
    else:
        end = parse_time(until) if until is not None else (now or datetime.now(UTC))
        start = end - timedelta(days=days)
    if start >= end:
        raise ConfigError(f"audit.sample: since {start} is not before until {end}")
    return start, end


def latest_per_message(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per ``message_id`` (the last one logged), in log order."""
    last = {r["message_id"]: i for i, r in enumerate(records)}
    return [records[i] for i in sorted(last.values())]


def assign_strata(records: Sequence[dict[str, Any]], scfg: AuditSampleConfig) -> list[str]:
    """The one stratum of each record: the first of ``scfg.strata`` it matches, else ``rest``.

    Args:
        records: prediction-log records.
        scfg: ``audit.sample`` (``strata``, ``near_band``, ``low_confidence_below``,
            ``negative_label``, ``rare_share``).
    """
    order = list(scfg.strata)
    unknown = [name for name in order if name not in STRATA]
    if unknown:
        raise ConfigError(f"audit.sample.strata: unknown strata {unknown}; known: {list(STRATA)}")
    # plain values once, outside the loop
    band, low = float(scfg.near_band), float(scfg.low_confidence_below)
    negative = scfg.negative_label
    counts = Counter(r["intent"] for r in records)
    rare = {label for label, c in counts.items() if c < scfg.rare_share * len(records)}

    def matches(name: str, r: dict[str, Any]) -> str | None:
        p, t = r.get("intent_prob"), r.get("intent_threshold")
        if name == "automated" and r.get("decision") == "auto":
            return f"automated:{r.get('action')}"
        if name == "near_threshold" and p is not None and t is not None and abs(p - t) <= band:
            return name
        if name == "low_confidence" and p is not None and p < low:
            return name
        if name == "negative" and r.get("sentiment") == negative:
            return name
        if name == "rare_class" and r.get("intent") in rare:
            return name
        return None

    out = []
    for r in records:
        out.append(next((s for s in (matches(n, r) for n in order) if s), REST))
    return out


def largest_remainder(total: int, shares: dict[str, float]) -> dict[str, int]:
    """Split ``total`` by ``shares`` (summing to 1) into integers that sum to ``total``; ties of
    the remainder go to the earlier key."""
    exact = {k: total * v for k, v in shares.items()}
    counts = {k: math.floor(v) for k, v in exact.items()}
    order = sorted(shares, key=lambda k: -(exact[k] - counts[k]))
    for k in order[: total - sum(counts.values())]:
        counts[k] += 1
    return counts


def allocate(
    size: int, control_share: float, shares: dict[str, float], stratum_sizes: dict[str, int]
) -> tuple[int, dict[str, int]]:
    """How many to draw for the control slice and for each targeted stratum.

    Args:
        size: the batch size.
        control_share: the control slice's least share of the batch (>= 0.2).
        shares: per configured stratum name, its share (``automated`` is split equally over
            the ``automated:<action>`` strata present).
        stratum_sizes: messages per stratum in the period (``N_h``), including ``rest``.

    Returns:
        ``(n_control, {stratum: n_h})``; strata with no messages are left out, and what a
        stratum cannot use goes to the control slice (which is at most ``N``).
    """
    if control_share < MIN_CONTROL_SHARE:
        raise ConfigError(
            f"audit.sample.control_share={control_share}: the control slice must be at least "
            f"{MIN_CONTROL_SHARE:.0%} of the batch (it is what makes the estimates unbiased)"
        )
    if any(v < 0 for v in shares.values()) or control_share + sum(shares.values()) > 1 + 1e-9:
        raise ConfigError(
            f"audit.sample: control_share {control_share} plus the strata shares "
            f"{dict(shares)} exceed 1; lower some shares"
        )
    parts: dict[str, float] = {CONTROL: 1.0 - sum(shares.values())}
    for name, share in shares.items():
        if name == "automated":
            actions = sorted(s for s in stratum_sizes if s.startswith("automated:"))
            for action in actions:
                parts[action] = share / len(actions)
            if not actions:
                parts[CONTROL] += share
        elif stratum_sizes.get(name):
            parts[name] = share
        else:
            parts[CONTROL] += share
    counts = largest_remainder(size, parts)
    floor = math.ceil(control_share * size - 1e-9)
    while counts[CONTROL] < floor:  # rounding took one too many for the strata
        largest = max((k for k in counts if k != CONTROL), key=counts.__getitem__)
        counts[largest] -= 1
        counts[CONTROL] += 1
    n_control = counts.pop(CONTROL)
    targeted = {}
    for name, n in counts.items():
        capped = min(n, stratum_sizes.get(name, 0))
        targeted[name] = capped
        n_control += n - capped
    population = sum(stratum_sizes.values())
    return min(n_control, population), {k: v for k, v in targeted.items() if v > 0}


def draw(
    records: Sequence[dict[str, Any]], scfg: AuditSampleConfig, seed: int
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Draw a batch from the period's records (see the module docstring).

    Args:
        records: one record per message, in log order.
        scfg: ``audit.sample``.
        seed: the generator's seed.

    Returns:
        ``(items, design)``: items in queue order, each a log record plus ``stratum``,
        ``in_control``, ``inclusion_prob`` and ``reviews_required``; the design (sizes,
        draws and probabilities per stratum, the seed, the settings) for the batch.
    """
    n = len(records)
    if n == 0:
        raise AuditError("no predictions to sample from")
    strata = np.array(assign_strata(records, scfg), dtype=object)
    sizes = dict(sorted(Counter(strata.tolist()).items()))
    n_control, targeted = allocate(
        int(scfg.size), float(scfg.control_share), dict(scfg.strata), sizes
    )
    rng = np.random.default_rng(seed)
    control = set(rng.choice(n, size=n_control, replace=False).tolist())
    chosen = set(control)
    for name in sorted(targeted):
        members = np.flatnonzero(strata == name)
        chosen.update(rng.choice(members, size=targeted[name], replace=False).tolist())
    p_control = n_control / n
    p_stratum = {name: targeted.get(name, 0) / sizes[name] for name in sizes}
    picked = sorted(chosen)
    dual = set(
        rng.choice(len(picked), size=round(scfg.dual_share * len(picked)), replace=False).tolist()
    )
    order = rng.permutation(len(picked))
    rows = []
    for k in order:
        i = picked[k]
        stratum = str(strata[i])
        rows.append(
            {
                **records[i],
                "stratum": stratum,
                "in_control": i in control,
                "inclusion_prob": 1.0 - (1.0 - p_control) * (1.0 - p_stratum[stratum]),
                "reviews_required": 2 if k in dual else 1,
            }
        )
    design = {
        "population": n,
        "seed": seed,
        "control": {"n": n_control, "inclusion_prob": p_control},
        "strata": {
            name: {
                "N": size,
                "n": targeted.get(name, 0),
                "inclusion_prob": 1.0 - (1.0 - p_control) * (1.0 - p_stratum[name]),
            }
            for name, size in sizes.items()
        },
        "priority": list(scfg.strata),
        "items": len(rows),
        "dual_review": len(dual),
        "settings": to_container(scfg),
    }
    return rows, design


def head_labels(records: Sequence[dict[str, Any]], fallback: dict[str, Any]) -> dict[str, list]:
    """The labels reviewers choose from, per head: those of the logged probabilities (newest
    model first, then any others seen), else the data config's."""
    out: dict[str, list[str]] = {}
    for head in HEADS:
        seen: dict[str, None] = {}
        for r in reversed(records):
            for label in r.get(f"{head}_probs") or {}:
                seen.setdefault(label, None)
        configured = (fallback.get(head) or {}).get("labels") or []
        out[head] = list(seen) or list(configured)
    return out


def item_row(record: dict[str, Any]) -> dict[str, Any]:
    """A sampled log record as an audit item."""
    return {**record, "message_created_at": record["created_at"]}


def run(cfg: Config) -> str:
    """Draw a batch from the prediction log into the audit database; return its id."""
    acfg, scfg = cfg.audit, cfg.audit.sample
    start, end = period(scfg.since, scfg.until, int(scfg.days))
    plog = open_prediction_log(acfg.prediction_log, retention_days=None)
    try:
        logged = plog.read(since=start, until=end)
    finally:
        plog.close()
    records = latest_per_message(logged)
    if not records:
        raise AuditError(
            f"no predictions in {acfg.prediction_log} between {start.isoformat()} and "
            f"{end.isoformat()}; check audit.prediction_log and audit.sample.since/until"
        )
    rows, design = draw(records, scfg, int(scfg.seed))
    design["period_days"] = (end - start).total_seconds() / 86400
    design["model_versions"] = dict(Counter(r["model_version"] for r in records))
    batch_id = acfg.batch or f"{start:%Y-%m-%d}_{end:%Y-%m-%d}"
    db = AuditDB(acfg.db_url)
    try:
        db.create_batch(
            {
                "id": batch_id,
                "kind": "sample",
                "since": start.isoformat(),
                "until": end.isoformat(),
                "population": len(records),
                "design": design,
                "labels": head_labels(records, to_container(cfg.data.heads)),
            },
            [item_row(r) for r in rows],
        )
    finally:
        db.close()
    per_stratum = Counter(r["stratum"] for r in rows)
    log.info(
        "batch %s: %d items from %d messages (%s to %s); control slice %d; per stratum %s; "
        "%d need two reviewers",
        batch_id,
        len(rows),
        len(records),
        start.isoformat(),
        end.isoformat(),
        design["control"]["n"],
        dict(per_stratum),
        design["dual_review"],
    )
    print(f"batch {batch_id}: {len(rows)} items; review with `triage audit-serve`")
    return batch_id
