"""The bundle's manifest from the checkpoint and its calibration, and the bundle folder written
whole (its contract: :mod:`triage.serving.bundle`)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import numpy as np
import onnx

from triage.config import Config
from triage.io import atomic_folder, sha256_file
from triage.novelty import NoveltySpec, save_bank
from triage.pipeline.export.card import model_card
from triage.schema import SPLITS
from triage.serving.bundle import (
    CARD_FILE,
    FORMAT,
    MODEL_FILE,
    NOVELTY_FILE,
    ROUTING_FILE,
    TOKENIZER_FILE,
    HeadSpec,
    Manifest,
    write_manifest,
)
from triage.tracking import fingerprint, read_run_id


def language_temperatures(fit: dict) -> dict[str, float]:
    """The languages of a head's calibration (``calibration.json``) that kept their own
    temperature, and that temperature."""
    return {lang: v["temperature"] for lang, v in fit.get("languages", {}).items() if v["own"]}


def served_thresholds(table: dict) -> dict[str, float | None]:
    """A calibration threshold table as the manifest holds it (never automatic: null)."""
    return {
        label: None if math.isinf(v["threshold"]) else v["threshold"] for label, v in table.items()
    }


def build_manifest(
    cfg: Config,
    meta: dict,
    checkpoint: Path,
    calibration: dict,
    chosen: dict,
    report: dict,
    pad_id: int,
) -> Manifest:
    """What the bundle is and how it was made (the file hashes are added when written)."""
    run_id = read_run_id(checkpoint)
    digest = sha256_file(chosen["path"])
    heads = {}
    for head, names in meta["labels"].items():
        fit = calibration["heads"][head]
        heads[head] = HeadSpec(
            name=head,
            labels=names,
            thresholds=served_thresholds(fit["thresholds"]),
            language_thresholds={
                lang: served_thresholds(table)
                for lang, table in fit.get("language_thresholds", {}).items()
            },
            temperature=fit["temperature"],
            language_temperatures=language_temperatures(fit),
        )
    data_dir = Path(cfg.data.out_dir)
    return Manifest(
        format=FORMAT,
        package_version=version("social-triage"),
        model_version=f"{(run_id or 'local')[:8]}-{digest[:8]}",
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        encoder=meta["encoder"],
        data=meta.get("data"),
        languages=list(cfg.data.languages),
        run_id=run_id,
        input_prefix=meta["input_prefix"],
        max_length=meta["max_length"],
        pad_token_id=pad_id,
        quantization=chosen["quantization"],
        backend=chosen["backend"],
        vocab_trimmed=chosen["vocab_trimmed"],
        fpr_target=calibration["fpr_target"],
        margin=calibration["margin"],
        heads=heads,
        data_fingerprints={
            split: fingerprint(data_dir / f"{split}.parquet")
            for split in SPLITS
            if (data_dir / f"{split}.parquet").is_file()
        },
        parity=report["parity"],
        bundle_test=report["bundle_test"],
        novelty=None
        if "novelty" not in report
        else {k: report["novelty"][k] for k in ("k", "threshold", "quantile", "n_bank")},
    )


def write_bundle(
    out_dir: Path,
    chosen: dict,
    manifest: Manifest,
    routing: dict,
    report: dict,
    novelty: NoveltySpec | None,
) -> Manifest:
    """Write the bundle folder atomically: a reader sees the old bundle or the new one.

    Returns:
        The manifest as written, with the files' sizes and hashes.
    """
    with atomic_folder(out_dir) as tmp:
        model = onnx.load(str(chosen["path"]))
        del model.metadata_props[:]
        onnx.helper.set_model_props(
            model, {"manifest": json.dumps(manifest.to_dict(), ensure_ascii=False)}
        )
        onnx.save(model, str(tmp / MODEL_FILE))
        (tmp / TOKENIZER_FILE).write_text(
            json.dumps(chosen["tokenizer"], ensure_ascii=False), encoding="utf-8"
        )
        (tmp / ROUTING_FILE).write_text(
            json.dumps(routing, indent=2, ensure_ascii=False) + "\n",
            encoding="utf-8",
        )
        (tmp / CARD_FILE).write_text(model_card(manifest, report), encoding="utf-8")
        if novelty is not None:
            save_bank(tmp / NOVELTY_FILE, novelty.bank.astype(np.float16))  # as calibrate wrote it
        manifest = manifest.with_files(tmp)
        write_manifest(tmp, manifest)
    return manifest
