"""notebooks/error_analysis.ipynb runs headless on the pipeline's outputs, shows each section's
content and writes nothing into the folders it reads."""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import nbformat
import pandas as pd
from nbclient import NotebookClient

from triage.modeling.calibration import load_calibration

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "error_analysis.ipynb"
KERNEL_CHECK = "import sys; print('kernel prefix:', sys.prefix)"


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Size and modification time of every file under ``folder``."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def execute(monkeypatch, eval_dir: Path, calibration: Path) -> tuple[str, float]:
    """Run the notebook in the venv's ``python3`` kernel from notebooks/; return the text of
    all its outputs and the seconds it took."""
    monkeypatch.setenv("TRIAGE_EVAL_DIR", str(eval_dir))
    monkeypatch.setenv("TRIAGE_CALIBRATION", str(calibration))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    # The venv's kernelspec before any user-level `python3` one; its argv[0] `python` becomes
    # this interpreter (jupyter_client), which the last cell checks.
    monkeypatch.setenv("JUPYTER_PATH", str(Path(sys.prefix) / "share" / "jupyter"))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(KERNEL_CHECK))  # in memory only
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=60,
        startup_timeout=60,
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    start = time.monotonic()
    client.execute()  # raises CellExecutionError on the first failing cell
    elapsed = time.monotonic() - start
    texts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert out["output_type"] != "error", out
            if out["output_type"] == "stream":
                texts.append(out["text"])
            elif "data" in out:
                assert "text/plain" in out["data"], out["data"].keys()  # readable as text
                texts.append(out["data"]["text/plain"])
    text = "\n".join(texts)
    assert f"kernel prefix: {sys.prefix}" in text  # ran in the venv's interpreter
    return text, elapsed


def load_thresholds(path: Path) -> dict[str, dict[str, float]]:
    """Threshold per head and label; ``inf`` = never automatic."""
    return {
        head: {label: entry["threshold"] for label, entry in fit["thresholds"].items()}
        for head, fit in load_calibration(path)["heads"].items()
    }


def test_notebook_is_stored_small_and_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert nb.nbformat == 4
    assert NOTEBOOK.stat().st_size < 50_000
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)
    assert 'os.environ.get("TRIAGE_EVAL_DIR", "../models/evaluation")' in code[0].source
    assert 'os.environ.get("TRIAGE_CALIBRATION", "../models/calibration.json")' in code[0].source
    headers = [c.source for c in nb.cells if c.cell_type == "markdown"]
    for section in ("## 1.", "## 2.", "## 3.", "## 4.", "## 5."):
        assert any(h.startswith(section) for h in headers), section


def test_notebook_runs_on_the_pipeline_outputs(pipeline, monkeypatch):
    _cfg, tmp, _client = pipeline
    eval_dir, calibration = tmp / "evaluation", tmp / "calibration.json"
    before = snapshot(tmp)
    text, elapsed = execute(monkeypatch, eval_dir, calibration)
    assert elapsed < 60
    assert snapshot(tmp) == before  # never writes pipeline outputs

    metrics = json.loads((eval_dir / "metrics.json").read_text(encoding="utf-8"))
    predictions = pd.read_parquet(eval_dir / "predictions.parquet")
    # (1) headline numbers and flags
    assert "macro_f1" in text and "ece_uncalibrated" in text
    assert f"{metrics['test/intent/nl/macro_f1']:.3f}" in text
    if metrics["flags"]:
        for flag in metrics["flags"]:
            assert flag in text, flag
    else:
        assert "no flags" in text
    # (2) worst confusions with examples
    assert "share_of_true" in text and "example_2" in text
    # (3) calibration per slice, small slices skipped and said so
    assert "overconfidence" in text and " ece" in text
    assert "skipped (< 10 rows)" in text
    for channel in predictions["channel"].value_counts().loc[lambda n: n >= 10].index:
        assert channel in text
    # (4) the review queue, closest to the threshold first, and the share per class
    thresholds = load_thresholds(calibration)
    for head in ("intent", "sentiment"):
        review = predictions[predictions[f"{head}_decision"] == "review"]
        if len(review):
            below = review[f"pred_{head}"].map(thresholds[head]) - review[f"{head}_confidence"]
            assert review.loc[below.idxmin(), "id"] in text
    assert "review_share" in text and "below_by" in text
    # (5) the most confident mistake of each head
    for head in ("intent", "sentiment"):
        wrong = predictions[
            predictions[head].notna() & (predictions[f"pred_{head}"] != predictions[head])
        ]
        if len(wrong):
            assert wrong.loc[wrong[f"{head}_confidence"].idxmax(), "id"] in text


def test_notebook_handles_missing_labels_and_never_automatic_classes(
    pipeline,
    monkeypatch,
    tmp_path,
):
    _cfg, tmp, _client = pipeline
    eval_dir = tmp_path / "evaluation"
    shutil.copytree(tmp / "evaluation", eval_dir)
    predictions = pd.read_parquet(eval_dir / "predictions.parquet")
    predictions.loc[predictions.index[::3], "sentiment"] = None  # no sentiment label
    never = predictions["pred_intent"].value_counts().index[0]
    predictions.loc[predictions["pred_intent"] == never, "intent_decision"] = "review"
    predictions.to_parquet(eval_dir / "predictions.parquet")
    calibration = json.loads((tmp / "calibration.json").read_text(encoding="utf-8"))
    calibration["heads"]["intent"]["thresholds"][never]["threshold"] = None
    (tmp_path / "calibration.json").write_text(json.dumps(calibration), encoding="utf-8")

    text, _ = execute(monkeypatch, eval_dir, tmp_path / "calibration.json")
    assert "never automatic" in text and "never" in text
    labelled = int(predictions["sentiment"].notna().sum())
    assert f"on {labelled} labelled rows" in text
