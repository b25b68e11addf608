"""The model registry for rollouts: exported bundles as MLflow model versions with the aliases
``champion`` and ``challenger`` (:class:`triage.tracking.Registry`).

- ``triage rollout-register`` registers ``export.out_dir`` as a new version of
  ``audit.rollout.model_name`` (run: the checkpoint's MLflow run; tags: the bundle's model
  version and its test numbers from ``export.json``) and points ``audit.rollout.alias``
  (default ``challenger``) at it.
- ``triage rollout-promote`` reads the rollout report of ``audit.batch`` (default: the newest
  report) and, when its verdict is ``promote``, moves ``champion`` to the challenger's version
  and removes ``challenger``; any other verdict is refused unless ``audit.rollout.force=true``,
  which is recorded on the version (``promoted_forced``, the verdict and the report).
- ``serve.bundle`` / ``serve.shadow_bundle`` / ``classify.bundle`` may be
  ``models:/<name>@<alias>``: :func:`resolve_bundles` downloads that version before the stage
  starts (needs the train extra, where MLflow is).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from datetime import UTC, datetime
from pathlib import Path

from triage.config import Config
from triage.errors import ConfigError, MissingInputError, TriageError
from triage.tracking import Registry, read_run_id

log = logging.getLogger(__name__)

PREFIX = "models:/"


def _registry(cfg: Config, name: str | None = None) -> Registry:
    return Registry(cfg.tracking.uri, Path(cfg.paths.root), name or cfg.audit.rollout.model_name)


def register(cfg: Config) -> str:
    """``triage rollout-register``: the exported bundle as a new version; return it."""
    rcfg = cfg.audit.rollout
    bundle = Path(cfg.export.out_dir)
    manifest = bundle / "manifest.json"
    if not manifest.is_file():
        raise MissingInputError(f"{manifest} not found: run `triage export` first")
    model_version = json.loads(manifest.read_text(encoding="utf-8"))["model_version"]
    run_id = read_run_id(Path(cfg.export.checkpoint))
    if run_id is None:
        raise MissingInputError(
            f"{cfg.export.checkpoint} has no MLflow run id: train with tracking.enabled=true"
        )
    tags = {"model_version": model_version, "registered_at": datetime.now(UTC).isoformat()}
    report = Path(cfg.export.report)
    if report.is_file():
        numbers = json.loads(report.read_text(encoding="utf-8")).get("bundle_test", {})
        tags.update({f"test/{k}": f"{v:.4f}" for k, v in numbers.items() if k.endswith("macro_f1")})
    registry = _registry(cfg)
    version = registry.register(bundle, run_id, tags)
    registry.set_alias(rcfg.alias, version)
    print(f"{PREFIX}{registry.name}/{version} ({model_version}) is now @{rcfg.alias}")
    return version


def promote(cfg: Config) -> str:
    """``triage rollout-promote``: move ``champion`` to the challenger after a passing report;
    return the promoted version."""
    rcfg = cfg.audit.rollout
    reports = Path(rcfg.out_dir)
    folder = reports / cfg.audit.batch if cfg.audit.batch else _newest(reports)
    metrics_file = folder / "metrics.json"
    if not metrics_file.is_file():
        raise MissingInputError(f"{metrics_file} not found: run `triage rollout-report` first")
    judgement = json.loads(metrics_file.read_text(encoding="utf-8"))["judgement"]
    registry = _registry(cfg)
    challenger = registry.version_of("challenger")
    if challenger is None:
        raise ConfigError(f"model {registry.name!r} has no @challenger: run rollout-register")
    if judgement["verdict"] != "promote" and not rcfg.force:
        raise TriageError(
            f"the rollout report {folder.name} says {judgement['verdict']!r} "
            f"({judgement['why']}); not promoted. Set audit.rollout.force=true to promote "
            "anyway (recorded on the version)"
        )
    version = challenger["version"]
    registry.tag(
        version,
        {
            "promoted_at": datetime.now(UTC).isoformat(),
            "promoted_report": str(folder),
            "promoted_verdict": judgement["verdict"],
            "promoted_forced": str(judgement["verdict"] != "promote"),
        },
    )
    registry.set_alias("champion", version)
    registry.delete_alias("challenger")
    print(f"{PREFIX}{registry.name}/{version} is now @champion (report {folder.name})")
    return version


def _newest(reports: Path) -> Path:
    folders = sorted(p for p in reports.iterdir() if p.is_dir()) if reports.is_dir() else []
    if not folders:
        raise MissingInputError(f"no rollout reports in {reports}: run `triage rollout-report`")
    return max(folders, key=lambda p: p.stat().st_mtime)


def resolve_bundles(cfg: Config) -> Config:
    """``cfg`` with every ``models:/<name>@<alias>`` bundle of ``serve`` and ``classify``
    downloaded and replaced by its local folder (others unchanged)."""

    def local(uri: str | None) -> str | None:
        if not uri or not uri.startswith(PREFIX):
            return uri
        name, _, alias = uri.removeprefix(PREFIX).partition("@")
        if not name or not alias:
            raise ConfigError(f"{uri}: write a registry bundle as {PREFIX}<model name>@<alias>")
        registry = _registry(cfg, name)
        found = registry.version_of(alias)
        if found is None:
            raise ConfigError(f"{uri}: model {name!r} has no alias {alias!r}")
        dest = Path(cfg.audit.rollout.cache_dir) / name / found["version"]
        path = registry.download(alias, dest)
        log.info("%s is version %s, in %s", uri, found["version"], path)
        return str(path)

    serve = dataclasses.replace(
        cfg.serve, bundle=local(cfg.serve.bundle), shadow_bundle=local(cfg.serve.shadow_bundle)
    )
    classify = dataclasses.replace(cfg.classify, bundle=local(cfg.classify.bundle))
    return dataclasses.replace(cfg, serve=serve, classify=classify)
