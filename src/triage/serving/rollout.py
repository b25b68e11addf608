"""The rollout state an operator changes at run time: the kill switch and the pilot list.

- **Kill switch** (``automation: false``): every decision becomes ``review``, with a reason that
  says so; nothing is answered, hidden or queued automatically.
- **Pilot** (``pilot``: a list of intents, or None for all that the routing table allows): an
  automatic decision for an intent not on the list becomes ``review`` ("pilot: not enabled").

The state lives in one JSON file (``serve.rollout.state_file``), written atomically. The admin
endpoint writes it; ops may write it by hand; every service process re-reads it when it changes
(checked every ``serve.rollout.poll_seconds``), so every worker honours a change within that
time. A missing file means the bundle's defaults: automation on, the pilot list of the routing
table (``routing.automation.enabled``). The state in force is logged with every prediction.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from triage.errors import ConfigError
from triage.io import write_atomic
from triage.serving.record import Prediction

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RolloutState:
    """What may act automatically right now."""

    automation: bool = True
    pilot: tuple[str, ...] | None = None  # None: every intent the routing table allows
    note: str = ""  # the operator's reason, shown in decisions' reasons
    changed_at: str | None = None
    changed_by: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str) -> RolloutState:
        """Parse and check a state (from the file or the admin endpoint)."""
        unknown = sorted(set(data) - {f for f in cls.__dataclass_fields__})
        if unknown:
            raise ConfigError(f"{where}: unknown keys {unknown}; use automation, pilot, note")
        automation = data.get("automation", True)
        if not isinstance(automation, bool):
            raise ConfigError(f"{where}: automation must be true or false, got {automation!r}")
        pilot = data.get("pilot")
        if pilot is not None and (
            not isinstance(pilot, list) or not all(isinstance(i, str) and i for i in pilot)
        ):
            raise ConfigError(f"{where}: pilot must be a list of intent names or null")
        note = data.get("note") or ""
        if not isinstance(note, str) or len(note) > 500:
            raise ConfigError(f"{where}: note must be text of at most 500 characters")
        return cls(
            automation=automation,
            pilot=None if pilot is None else tuple(dict.fromkeys(pilot)),
            note=note,
            changed_at=data.get("changed_at"),
            changed_by=data.get("changed_by"),
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["pilot"] = None if self.pilot is None else list(self.pilot)
        return data

    def logged(self) -> dict[str, Any]:
        """What each prediction records of the state."""
        return {"automation": self.automation, "pilot": self.to_dict()["pilot"]}


def apply(state: RolloutState, prediction: Prediction, review_action: str) -> Prediction:
    """``prediction`` as the rollout state allows: an automatic decision the state does not
    allow becomes ``review`` by ``review_action`` (the routing table's not-confident action),
    priority kept, the reason saying why and what the model would have done."""
    if prediction.decision != "auto":
        return prediction
    if not state.automation:
        why = "automation is switched off" + (f" ({state.note})" if state.note else "")
    elif state.pilot is not None and prediction.intent not in state.pilot:
        why = f"pilot: not enabled for {prediction.intent}"
    else:
        return prediction
    return replace(
        prediction,
        decision="review",
        action=review_action,
        reason=f"{why}: a person decides. The model would have: {prediction.reason}",
    )


class RolloutFile:
    """The state file of one service process: read when it changes, written atomically.

    Args:
        path: the JSON file (shared by every worker).
        default: the state when the file does not exist.
    """

    #: how stale the state may be before a model call (a stat per call: never)
    max_staleness_s = 0.0

    def __init__(self, path: str | os.PathLike[str], default: RolloutState) -> None:
        self.path, self.default = Path(path), default
        self._seen: tuple[int, int, int] | None = None
        self.state = default
        self.refresh()

    def _stamp(self) -> tuple[int, int, int] | None:
        """Inode, modification time and size: an atomic replace always changes the inode."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        return stat.st_ino, stat.st_mtime_ns, stat.st_size

    def refresh(self) -> bool:
        """Re-read the file if it changed; True when the state changed. A file that cannot be
        read or parsed keeps the current state (logged: an operator's typo must not switch
        automation back on)."""
        stamp = self._stamp()
        if stamp == self._seen:
            return False
        if stamp is None:
            new = self.default
        else:
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                if not isinstance(data, dict):
                    raise ConfigError(f"{self.path}: expected a JSON object")
                new = RolloutState.from_dict(data, str(self.path))
            except (OSError, ValueError, ConfigError) as exc:
                log.error("rollout state %s unreadable, kept the current one: %s", self.path, exc)
                return False
        self._seen = stamp
        changed, self.state = new != self.state, new
        if changed:
            log.warning("rollout state now %s", new.to_dict())
        return changed

    def write(self, state: RolloutState, who: str) -> RolloutState:
        """Store ``state`` (stamped with the time and ``who``) for every worker; return it."""
        stamped = replace(state, changed_at=datetime.now(UTC).isoformat(), changed_by=who)
        text = json.dumps(stamped.to_dict(), indent=2, ensure_ascii=False) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, lambda p: Path(p).write_text(text, encoding="utf-8"))
        self.refresh()
        return self.state
