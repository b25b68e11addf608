"""The rollout registry: register bundles as MLflow model versions, promote only after a passing
rollout report (forcing is recorded), and resolve models:/name@alias for the serving stages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from triage.audit.registry import promote, register, resolve_bundles
from triage.cli import main
from triage.config import load_config
from triage.errors import TriageError
from triage.tracking import RUN_ID_FILE, Registry, Tracker


def fake_export(tmp_path, name: str, model_version: str, run_id: str):
    """A bundle folder and its checkpoint's run id, as `triage export` leaves them."""
    bundle, checkpoint = tmp_path / name / "onnx", tmp_path / name / "checkpoint"
    bundle.mkdir(parents=True)
    checkpoint.mkdir(parents=True)
    (bundle / "manifest.json").write_text(json.dumps({"model_version": model_version}))
    (bundle / "model.onnx").write_bytes(b"graph bytes of " + model_version.encode())
    (checkpoint / RUN_ID_FILE).write_text(run_id)
    return bundle, checkpoint


def report(tmp_path, batch: str, verdict: str) -> None:
    folder = tmp_path / "reports" / "rollout" / batch
    folder.mkdir(parents=True)
    judgement = {"verdict": verdict, "why": "synthetic"}
    (folder / "metrics.json").write_text(json.dumps({"judgement": judgement}))


@pytest.mark.slow
def test_register_promote_and_serve_from_the_registry(root, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracker = Tracker(True, uri, "social-triage", root)
    runs = []
    for _ in range(2):
        tracker.start(None, {})
        runs.append(tracker.run_id)
        tracker.end()
    base = [
        f"tracking.uri={uri}",
        f"audit.rollout.out_dir={tmp_path}/reports/rollout",
        f"audit.rollout.cache_dir={tmp_path}/cache",
    ]

    def cfg_for(name: str, *more: str):
        bundle, checkpoint = tmp_path / name / "onnx", tmp_path / name / "checkpoint"
        overrides = [f"export.out_dir={bundle}", f"export.checkpoint={checkpoint}", *more]
        return load_config([*base, *overrides], root=root)

    fake_export(tmp_path, "v1", "model-one", runs[0])
    assert register(cfg_for("v1", "audit.rollout.alias=champion")) == "1"
    fake_export(tmp_path, "v2", "model-two", runs[1])
    assert register(cfg_for("v2")) == "2"
    registry = Registry(uri, root, "social-triage")
    assert registry.version_of("champion")["version"] == "1"
    assert registry.version_of("challenger")["tags"]["model_version"] == "model-two"

    report(tmp_path, "week48", "hold")
    with pytest.raises(TriageError, match="says 'hold'"):
        promote(cfg_for("v2", "audit.batch=week48"))
    assert registry.version_of("champion")["version"] == "1"  # nothing moved
    assert main(["rollout-promote", *base, "audit.batch=week48", "audit.rollout.force=true"]) == 0
    promoted = registry.version_of("champion")
    assert promoted["version"] == "2" and registry.version_of("challenger") is None
    assert promoted["tags"]["promoted_forced"] == "True"
    assert promoted["tags"]["promoted_verdict"] == "hold"

    cfg = load_config([*base, "serve.bundle=models:/social-triage@champion"], root=root)
    served = resolve_bundles(cfg).serve.bundle
    assert served.startswith(f"{tmp_path}/cache/social-triage/2")
    manifest = json.loads((Path(served) / "manifest.json").read_text())
    assert manifest["model_version"] == "model-two"
    missing = load_config([*base, "serve.bundle=models:/social-triage@challenger"], root=root)
    with pytest.raises(TriageError, match="no alias 'challenger'"):
        resolve_bundles(missing)
