"""Typed configuration: the only module that composes configs (Hydra, OmegaConf).

The YAML files under ``configs/`` are composed with Hydra's compose API (no ``@hydra.main``: no
timestamped output folders to clash with DVC's fixed paths, and overrides come straight from the
command line). Every group is checked against the dataclasses of :mod:`triage.config.groups`,
so a typo in an override (``data.splt.test=0.2``) fails with the key it could not find instead
of being silently ignored, and every stage receives those dataclasses (:func:`load_config`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.errors import HydraException
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from triage.config.groups import (
    AuditAppConfig,
    AuditConfig,
    AuditExportConfig,
    AuditIssuesConfig,
    AuditLabelStudioConfig,
    AuditReportConfig,
    AuditReviewerConfig,
    AuditSampleConfig,
    AuditTargetsConfig,
    BaselineConfig,
    CalibrateConfig,
    ClassifyConfig,
    Config,
    DataConfig,
    DistillConfig,
    EvaluateConfig,
    ExportConfig,
    ExportGateConfig,
    ExportStaticInt8Config,
    ExportVocabConfig,
    HeadConfig,
    ModelConfig,
    NegativeRuleConfig,
    NoveltyConfig,
    OnInvalid,
    PathsConfig,
    PredictionLogConfig,
    RouteRuleConfig,
    RoutingConfig,
    ServeConfig,
    SourceConfig,
    SplitConfig,
    SweepConfig,
    SweepObjectiveConfig,
    SweepPrunerConfig,
    SweepSamplerConfig,
    TrackingConfig,
    TrainConfig,
)
from triage.errors import ConfigError

ConfigStore.instance().store(name="base_config", node=Config)


def project_root() -> Path:
    """The folder that holds ``configs/``: ``TRIAGE_ROOT`` if set, else the nearest parent of
    the working directory with ``configs/config.yaml``, else the source checkout."""
    env = os.environ.get("TRIAGE_ROOT")
    if env:
        return Path(env).expanduser().resolve()
    for folder in [Path.cwd(), *Path.cwd().parents]:
        if (folder / "configs" / "config.yaml").is_file():
            return folder.resolve()
    return Path(__file__).resolve().parents[3]


def load_config(overrides: list[str] | None = None, root: Path | None = None) -> Config:
    """Compose ``configs/config.yaml`` with Hydra overrides, validate it against the dataclasses
    above, resolve it and return it as those dataclasses (every stage receives a typed
    :class:`Config`).

    Args:
        overrides: Hydra override strings, e.g. ``["data=social", "data.seed=3"]``.
        root: project root; defaults to :func:`project_root`.

    Raises:
        ConfigError: the composition failed (unknown group option, unknown key, wrong type,
            a required value left unset).
    """
    root = (root or project_root()).resolve()  # Hydra wants an absolute config folder
    config_dir = root / "configs"
    if not (config_dir / "config.yaml").is_file():
        raise ConfigError(
            f"no configs/config.yaml under {root}; run from the project folder "
            "or set TRIAGE_ROOT to it"
        )
    try:
        with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
            cfg = compose(config_name="config", overrides=list(overrides or []))
        cfg.paths.root = str(root)
        OmegaConf.resolve(cfg)
        return OmegaConf.to_object(cfg)
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(f"invalid configuration: {exc}") from exc


def _node(cfg: Any) -> Any:
    """An OmegaConf node for a typed config (a dataclass, or a dict/list holding them)."""
    return cfg if isinstance(cfg, (DictConfig, ListConfig)) else OmegaConf.create(cfg)


def to_yaml(cfg: Any) -> str:
    """A config (or a part of one) as YAML, for reports and tracking."""
    return OmegaConf.to_yaml(_node(cfg), resolve=True)


def to_container(cfg: Any) -> Any:
    """Plain Python dicts/lists (enums as their names) from a config or a part of one."""
    return OmegaConf.to_container(_node(cfg), resolve=True, enum_to_str=True)


__all__ = [
    "AuditAppConfig",
    "AuditConfig",
    "AuditExportConfig",
    "AuditIssuesConfig",
    "AuditLabelStudioConfig",
    "AuditReportConfig",
    "AuditReviewerConfig",
    "AuditSampleConfig",
    "AuditTargetsConfig",
    "BaselineConfig",
    "CalibrateConfig",
    "ClassifyConfig",
    "Config",
    "ConfigError",
    "DataConfig",
    "DistillConfig",
    "EvaluateConfig",
    "ExportConfig",
    "ExportGateConfig",
    "ExportStaticInt8Config",
    "ExportVocabConfig",
    "HeadConfig",
    "ModelConfig",
    "NegativeRuleConfig",
    "NoveltyConfig",
    "OnInvalid",
    "PathsConfig",
    "PredictionLogConfig",
    "RouteRuleConfig",
    "RoutingConfig",
    "ServeConfig",
    "SourceConfig",
    "SplitConfig",
    "SweepConfig",
    "SweepObjectiveConfig",
    "SweepPrunerConfig",
    "SweepSamplerConfig",
    "TrackingConfig",
    "TrainConfig",
    "load_config",
    "project_root",
    "to_container",
    "to_yaml",
]
