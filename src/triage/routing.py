"""Routing: from a message's calibrated probabilities to what the inbox does with it.

Pure Python (no numpy, no torch): the runtime, the service and the tests share these rules. The
table is configuration (``configs/routing/default.yaml``, shipped in a bundle as
``routing.json``) and encodes docs/taxonomy.md:

1. **The intent head decides first.** Its top-1 label is decided automatically only when its
   class threshold is set (not null) and reached, and the top-1 probability leads the runner-up
   by at least the bundle's ``margin`` (0 = no margin rule). Otherwise the message goes to
   ``not_confident`` (action ``review``): a person decides.
2. **The intent's rule gives action and priority.** A rule with ``automatic: false`` (abuse ->
   ``moderation_review``) is never automatic, whatever the confidence: the decision is
   ``review`` and the rule's action says who reviews.
3. **Negative sentiment.** A message whose probability of the negative sentiment label is at
   least ``negative.block_auto_reply_at`` is never answered with a template: an ``auto_reply``
   becomes ``review``. A message that is negative (top-1) with at least
   ``negative.raise_priority_at`` and whose action is one of ``negative.raise_priority_for``
   (the support queue) gets its priority raised by one level (``urgent`` stays ``urgent``).
   These use the sentiment probability, not the sentiment head's own thresholds: those decide
   whether a sentiment *tag* is automatic; here a false alarm costs one message read by a person
   or a place in a queue, so a lower bar is the cautious side.

``decision`` is ``auto`` when the action follows from the model without a person deciding (a
template reply, hiding spam, or routing a confident intent to its queue) and ``review`` when a
person decides (``review``, ``moderation_review``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from triage.errors import ConfigError


class Action(StrEnum):
    """What the inbox does with a message (docs/taxonomy.md)."""

    auto_reply = "auto_reply"  # answer from a template (tracking, code, FAQ, thanks)
    sales_queue = "sales_queue"
    support_queue = "support_queue"
    care_queue = "care_queue"
    hide = "hide"
    moderation_review = "moderation_review"
    review = "review"  # a person triages the message
    none = "none"  # nothing to do


class Priority(StrEnum):
    """Queue priority, lowest first (the order is what "raise by one level" means)."""

    low = "low"
    normal = "normal"
    high = "high"
    urgent = "urgent"


PRIORITY_ORDER = list(Priority)
AUTO, REVIEW = "auto", "review"


@dataclass(frozen=True)
class Rule:
    """What to do with a message of one intent."""

    action: Action
    priority: Priority
    automatic: bool = True  # false: never automatic, whatever the confidence


@dataclass(frozen=True)
class NegativeRule:
    """How negative sentiment changes a route (see the module docstring)."""

    label: str
    block_auto_reply_at: float
    raise_priority_at: float
    raise_priority_for: tuple[Action, ...]


@dataclass(frozen=True)
class RoutingTable:
    """The routing rules: one :class:`Rule` per intent label, a ``default`` for intent labels the
    table does not name, the ``not_confident`` route and the :class:`NegativeRule`."""

    intents: dict[str, Rule]
    default: Rule
    not_confident: Rule
    negative: NegativeRule
    # the pilot: intents that may act automatically (None: all the rules allow); the service
    # applies it (triage.serving.rollout) and operators change it at run time
    automation_enabled: tuple[str, ...] | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RoutingTable:
        """Build and validate a table from ``routing.json`` / the ``routing`` config group.

        Raises:
            ValueError: a missing key, an unknown action or priority, a probability outside
                [0, 1]; the message names the key.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f"routing: expected a mapping, got {type(data).__name__}")
        missing = [k for k in ("intents", "default", "not_confident", "negative") if k not in data]
        if missing:
            raise ConfigError(
                f"routing: missing key(s) {missing}; see configs/routing/default.yaml"
            )
        intents = {str(k): _rule(v, f"intents.{k}") for k, v in data["intents"].items()}
        neg = data["negative"]
        for key in ("label", "block_auto_reply_at", "raise_priority_at", "raise_priority_for"):
            if key not in neg:
                raise ConfigError(f"routing.negative: missing key {key!r}")
        for key in ("block_auto_reply_at", "raise_priority_at"):
            if not 0.0 <= float(neg[key]) <= 1.0:
                raise ConfigError(f"routing.negative.{key} must be in [0, 1], got {neg[key]}")
        negative = NegativeRule(
            label=str(neg["label"]),
            block_auto_reply_at=float(neg["block_auto_reply_at"]),
            raise_priority_at=float(neg["raise_priority_at"]),
            raise_priority_for=tuple(
                _enum(Action, a, "negative.raise_priority_for") for a in neg["raise_priority_for"]
            ),
        )
        enabled = (data.get("automation") or {}).get("enabled")
        if enabled is not None and (
            isinstance(enabled, str) or not all(isinstance(i, str) for i in enabled)
        ):
            raise ConfigError(
                f"routing.automation.enabled: a list of intents or null, got {enabled!r}"
            )
        return cls(
            intents=intents,
            default=_rule(data["default"], "default"),
            not_confident=_rule(data["not_confident"], "not_confident"),
            negative=negative,
            automation_enabled=None if enabled is None else tuple(enabled),
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (what ``routing.json`` holds)."""

        def rule(r: Rule) -> dict[str, Any]:
            return {"action": str(r.action), "priority": str(r.priority), "automatic": r.automatic}

        return {
            "intents": {label: rule(r) for label, r in self.intents.items()},
            "default": rule(self.default),
            "not_confident": rule(self.not_confident),
            "negative": {
                "label": self.negative.label,
                "block_auto_reply_at": self.negative.block_auto_reply_at,
                "raise_priority_at": self.negative.raise_priority_at,
                "raise_priority_for": [str(a) for a in self.negative.raise_priority_for],
            },
            "automation": {
                "enabled": None
                if self.automation_enabled is None
                else list(self.automation_enabled)
            },
        }

    def rule_for(self, intent: str) -> Rule:
        """The rule of an intent label, or ``default`` for a label the table does not name."""
        return self.intents.get(intent, self.default)

    def unrouted(self, intent_labels: Sequence[str]) -> list[str]:
        """Intent labels of a model that the table does not name (they get ``default``)."""
        return [label for label in intent_labels if label not in self.intents]


def _enum(kind: type[StrEnum], value: Any, where: str) -> Any:
    try:
        return kind(str(value))
    except ValueError:
        allowed = ", ".join(m.value for m in kind)
        raise ConfigError(f"routing.{where}: unknown value {value!r}; one of: {allowed}") from None


def _rule(data: Any, where: str) -> Rule:
    if not isinstance(data, Mapping) or "action" not in data or "priority" not in data:
        raise ConfigError(f"routing.{where}: needs `action` and `priority`, got {data!r}")
    automatic = data.get("automatic", True)
    if not isinstance(automatic, bool):
        raise ConfigError(f"routing.{where}.automatic must be true or false, got {automatic!r}")
    return Rule(
        action=_enum(Action, data["action"], f"{where}.action"),
        priority=_enum(Priority, data["priority"], f"{where}.priority"),
        automatic=automatic,
    )


@dataclass(frozen=True)
class HeadDecision:
    """One head's outcome: its top-1 label and whether that label is decided automatically."""

    label: str
    prob: float
    threshold: float | None  # the top-1 label's threshold; None = never automatic
    automatic: bool
    why: str  # e.g. "intent refund_return at 0.80 is below its threshold 0.95"


def decide_head(
    head: str,
    probs: Sequence[float],
    labels: Sequence[str],
    thresholds: Mapping[str, float | None],
    margin: float = 0.0,
) -> HeadDecision:
    """The bundle's decision rule for one head.

    Top-1 label ``L`` (first maximum) with probability ``p`` is automatic when
    ``thresholds[L]`` is not None, ``p >= thresholds[L]`` and, when ``margin > 0``,
    ``p - p_second >= margin``.

    Args:
        head: the head's name, for the explanation.
        probs: calibrated probabilities in label order.
        labels: label names.
        thresholds: label -> threshold (None or a missing label: never automatic).
        margin: smallest allowed gap between the top two probabilities; 0 = off.
    """
    top = max(range(len(probs)), key=probs.__getitem__)
    label, p = labels[top], float(probs[top])
    threshold = thresholds.get(label)
    if threshold is not None and not math.isfinite(threshold):
        threshold = None
    if threshold is None:
        why = f"{head} {label} ({p:.2f}) has no threshold: never decided automatically"
        return HeadDecision(label, p, None, False, why)
    if p < threshold:
        why = f"{head} {label} at {p:.2f} is below its threshold {threshold:.2f}"
        return HeadDecision(label, p, threshold, False, why)
    if margin > 0 and len(probs) > 1:
        second = max(range(len(probs)), key=lambda k: -1.0 if k == top else probs[k])
        gap = p - float(probs[second])
        if gap < margin:
            why = (
                f"{head} {label} ({p:.2f}) leads {labels[second]} ({probs[second]:.2f}) by "
                f"{gap:.2f}, less than the margin {margin:.2f}"
            )
            return HeadDecision(label, p, threshold, False, why)
    return HeadDecision(label, p, threshold, True, f"{head} {label} ({p:.2f} ≥ {threshold:.2f})")


@dataclass(frozen=True)
class Route:
    """What the inbox does with one message."""

    decision: str  # "auto" | "review"
    action: Action
    priority: Priority
    reason: str  # one human-readable sentence


def route(
    table: RoutingTable, intent: HeadDecision, sentiment_probs: Mapping[str, float] | None
) -> Route:
    """Apply the routing table to a message's intent decision and sentiment probabilities.

    Args:
        table: the routing table.
        intent: :func:`decide_head`'s outcome for the intent head.
        sentiment_probs: sentiment label -> probability, or None when the model has no
            sentiment head (then the negative rule does not apply).
    """
    if not intent.automatic:
        rule = table.not_confident
        return Route(REVIEW, rule.action, rule.priority, f"{intent.why}: {_queue(rule)} decides.")
    rule = table.rule_for(intent.label)
    if not rule.automatic:
        return Route(
            REVIEW,
            rule.action,
            rule.priority,
            f"{intent.why}, which is never handled automatically: {_queue(rule)} decides.",
        )
    neg = table.negative
    p_neg = None if sentiment_probs is None else sentiment_probs.get(neg.label)
    if rule.action is Action.auto_reply and p_neg is not None and p_neg >= neg.block_auto_reply_at:
        review = table.not_confident
        return Route(
            REVIEW,
            review.action,
            rule.priority,
            f"{intent.why}, but {neg.label} sentiment ({p_neg:.2f} ≥ "
            f"{neg.block_auto_reply_at:.2f}) rules out a template reply: "
            f"{_queue(review)} decides.",
        )
    priority, reason = rule.priority, f"{intent.why}: {rule.action}, {rule.priority} priority"
    is_negative = (
        sentiment_probs is not None
        and p_neg is not None
        and max(sentiment_probs, key=sentiment_probs.__getitem__) == neg.label
    )
    if is_negative and p_neg >= neg.raise_priority_at and rule.action in neg.raise_priority_for:
        raised = PRIORITY_ORDER[min(PRIORITY_ORDER.index(priority) + 1, len(PRIORITY_ORDER) - 1)]
        if raised is not priority:
            priority = raised
            reason += (
                f"; {neg.label} sentiment ({p_neg:.2f} ≥ {neg.raise_priority_at:.2f}) raises it "
                f"to {priority}"
            )
    return Route(AUTO, rule.action, priority, reason + ".")


def _queue(rule: Rule) -> str:
    """Who decides on a review route, for the reason sentence."""
    if rule.action is Action.review:
        return f"a person ({rule.priority} priority)"
    return f"{rule.action} ({rule.priority} priority)"
