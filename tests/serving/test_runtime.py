"""The serving runtime on the tiny exported bundle: parity with the PyTorch evaluation (in a
subprocess where torch and transformers cannot be imported), batching, per-language temperatures,
bundle checks; and the ``triage classify`` file CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from triage.cli import main
from triage.errors import TriageError
from triage.modeling.calibration import softmax
from triage.routing import decide_head
from triage.serving.bundle import BundleError, read_manifest
from triage.serving.runtime import Runtime, physical_cores, rescale


@pytest.fixture(scope="module")
def runtime(bundle) -> Runtime:
    return Runtime.load(bundle)


@pytest.fixture(scope="module")
def evaluated(pipeline) -> pd.DataFrame:
    """The test split as ``triage evaluate`` scored it with PyTorch (calibration applied)."""
    _, tmp, _ = pipeline
    return pd.read_parquet(tmp / "evaluation" / "predictions.parquet")


BLOCKED_RUN = textwrap.dedent(
    """
    import json, sys
    from importlib.abc import MetaPathFinder

    class Refuse(MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "transformers"):
                raise ImportError(f"{name} is blocked in this test")
            return None

    sys.meta_path.insert(0, Refuse())
    # the whole serving side, not only the runtime
    import triage.serving.api
    import triage.serving.classify
    from triage.serving.runtime import Runtime

    bundle, inputs, out = sys.argv[1:4]
    rows = json.load(open(inputs))
    runtime = Runtime.load(bundle)
    preds = runtime.classify([r["text"] for r in rows], [r["lang"] for r in rows], batch_size=7)
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers"))
    json.dump({"predictions": [p.to_dict() for p in preds], "heavy": heavy}, open(out, "w"))
    """
)


def blocked_run(bundle, evaluated: pd.DataFrame, tmp_path, timeout: float) -> dict:
    """:data:`BLOCKED_RUN` on ``evaluated``'s texts and languages in a fresh interpreter:
    ``predictions`` and ``heavy`` (the torch/transformers modules it imported)."""
    rows = evaluated[["text", "lang"]].to_dict("records")
    (tmp_path / "in.json").write_text(json.dumps(rows), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-c", BLOCKED_RUN, str(bundle), tmp_path / "in.json", tmp_path / "o.json"],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr
    return json.loads((tmp_path / "o.json").read_text(encoding="utf-8"))


def test_runtime_without_torch_matches_the_pytorch_evaluation(bundle, evaluated, tmp_path):
    result = blocked_run(bundle, evaluated, tmp_path, timeout=120)
    assert result["heavy"] == []
    predictions = result["predictions"]
    manifest = read_manifest(bundle)
    # novelty from the bundle's embeddings and bank = evaluate's, from PyTorch's
    novelty = np.array([p["novelty"] for p in predictions])
    np.testing.assert_allclose(novelty, evaluated["novelty"], atol=1e-3, rtol=0)
    far = novelty >= manifest.novelty["threshold"]
    # parity to 1e-4 holds for an fp32 graph; an int8 bundle is checked by export's own gates
    assert manifest.quantization == "none", "the `bundle` fixture shipped int8: pin it to fp32"
    for head, spec in manifest.heads.items():
        ours = np.array([[p[f"{head}_probs"][label] for label in spec.labels] for p in predictions])
        reference = np.stack(evaluated[f"{head}_probs"].to_numpy())
        np.testing.assert_allclose(ours, reference, atol=1e-4, rtol=0)
        decided = [
            decide_head(
                head,
                row,
                spec.labels,
                spec.language_thresholds.get(lang, spec.thresholds),
                manifest.margin,
            )
            for row, lang in zip(ours.tolist(), evaluated["lang"], strict=True)
        ]
        assert [d.label for d in decided] == evaluated[f"pred_{head}"].tolist()
        # a far-out message is never decided automatically (evaluate counts it so as well)
        auto = [
            "auto" if d.automatic and not f else "review" for d, f in zip(decided, far, strict=True)
        ]
        assert auto == evaluated[f"{head}_decision"].tolist()
        # the routed decision is automatic only where the intent itself is
        if head == "intent":
            assert all(
                p["decision"] == "review"
                for p, a in zip(predictions, auto, strict=True)
                if a == "review"
            )
    assert {p["model_version"] for p in predictions} == {manifest.model_version}


def test_batching_and_order_do_not_change_results(runtime, evaluated):
    texts = evaluated["text"].tolist()[:40]
    langs = evaluated["lang"].tolist()[:40]
    one_by_one = [runtime.classify([t], [lang])[0] for t, lang in zip(texts, langs, strict=True)]
    for batch_size in (3, 64):
        batched = runtime.classify(texts, langs, batch_size=batch_size)
        for a, b in zip(one_by_one, batched, strict=True):
            assert a.intent == b.intent and a.decision == b.decision
            np.testing.assert_allclose(
                list(a.intent_probs.values()), list(b.intent_probs.values()), atol=1e-5
            )


def test_prediction_fields(runtime):
    [p] = runtime.classify(["  Waar blijft mijn pakket?  "])  # language detected
    assert p.lang == "nl"
    assert p.intent in runtime.heads["intent"].labels and p.sentiment is not None
    assert p.intent_prob == max(p.intent_probs.values())
    assert abs(sum(p.intent_probs.values()) - 1) < 1e-5
    assert p.decision in ("auto", "review") and p.action and p.priority and p.reason
    assert runtime.classify([]) == []
    with pytest.raises(ValueError, match=r"messages \[1\] are empty"):
        runtime.classify(["fine", " \u200b "])


def test_rescale_is_exact():
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=6.0, size=(50, 14))
    t_global, t_lang = 0.8, 1.7
    p_global = softmax(logits, t_global)  # what the graph outputs (float32)
    np.testing.assert_allclose(
        rescale(p_global, t_global, t_lang), softmax(logits, t_lang), atol=1e-6, rtol=0
    )
    np.testing.assert_allclose(rescale(p_global, 1.0, 1.0), p_global, atol=1e-7)


def test_language_temperature_applies_to_its_language_only(bundle, tmp_path):
    def with_language_temperatures(name: str, scale: dict[str, float]) -> Runtime:
        """The bundle with the intent head's per-language temperatures replaced (the fixture's
        own calibration may or may not have kept one)."""
        copy = tmp_path / name
        shutil.copytree(bundle, copy)
        manifest = json.loads((copy / "manifest.json").read_text())
        head = manifest["heads"]["intent"]
        head["language_temperatures"] = {k: v * head["temperature"] for k, v in scale.items()}
        (copy / "manifest.json").write_text(json.dumps(manifest))
        return Runtime.load(copy)

    plain = with_language_temperatures("plain", {})
    rescaled = with_language_temperatures("nl", {"nl": 2.5})
    t_global = plain.heads["intent"].temperature
    texts, langs = ["Waar blijft mijn pakket?", "where is my parcel"], ["nl", "en"]
    before = plain.probabilities(texts, langs)["intent"]
    after = rescaled.probabilities(texts, langs)["intent"]
    np.testing.assert_allclose(after[1], before[1])
    np.testing.assert_allclose(after[0], rescale(before[:1], t_global, 2.5 * t_global)[0])
    assert not np.allclose(after[0], before[0])


def test_language_thresholds_apply_to_their_language_only(bundle, tmp_path):
    copy = tmp_path / "strict-nl"
    shutil.copytree(bundle, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    head = manifest["heads"]["intent"]
    everything = dict.fromkeys(head["labels"], 0.0)
    head["thresholds"] = everything
    head["language_thresholds"] = {"nl": dict.fromkeys(head["labels"]), "en": everything}
    (copy / "manifest.json").write_text(json.dumps(manifest))
    runtime = Runtime.load(copy, verify=False)
    texts = ["Waar blijft mijn pakket?", "where is my parcel", "Wo bleibt mein Paket?"]
    nl, en, other = runtime.classify(texts, ["nl", "en", "de"])
    assert nl.intent_threshold is None and nl.decision == "review"  # nl: never automatic
    assert en.intent_threshold == 0.0 and other.intent_threshold == 0.0  # de: pooled
    # a format-1 bundle (pooled thresholds only) still loads and decides with those
    del head["language_thresholds"]
    (copy / "manifest.json").write_text(
        json.dumps({**manifest, "format": "social-triage-bundle/1"})
    )
    [old] = Runtime.load(copy, verify=False).classify(texts[:1], ["nl"])
    assert old.intent_threshold == 0.0
    # a language table that misses a label is refused, not read as "never automatic"
    head["language_thresholds"] = {"nl": dict.fromkeys(head["labels"][1:], 0.5)}
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="the nl thresholds name"):
        Runtime.load(copy, verify=False)


def test_a_message_far_from_the_training_data_goes_to_review(
    eager_bundle, automated_texts, tmp_path
):
    text = automated_texts[0]
    runtime = Runtime.load(eager_bundle, verify=False)
    [near] = runtime.classify([text])
    assert near.decision == "auto" and near.novelty < runtime.novelty.threshold
    # the same bundle with its threshold just under this message's novelty: now it is far out,
    # and goes to review however confident the model is
    copy = tmp_path / "strict-novelty"
    shutil.copytree(eager_bundle, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["novelty"]["threshold"] = near.novelty - 1e-4
    (copy / "manifest.json").write_text(json.dumps(manifest))
    [far] = Runtime.load(copy, verify=False).classify([text])
    assert far.decision == "review" and "far from the training data" in far.reason
    assert (far.intent, far.intent_prob) == (near.intent, near.intent_prob)
    assert far.novelty == pytest.approx(near.novelty)
    # a bundle whose bank file is gone is refused rather than served without the rule
    (copy / "novelty.npy").unlink()
    with pytest.raises(BundleError, match=r"novelty\.npy is missing"):
        Runtime.load(copy, verify=False)


def test_bad_bundles_fail_with_what_to_do(bundle, tmp_path):
    with pytest.raises(BundleError, match="run `triage export`") as missing:
        Runtime.load(tmp_path / "nothing")
    assert isinstance(missing.value, TriageError) and isinstance(missing.value, ValueError)
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    with (copy / "tokenizer.json").open("a") as f:
        f.write(" ")
    with pytest.raises(BundleError, match="differs from the manifest"):
        Runtime.load(copy)
    (copy / "routing.json").unlink()
    with pytest.raises(BundleError, match=r"routing\.json is missing"):
        Runtime.load(copy, verify=False)
    manifest = json.loads((copy / "manifest.json").read_text())
    (copy / "manifest.json").write_text(json.dumps({**manifest, "format": "other/9"}))
    with pytest.raises(BundleError, match="format 'other/9'"):
        Runtime.load(copy)


def _cpuinfo(*cpus: tuple[int, int, int]) -> str:
    """/proc/cpuinfo text for (processor, physical id, core id) triples."""
    return "\n\n".join(
        f"processor\t: {p}\nmodel name\t: x\nphysical id\t: {s}\ncore id\t\t: {c}"
        for p, s, c in cpus
    )


def test_physical_cores_counts_hyperthreads_of_one_core_once():
    # two sockets of two cores with two hyper-threads each: 8 CPUs, 4 cores
    info = _cpuinfo(*[(p, p // 4, (p // 2) % 2) for p in range(8)])
    assert physical_cores(info, set(range(8))) == 4
    assert physical_cores(info, {0, 1}) == 1  # two threads of core 0 of socket 0
    assert physical_cores(info, {0, 2, 4}) == 3  # three different cores
    # without core ids (some VMs) every allowed processor is a core; no cpuinfo: the CPUs
    assert physical_cores("processor\t: 0\n\nprocessor\t: 1", {0, 1}) == 2
    assert physical_cores("", {0, 1, 2}) == 3


# --------------------------------------------------------------------------------------------
# triage classify


def _classify(bundle, path, *overrides) -> int:
    return main(["classify", f"classify.input={path}", f"classify.bundle={bundle}", *overrides])


def test_classify_jsonl(bundle, tmp_path):
    path = tmp_path / "in.jsonl"
    rows = [
        {"id": "a1", "text": "Waar blijft mijn pakket?", "lang": "nl"},
        {"id": 7, "text": "code SAVE10 isn't working"},
        {"id": "a3", "text": "love this product"},
    ]
    path.write_text(
        json.dumps(rows[0]) + "\n\n" + "\n".join(json.dumps(r) for r in rows[1:]) + "\n"
    )
    assert _classify(bundle, path, "classify.id_column=id", "classify.lang_column=lang") == 0
    out = [
        json.loads(line) for line in (tmp_path / "in.predictions.jsonl").read_text().splitlines()
    ]
    assert [(o["line"], o["id"]) for o in out] == [(1, "a1"), (3, "7"), (4, "a3")]
    assert out[0]["lang"] == "nl" and out[1]["lang"] in ("en", "nl")
    expected = Runtime.load(bundle).classify([r["text"] for r in rows], ["nl", None, None])
    assert [o["intent"] for o in out] == [p.intent for p in expected]
    assert {"decision", "action", "priority", "reason", "intent_probs"} <= set(out[0])


def test_classify_csv_to_csv(bundle, tmp_path):
    path = tmp_path / "in.csv"
    path.write_text('message,ref\n"hi, where is my order",r1\n"two\nlines",r2\n', encoding="utf-8")
    out = tmp_path / "out.csv"
    overrides = ["classify.text_column=message", "classify.id_column=ref", f"classify.output={out}"]
    assert _classify(bundle, path, *overrides) == 0
    table = pd.read_csv(out)
    assert table["line"].tolist() == [2, 3] and table["id"].tolist() == ["r1", "r2"]
    assert table["text"].tolist() == ["hi, where is my order", "two\nlines"]
    assert set(json.loads(table["intent_probs"][0])) == set(
        Runtime.load(bundle).heads["intent"].labels
    )


def test_classify_wrong_column_names_it_and_the_columns_found(bundle, tmp_path, capsys):
    path = tmp_path / "in.csv"
    path.write_text("message,ref\nhello,1\n")
    assert _classify(bundle, path) == 1
    err = capsys.readouterr().err
    assert "['text'] not found" in err and "columns found: ['message', 'ref']" in err
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text('{"text": "a"}\n{"body": "b"}\n')
    assert _classify(bundle, jsonl) == 1
    assert (
        f"{jsonl}:2: column(s) ['text'] not found; columns found: ['body']"
        in capsys.readouterr().err
    )


def test_classify_empty_text_names_the_line_or_is_dropped(bundle, tmp_path, capsys):
    path = tmp_path / "in.jsonl"
    path.write_text('{"text": "hello"}\n{"text": "  "}\n{"text": null}\n{"text": "bye"}\n')
    out = tmp_path / "in.predictions.jsonl"
    assert _classify(bundle, path) == 1
    assert f"{path}:2: empty text in column 'text'" in capsys.readouterr().err
    assert not out.exists()  # nothing half-written
    assert _classify(bundle, path, "classify.on_empty=drop") == 0
    assert [json.loads(line)["line"] for line in out.read_text().splitlines()] == [1, 4]


def test_classify_bad_input_files(bundle, tmp_path, capsys):
    assert _classify(bundle, tmp_path / "missing.jsonl") == 1
    assert "file not found" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    assert _classify(bundle, bad) == 1
    assert f"{bad}:2: not UTF-8" in capsys.readouterr().err
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "ok"}\n{"text": \n')
    assert _classify(bundle, broken) == 1
    assert f"{broken}:2: not valid JSON" in capsys.readouterr().err
    assert main(["classify"]) == 1
    assert "classify.input=" in capsys.readouterr().err
