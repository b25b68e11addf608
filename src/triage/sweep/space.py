"""A sweep's search space: parsed from Hydra sweep overrides, sampled per trial, and written
back as Hydra overrides."""

from __future__ import annotations

import re
from typing import Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
from hydra.errors import HydraException

from triage.errors import ConfigError


def parse_search_space(params: list[str]) -> dict[str, dict[str, Any]]:
    """Read a sweep's search space, written as Hydra sweep overrides in the syntax of
    hydra-optuna-sweeper, into plain dimensions (what the sweep turns into Optuna distributions).

    * ``key=choice(a, b, ...)``: one of the values (bool, int, float or str; Hydra refuses null);
    * ``key=range(start, stop[, step])``: stepped values, both ends included as in
      hydra-optuna-sweeper (ints when all three are ints); ``shuffle(...)`` of either: a choice;
    * ``key=interval(low, high)``: a float, uniform; ``tag(log, interval(low, high))``: log-uniform.

    Args:
        params: entries such as ``"train.lr=tag(log, interval(1e-5, 1e-3))"``; a ``+``/``++``
            prefix (``++train.head_weights.sentiment=interval(0.25, 1)``) is kept for the
            override, so keys of open dicts can be added.

    Returns:
        Per config key, in order: ``{"override": key with prefix, "kind": "categorical",
        "choices": [...]}`` or ``{"override": ..., "kind": "int" | "float", "low", "high",
        "step" (None: continuous), "log"}``.

    Raises:
        ConfigError: an entry that does not parse, is not a sweep, or repeats a key.
    """
    parser = OverridesParser.create()
    space: dict[str, dict[str, Any]] = {}
    for entry in params:
        try:
            override = parser.parse_override(entry)
        except HydraException as exc:
            raise ConfigError(f"sweep.params: cannot parse {entry!r}: {exc}") from exc
        key, value = override.key_or_group, override.value()
        if key in space:
            raise ConfigError(f"sweep.params: {key} appears twice")
        dimension: dict[str, Any] = {"override": override.get_key_element()}
        if isinstance(value, ChoiceSweep) or getattr(value, "shuffle", False):
            dimension.update(kind="categorical", choices=list(override.sweep_iterator()))
        elif isinstance(value, RangeSweep):
            bounds = (value.start, value.stop, value.step)
            kind = "int" if all(isinstance(b, int) for b in bounds) else "float"
            dimension.update(
                kind=kind, low=value.start, high=value.stop, step=value.step, log=False
            )
        elif isinstance(value, IntervalSweep):
            dimension.update(
                kind="float", low=value.start, high=value.end, step=None, log="log" in value.tags
            )
        else:
            raise ConfigError(
                f"sweep.params: {entry!r} is not a sweep; use choice(...), range(...) or "
                "interval(...), and put fixed values in sweep.overrides"
            )
        space[key] = dimension
    return space


def sample(trial: optuna.Trial, space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One value per dimension of a :func:`parse_search_space` space."""
    values = {}
    for key, dim in space.items():
        if dim["kind"] == "categorical":
            values[key] = trial.suggest_categorical(key, dim["choices"])
        elif dim["kind"] == "int":
            values[key] = trial.suggest_int(key, dim["low"], dim["high"], step=dim["step"])
        else:
            values[key] = trial.suggest_float(
                key, dim["low"], dim["high"], step=dim["step"], log=dim["log"]
            )
    return values


def override_key(override: str) -> str:
    """``"++train.head_weights.x=1"`` -> ``"train.head_weights.x"``."""
    return override.split("=", 1)[0].lstrip("+~")


def hydra_value(value: Any) -> str:
    """A sampled value as a Hydra override value (strings quoted unless plain)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return repr(value)
    if re.fullmatch(r"[\w./:+-]+", value) and value not in ("true", "false", "null"):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
