"""The CLI: user errors in one line, bugs with their traceback, the bundle path written once."""

from __future__ import annotations

import pytest

from triage.cli import main
from triage.config import load_config


def test_user_error_prints_one_line_and_exits_1(root, tmp_path, capsys):
    missing = tmp_path / "nowhere"
    code = main(["calibrate", f"calibrate.checkpoint={missing}", "tracking.enabled=false"])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert err.startswith("triage calibrate: error: ")
    assert "\n" not in err and "Traceback" not in err
    assert str(missing) in err and "triage train" in err  # names the file and what to do


def test_config_error_prints_one_line(capsys):
    assert main(["show", "data.splt.test=0.2"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("triage show: error: invalid configuration") and "splt" in err


def test_a_bug_keeps_its_traceback(monkeypatch):
    from triage.pipeline import prepare

    def broken(cfg):
        raise ValueError("a programming error, not the user's")

    monkeypatch.setattr(prepare, "run", broken)
    with pytest.raises(ValueError, match="programming error"):
        main(["prepare"])


def test_unknown_stage_exits_2(capsys):
    assert main(["nonsense"]) == 2
    assert "unknown stage" in capsys.readouterr().err


def test_bundle_path_is_written_once(root):
    cfg = load_config(["paths.bundle=/srv/bundle"], root=root)
    assert cfg.export.out_dir == cfg.serve.bundle == cfg.classify.bundle == "/srv/bundle"
