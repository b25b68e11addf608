"""The bundle contract on its own: the manifest read back as written, and every way a manifest
can be refused."""

from __future__ import annotations

import json

import pytest

from triage.errors import TriageError
from triage.io import sha256_file
from triage.serving.bundle import (
    FORMAT,
    HASHED_FILES,
    NOVELTY_FILE,
    BundleError,
    HeadSpec,
    Manifest,
    read_manifest,
    write_manifest,
)


def raw_manifest(**changes) -> dict:
    """A /4 manifest as the export writes it (without files), with ``changes``."""
    raw = {
        "format": FORMAT,
        "package_version": "1.2.3",
        "model_version": "abcd1234-0f0f0f0f",
        "created_at": "2026-01-01T00:00:00+00:00",
        "encoder": "tiny",
        "data": {"fingerprint": "x"},
        "languages": ["nl", "en"],
        "run_id": "abcd1234ffff",
        "input_prefix": "query: ",
        "max_length": 48,
        "pad_token_id": 0,
        "quantization": "none",
        "backend": "onnxruntime",
        "vocab_trimmed": False,
        "fpr_target": 0.05,
        "margin": 0.1,
        "heads": {
            "intent": {
                "labels": ["a", "b"],
                "thresholds": {"a": 0.5, "b": None},
                "language_thresholds": {"nl": {"a": 0.7, "b": 0.9}},
                "temperature": 1.3,
                "language_temperatures": {"nl": 2.0},
            }
        },
        "data_fingerprints": {"test": "0123"},
        "parity": {"intent/max_abs_diff": 1e-6},
        "bundle_test": {"intent/macro_f1": 0.8},
        "novelty": {"k": 10.0, "threshold": 0.26, "quantile": 0.95, "n_bank": 3.0},
    }
    raw.update(changes)
    return raw


def test_round_trip_through_the_file(tmp_path):
    manifest = Manifest.from_dict(raw_manifest())
    assert manifest.to_dict() == raw_manifest()  # no files until they are set
    for name in (*HASHED_FILES, NOVELTY_FILE):
        (tmp_path / name).write_text(name)
    with_files = manifest.with_files(tmp_path)
    assert set(with_files.files) == {*HASHED_FILES, NOVELTY_FILE}  # the bank is checked too
    # a /2 manifest (no novelty) reads and writes back without the key; it had no backend
    # either, and runs on onnxruntime
    older = raw_manifest(format="social-triage-bundle/2")
    del older["novelty"], older["backend"]
    assert Manifest.from_dict(older).to_dict() == {**older, "backend": "onnxruntime"}
    assert set(Manifest.from_dict(older).with_files(tmp_path).files) == set(HASHED_FILES)
    write_manifest(tmp_path, with_files)
    written = json.loads((tmp_path / "manifest.json").read_text(encoding="utf-8"))
    assert list(written) == [*raw_manifest(), "files"]
    assert written["files"]["model.onnx"] == {
        "sha256": sha256_file(tmp_path / "model.onnx"),
        "bytes": len("model.onnx"),
    }
    assert read_manifest(tmp_path) == with_files
    head = with_files.heads["intent"]
    assert head.thresholds_for("nl") == {"a": 0.7, "b": 0.9}
    assert head.thresholds_for("de") == head.thresholds_for(None) == {"a": 0.5, "b": None}


def test_a_format_1_manifest_reads_with_pooled_thresholds_only():
    raw = raw_manifest(format="social-triage-bundle/1")
    del raw["heads"]["intent"]["language_thresholds"]
    head = Manifest.from_dict(raw).heads["intent"]
    assert head == HeadSpec("intent", ["a", "b"], {"a": 0.5, "b": None}, 1.3, {"nl": 2.0}, {})


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"format": "other/9"}, "format 'other/9', this runtime reads"),
        ({"heads": {}}, "routing needs an `intent` head"),
        ({"max_length": "long"}, "a bad value"),
        ({"pad_token_id": "zero"}, "a bad value"),
    ],
)
def test_bad_manifests_are_refused(change, says):
    with pytest.raises(BundleError, match=says) as refused:
        Manifest.from_dict(raw_manifest(**change))
    # a user's error: the CLI prints it in one line; existing `except ValueError` still catch it
    assert isinstance(refused.value, TriageError) and isinstance(refused.value, ValueError)


def test_missing_keys_and_bad_heads_are_named():
    raw = raw_manifest()
    del raw["model_version"], raw["pad_token_id"]
    with pytest.raises(BundleError, match=r"no \['model_version', 'pad_token_id'\]"):
        Manifest.from_dict(raw)
    raw = raw_manifest()
    del raw["heads"]["intent"]["temperature"]
    with pytest.raises(BundleError, match="manifest head 'intent': missing or bad key"):
        Manifest.from_dict(raw)
    raw = raw_manifest()
    raw["heads"]["intent"]["language_thresholds"]["nl"] = {"a": 0.7}
    with pytest.raises(BundleError, match=r"the nl thresholds name \['a'\]"):
        Manifest.from_dict(raw)


def test_read_manifest_says_what_to_do(tmp_path):
    with pytest.raises(BundleError, match=r"is not a model bundle .* run `triage export`"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        read_manifest(tmp_path)
