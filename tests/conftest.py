"""Shared fixtures: the project root, composed configs and small data files."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PUBLIC_DATA = Path(os.environ.get("TRIAGE_DATA_ROOT", ROOT.parent / "shared" / "data"))

# Tests never reach a hub: fail fast instead of waiting on the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


# Fixtures that train, convert or export a real model (seconds to minutes each): a test that
# uses one, directly or through another fixture, is `slow`, left out of `make test-fast`.
SLOW_FIXTURES = {"pipeline", "converted", "tiny_sweep"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


needs_public_data = pytest.mark.skipif(
    not PUBLIC_DATA.is_dir(), reason=f"public data not found at {PUBLIC_DATA}"
)


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory, root) -> Path:
    """A random-initialised 2-layer BERT (hidden 32) with a WordPiece tokenizer trained on the
    authored texts: the real model code paths in milliseconds, no download, no conversion."""
    import json

    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    out = tmp_path_factory.mktemp("tiny-encoder")
    texts = [
        json.loads(line)["text"]
        for path in sorted((root / "data" / "authored").glob("*.jsonl"))
        for line in path.read_text(encoding="utf-8").splitlines()
    ]
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(
        texts, trainers.WordPieceTrainer(vocab_size=2000, special_tokens=specials)
    )
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    fast.save_pretrained(str(out))
    config = BertConfig(
        vocab_size=len(fast),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=130,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    BertModel(config, add_pooling_layer=False).save_pretrained(str(out))
    return out


@pytest.fixture(scope="session")
def pipeline(root, tiny_encoder, tmp_path_factory):
    """prepare, train (3 epochs), the baseline, calibrate and evaluate both, into one tmp folder
    and one MLflow store; returns (config, folder, MLflow client)."""
    import mlflow

    from triage.config import load_config
    from triage.pipeline.baseline import run as baseline
    from triage.pipeline.calibrate import run as calibrate
    from triage.pipeline.evaluate import run as evaluate
    from triage.pipeline.prepare import run as prepare
    from triage.pipeline.train import run as train

    tmp = tmp_path_factory.mktemp("pipeline")
    uri = f"sqlite:///{tmp}/mlflow.db"
    cfg = load_config(
        [
            f"data.out_dir={tmp}/data",
            f"model.encoder={tiny_encoder}",
            f"train.out_dir={tmp}/ckpt",
            "train.epochs=3",
            "train.lr=1e-3",
            "train.freeze_embeddings=false",
            "train.patience=3",
            "model.max_length=48",
            f"tracking.uri={uri}",
            "tracking.run_name=t",
            f"baseline.out_dir={tmp}/baseline/checkpoint",
            f"calibrate.out_file={tmp}/calibration.json",
            "calibrate.min_decisions=10",
            f"evaluate.out_dir={tmp}/evaluation",
            f"evaluate.compare_with={tmp}/baseline/evaluation/metrics.json",
            "evaluate.bootstrap=50",
        ],
        root=root,
    )
    prepare(cfg)
    train(cfg)
    # the baseline through the same calibrate and evaluate stages
    baseline(cfg)
    base = copy.deepcopy(cfg)
    base.calibrate.checkpoint = base.evaluate.checkpoint = f"{tmp}/baseline/checkpoint"
    base.calibrate.out_file = base.evaluate.calibration = f"{tmp}/baseline/calibration.json"
    base.evaluate.out_dir = f"{tmp}/baseline/evaluation"
    calibrate(base)
    evaluate(base)
    calibrate(cfg)
    evaluate(cfg)
    return cfg, tmp, mlflow.MlflowClient(uri)


@pytest.fixture(scope="session")
def bundle(pipeline) -> Path:
    """The `pipeline` checkpoint exported by `triage export` into ``<tmp>/onnx``: fp32 (the
    vocabulary trim and 8-bit storage are off here, so that the bundle reproduces PyTorch to
    1e-4: tests/serving/test_backends.py holds those to the gate instead; int8 is off too: the
    tiny model sometimes passes its gate, and a dynamically quantised graph's probabilities
    depend on the other messages in the batch; ``<tmp>/export.json`` has the gates). The
    PyTorch reference for the same messages: ``<tmp>/evaluation/predictions.parquet``
    (``<head>_probs``, calibrated, and ``<head>_decision``) from the evaluate stage, on the
    test split."""
    from triage.pipeline.export import run as export

    cfg, tmp, _ = pipeline
    cfg = copy.deepcopy(cfg)
    cfg.export.out_dir = f"{tmp}/onnx"
    cfg.export.report = f"{tmp}/export.json"
    cfg.export.quantize = cfg.export.int8_storage = cfg.export.trim_vocab = False
    return export(cfg)


@pytest.fixture(scope="session")
def eager_bundle(bundle, tmp_path_factory) -> Path:
    """The tiny bundle with every intent threshold at 0.0, so that it decides automatically
    wherever the routing allows (the tiny model is never confident enough to reach its own
    thresholds): for the tests of what stops automation. Only manifest.json differs."""
    import json
    import shutil

    eager = tmp_path_factory.mktemp("eager") / "onnx"
    shutil.copytree(bundle, eager)
    manifest = json.loads((eager / "manifest.json").read_text(encoding="utf-8"))
    head = manifest["heads"]["intent"]
    head["thresholds"] = dict.fromkeys(head["labels"], 0.0)
    head["language_thresholds"] = {lang: head["thresholds"] for lang in head["language_thresholds"]}
    (eager / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return eager


@pytest.fixture(scope="session")
def automated_texts(eager_bundle, pipeline) -> list[str]:
    """Up to three test messages the eager bundle decides automatically, and one it does not."""
    import pandas as pd

    from triage.serving.runtime import Runtime

    _, tmp, _ = pipeline
    texts = pd.read_parquet(f"{tmp}/data/test.parquet")["text"].tolist()
    decisions = [p.decision for p in Runtime.load(eager_bundle).classify(texts)]
    auto = [t for t, d in zip(texts, decisions, strict=True) if d == "auto"]
    review = [t for t, d in zip(texts, decisions, strict=True) if d == "review"]
    assert auto and review, "the eager bundle automates all or none of the test messages"
    return [*auto[:3], review[0]]
