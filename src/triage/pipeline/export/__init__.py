"""Stage `export`: the calibrated checkpoint as one self-contained ONNX bundle.

Reads:  ``{export.checkpoint}`` (the trained transformer), ``{export.calibration}``, the prepared
        splits in ``{data.out_dir}`` (``{export.split}`` for the gates; the other splits' texts
        for the vocabulary trim), the corpus pieces (``{export.vocab.pieces}``, from
        ``triage vocab``), the routing table (``configs/routing``) and, with
        ``export.gate_sets``, real-text sets from ``paths.public_data``.
Writes ``{export.out_dir}`` (``models/onnx``), everything a service needs and nothing else
        (the contract: :mod:`triage.serving.bundle`):
        ``model.onnx``       input_ids, attention_mask -> ``<head>_probs``: encoder, mean pooling,
                             heads, the global temperature per head and softmax, all in the graph,
                             and ``sentence_embedding``, the pooled sentence embedding;
                             the manifest (without file hashes) in its metadata
        ``tokenizer.json``   the tokenizer, without truncation or padding (the runtime sets them)
        ``routing.json``     the routing table
        ``manifest.json``    labels, thresholds (pooled and per language), margin, temperatures,
                             max length, input prefix, encoder, run id, data fingerprints,
                             version, parity and bundle test numbers, file hashes
        ``model_card.md``    the same for people, with the bundle's own test numbers
        ``novelty.npy``      the training messages' embeddings for the far-out rule (with a
                             calibration that has one; k and threshold in the manifest)
       and ``{export.report}`` (``models/export.json``): every gate's numbers, also logged into the
       checkpoint's MLflow run.

Gates, in order: (1) parity: the fp32 graph against PyTorch on the test split (max absolute
difference, top-label agreement, identical threshold decisions); export fails when it breaks.
(2) candidates that shrink the bundle (the trimmed vocabulary, 8-bit storage, dynamic int8, on
the full and the trimmed vocabulary; NNCF's static int8 on the smallest of those two), run on
``export.backend``, are kept only when they stay within ``export.gate`` of the fp32 graph on
the same messages (and on ``export.gate_sets``); the smallest that passes ships.

The parts: :mod:`.graph` (torch -> ONNX, int8), :mod:`.vocab` (the trimmed vocabulary and
``triage vocab``), :mod:`.storage` (8-bit storage with float compute), :mod:`.static` (int8
arithmetic calibrated by NNCF), :mod:`.gates` (parity, the candidates' gate, the bundle's
numbers), :mod:`.manifest` (the manifest and the bundle folder), :mod:`.card` (the model card).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from triage.config import Config, ExportConfig, to_container
from triage.data.splits import label_ids, load_split
from triage.data.texts import source_texts
from triage.errors import ConfigError, GateError
from triage.io import write_json
from triage.modeling.calibration import calibrated_probs, load_calibration, row_thresholds
from triage.modeling.model import load_checkpoint, predict_outputs, read_meta
from triage.modeling.realtext import read_eval_set
from triage.novelty import NoveltySpec
from triage.pipeline.export.gates import bundle_metrics, fmt, gate, parity, parity_failures
from triage.pipeline.export.graph import export_graph, onnx_outputs, quantize
from triage.pipeline.export.manifest import build_manifest, language_temperatures, write_bundle
from triage.pipeline.export.static import static_int8
from triage.pipeline.export.storage import INT4_TAIL, STORAGE, int8_storage
from triage.pipeline.export.vocab import (
    bundle_tokenizer,
    listed_pieces,
    trim_vocabulary,
    trimmed_model,
)
from triage.routing import RoutingTable
from triage.schema import SPLITS
from triage.serving.backends import ONNXRUNTIME, STATIC_INT8, open_session
from triage.serving.bundle import CARD_FILE, MANIFEST_FILE, MODEL_FILE, TOKENIZER_FILE
from triage.serving.runtime import apply_language_temperatures, physical_cores, token_ids
from triage.tracking import add_to_checkpoint_run

log = logging.getLogger(__name__)


def run(cfg: Config) -> Path:
    """Export ``cfg.export.checkpoint`` with its calibration; return the bundle folder."""
    ecfg = cfg.export
    checkpoint, out_dir = Path(ecfg.checkpoint), Path(ecfg.out_dir)
    kind = read_meta(checkpoint).get("kind")
    if kind != "transformer":
        raise ConfigError(
            f"{checkpoint} holds a {kind} model; only transformer checkpoints export: point "
            "export.checkpoint at `triage train`'s folder"
        )
    static = ecfg.static_int8
    if static.enabled and (static.split == ecfg.split or static.split not in SPLITS):
        raise ConfigError(
            f"export.static_int8.split={static.split!r}: name one of {', '.join(SPLITS)} other "
            f"than export.split ({ecfg.split!r}), whose messages the gate judges"
        )
    if static.enabled and static.max_reverted < 1:
        raise ConfigError(
            f"export.static_int8.max_reverted={static.max_reverted}: at least 1 (for no accuracy "
            "control, set export.static_int8.max_drop=1.0)"
        )
    model, hf_tokenizer, meta = load_checkpoint(checkpoint)
    calibration = load_calibration(Path(ecfg.calibration))
    labels = model.labels
    if set(calibration["heads"]) != set(labels):
        raise ConfigError(
            f"{ecfg.calibration} calibrates heads {sorted(calibration['heads'])} but the "
            f"checkpoint has {sorted(labels)}: run `triage calibrate` on this checkpoint first"
        )
    routing = to_container(cfg.routing)
    RoutingTable.from_dict(routing)  # a broken table fails here, not in the service
    unrouted = sorted(set(labels.get("intent", [])) - set(routing["intents"]))
    if unrouted:
        log.warning("routing names no rule for %s: those go to review (routing.default)", unrouted)
    heads_cal = calibration["heads"]
    temperatures = {h: heads_cal[h]["temperature"] for h in labels}
    # (global, per-language) temperatures: the graph applies the first, the runtime the second
    served_temperatures = {
        h: (t, language_temperatures(heads_cal[h])) for h, t in temperatures.items()
    }
    margin = calibration["margin"]
    prefix, max_length = meta["input_prefix"], meta["max_length"]
    tokenizer_json = json.loads((checkpoint / TOKENIZER_FILE).read_text(encoding="utf-8"))
    tokenizer_json["truncation"], tokenizer_json["padding"] = None, None
    pad_id = hf_tokenizer.pad_token_id

    data_dir = Path(cfg.data.out_dir)
    frame = load_split(data_dir, ecfg.split)
    texts, langs = frame["text"].tolist(), frame["lang"].to_numpy()
    targets = label_ids(frame, labels)

    def served(
        session: Any, tok_json: dict, rows: pd.DataFrame = frame
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """A graph session's probabilities on ``rows`` as the runtime serves them
        (per-language temperatures), and its embeddings."""
        probs, embeddings = onnx_outputs(
            session,
            bundle_tokenizer(tok_json),
            rows["text"].tolist(),
            prefix,
            max_length,
            pad_id,
        )
        return apply_language_temperatures(
            probs, rows["lang"].to_numpy(), served_temperatures
        ), embeddings

    # every comparison below is on calibrated probabilities as `evaluate` scores and the
    # runtime serves them: thresholds were chosen on those
    log.info("PyTorch reference on %d %s messages", len(texts), ecfg.split)
    reference_logits, reference_embeddings = predict_outputs(
        model, hf_tokenizer, texts, prefix, max_length
    )
    reference = {h: calibrated_probs(v, langs, heads_cal[h]) for h, v in reference_logits.items()}
    spec = (
        None
        if calibration.get("novelty") is None
        else NoveltySpec.load(calibration["novelty"], Path(ecfg.calibration).parent)
    )

    def served_thresholds(langs: np.ndarray, embeddings: np.ndarray) -> dict[str, np.ndarray]:
        """Per message its language's thresholds, as the runtime applies them; a far-out
        message (by the reference's embedding) is never automatic, as `evaluate` counts it."""
        out = {h: row_thresholds(heads_cal[h], names, langs) for h, names in labels.items()}
        if spec is not None:
            far = spec.far(spec.score(embeddings))
            for table in out.values():
                table[far] = np.inf
        return out

    thresholds = served_thresholds(langs, reference_embeddings)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="triage-export-", dir=out_dir.parent))
    try:
        report: dict[str, Any] = {"split": ecfg.split, "n": len(texts), "candidates": {}}
        fp32 = work / "fp32.onnx"
        log.info("exporting the fp32 graph (opset %d)", ecfg.opset)
        export_graph(model, temperatures, pad_id, fp32, ecfg.opset)
        fp32_session = open_session(fp32, ONNXRUNTIME, physical_cores())
        exported, exported_embeddings = served(fp32_session, tokenizer_json)
        report["parity"] = parity(reference, exported, thresholds, margin)
        broken = parity_failures(report["parity"], ecfg.parity_atol)
        if broken:
            raise GateError(
                "parity gate failed: the ONNX graph does not reproduce PyTorch on the "
                f"{ecfg.split} split ({'; '.join(broken)}); the bundle was not written"
            )
        log.info("parity gate passed: %s", fmt(report["parity"]))

        chosen = {"path": fp32, "quantization": "none", "vocab_trimmed": False}
        chosen["backend"] = ONNXRUNTIME
        chosen["tokenizer"], chosen["probs"] = tokenizer_json, exported
        chosen["embeddings"] = exported_embeddings
        graphs = [("", fp32, tokenizer_json, False)]
        tail_from = None  # where the trimmed vocabulary's rare tail starts, if it has one
        if ecfg.trim_vocab:
            corpus = [
                t
                for split in SPLITS
                if split != ecfg.split and (data_dir / f"{split}.parquet").is_file()
                for t in load_split(data_dir, split)["text"]
            ]
            trimmed_json, keep, head = trim_vocabulary(
                tokenizer_json,
                corpus,
                prefix,
                listed_pieces(Path(ecfg.vocab.pieces)),
                ecfg.vocab.keep_latin,
            )
            if bundle_tokenizer(trimmed_json).token_to_id(hf_tokenizer.pad_token) != pad_id:
                raise ConfigError(
                    "the trimmed vocabulary moves the pad token; set export.trim_vocab=false"
                )
            log.info(
                "vocabulary: %d of %d pieces kept (%d of them for the corpus)",
                len(keep),
                hf_tokenizer.vocab_size,
                head,
            )
            report["vocab_kept"] = len(keep)
            tail_from = head if head < len(keep) else None
            trimmed = work / "trimmed.onnx"
            export_graph(trimmed_model(model, keep), temperatures, pad_id, trimmed, ecfg.opset)
            graphs.append(("trimmed", trimmed, trimmed_json, True))
        candidates = smaller_graphs(graphs, work, ecfg, tail_from)
        if static.enabled:
            candidate, report["static_int8"] = static_candidate(
                cfg, graphs[-1], work, prefix, max_length, pad_id
            )
            candidates.append(candidate)
        sets = {name: eval_set(cfg, name, labels) for name in ecfg.gate_sets}
        set_reference = {
            name: served(fp32_session, tokenizer_json, rows) for name, rows in sets.items()
        }
        set_thresholds = {
            name: served_thresholds(sets[name]["lang"].to_numpy(), embeddings)
            for name, (_, embeddings) in set_reference.items()
        }
        for name, path, tok_json, quant, trim in candidates:
            candidate_session = open_session(path, ecfg.backend, physical_cores(), quant)
            probs, embeddings = served(candidate_session, tok_json)
            numbers, reasons = gate(
                exported, probs, targets, labels, ecfg.gate, ecfg.n_bins, thresholds, margin
            )
            for set_name, set_frame in sets.items():
                set_numbers, set_reasons = gate(
                    set_reference[set_name][0],
                    served(candidate_session, tok_json, set_frame)[0],
                    label_ids(set_frame, labels),
                    labels,
                    ecfg.gate,
                    ecfg.n_bins,
                    set_thresholds[set_name],
                    margin,
                )
                numbers.update({f"{set_name}/{k}": v for k, v in set_numbers.items()})
                reasons += [f"{set_name}: {r}" for r in set_reasons]
            size = path.stat().st_size
            report["candidates"][name] = {
                **numbers,
                "bytes": size,
                "backend": ecfg.backend,
                "passed": not reasons,
                "why": "; ".join(reasons) or "within every limit",
            }
            verdict = "kept" if not reasons else "rejected: " + "; ".join(reasons)
            log.info("%s (%.0f MB): %s, %s", name, size / 1e6, fmt(numbers), verdict)
            if not reasons and size <= chosen["path"].stat().st_size:
                chosen = {"path": path, "quantization": quant, "vocab_trimmed": trim}
                chosen["backend"] = ecfg.backend
                chosen["tokenizer"], chosen["probs"] = tok_json, probs
                chosen["embeddings"] = embeddings
        report["chosen"] = {k: chosen[k] for k in ("quantization", "vocab_trimmed", "backend")}
        report["bundle_test"] = bundle_metrics(
            chosen["probs"], targets, langs, labels, thresholds, margin, ecfg.n_bins
        )
        if spec is not None:
            report["novelty"] = novelty_report(
                spec, calibration["novelty"], reference_embeddings, chosen["embeddings"]
            )
            log.info("novelty: %s", fmt(report["novelty"]))
        report["real_text"] = real_text_metrics(Path(cfg.evaluate.out_dir) / "metrics.json")
        manifest = build_manifest(cfg, meta, checkpoint, calibration, chosen, report, pad_id)
        manifest = write_bundle(out_dir, chosen, manifest, routing, report, spec)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    write_json(Path(ecfg.report), report)
    add_to_checkpoint_run(
        cfg.tracking,
        Path(cfg.paths.root),
        checkpoint,
        {f"export/{k}": v for k, v in _numbers(report).items()},
        [
            (Path(ecfg.report), "export"),
            (out_dir / MANIFEST_FILE, "export"),
            (out_dir / CARD_FILE, "export"),
        ],
    )
    log.info(
        "bundle %s: %s, %.0f MB, version %s",
        out_dir,
        manifest.quantization + (" + trimmed vocabulary" if manifest.vocab_trimmed else ""),
        manifest.files[MODEL_FILE]["bytes"] / 1e6,
        manifest.model_version,
    )
    return out_dir


def smaller_graphs(
    graphs: list[tuple[str, Path, dict, bool]],
    work: Path,
    ecfg: ExportConfig,
    tail_from: int | None,
) -> list[tuple[str, Path, dict, str, bool]]:
    """The candidates the gate judges, as (name, graph, tokenizer, quantization, vocabulary
    trimmed): per base graph (``""`` for fp32, ``trimmed``) the base itself (the fp32 one only
    on a backend other than onnxruntime, where it is not the reference), its low-bit storage
    variants (``export.int8_storage``: int8 embeddings, int8 weights, and for a trimmed graph
    whose vocabulary has a rare tail from row ``tail_from`` on, that tail in 4 bits) and dynamic
    int8 (``export.quantize``), written in ``work``."""
    out = []
    for base, path, tok_json, trim in graphs:
        if base or ecfg.backend != ONNXRUNTIME:
            out.append((base or "fp32", path, tok_json, "none", trim))
        storage = list(STORAGE) + ([INT4_TAIL] if trim and tail_from is not None else [])
        variants = (storage if ecfg.int8_storage else []) + ["int8"] * ecfg.quantize
        for quant in variants:
            name = f"{base}_{quant}".lstrip("_")
            graph = work / f"{name}.onnx"
            if quant == "int8":
                quantize(path, graph)
            else:
                tail = tail_from if quant == INT4_TAIL else None
                int8_storage(path, graph, weights=quant != "int8_embedding", tail_from=tail)
            out.append((name, graph, tok_json, quant, trim))
    return out


def static_candidate(
    cfg: Config,
    base: tuple[str, Path, dict, bool],
    work: Path,
    prefix: str,
    max_length: int,
    pad_id: int,
) -> tuple[tuple[str, Path, dict, str, bool], dict[str, float]]:
    """The int8-compute candidate (:mod:`.static`) of one base graph (name, graph, tokenizer,
    vocabulary trimmed), with int8 word embeddings, as :func:`smaller_graphs` lists candidates;
    and what it took (messages, MatMuls left in float, validation agreement, seconds)."""
    ecfg, data_dir = cfg.export, Path(cfg.data.out_dir)
    scfg = ecfg.static_int8
    base_name, path, tok_json, trim = base
    tokenizer = bundle_tokenizer(tok_json)
    tokenizer.enable_truncation(max_length)
    train = load_split(data_dir, "train")["text"]
    calibration = train.sample(min(scfg.calibration_messages, len(train)), random_state=0)
    calibration_texts = calibration.tolist()
    validation_texts = load_split(data_dir, scfg.split)["text"].tolist()
    corpus = to_container(ecfg.vocab.corpus)
    for source in scfg.real_text:
        if source not in corpus:
            raise ConfigError(
                f"export.static_int8.real_text names {source!r}, not among export.vocab.corpus"
            )
        texts = source_texts(
            {source: corpus[source]},
            Path(cfg.paths.root),
            Path(cfg.paths.public_data),
            max_rows=2 * scfg.real_text_messages,
            where="export.static_int8.real_text",
        )
        calibration_texts += texts[::2]
        validation_texts += texts[1::2]
    name = f"{base_name}_{STATIC_INT8}".lstrip("_")
    embedding_int8, graph = work / f"{name}_embedding.onnx", work / f"{name}.onnx"
    int8_storage(path, embedding_int8, weights=False)
    log.info(
        "%s: NNCF int8, ranges from %d messages, accuracy control on %d",
        name,
        len(calibration_texts),
        len(validation_texts),
    )
    started = time.monotonic()
    outcome = static_int8(
        embedding_int8,
        graph,
        token_ids(tokenizer, calibration_texts, prefix),
        token_ids(tokenizer, validation_texts, prefix),
        pad_id,
        ecfg.backend,
        scfg.max_drop,
        scfg.max_reverted,
        physical_cores(),
    )
    took = {
        "calibration_messages": float(len(calibration_texts)),
        "validation_messages": float(len(validation_texts)),
        **outcome,
        "seconds": time.monotonic() - started,
    }
    log.info("%s: %s", name, fmt(took))
    return (name, graph, tok_json, STATIC_INT8, trim), took


def eval_set(cfg: Config, name: str, labels: dict[str, list[str]]) -> pd.DataFrame:
    """One of ``evaluate.sets`` (real text) as rows with ``text``, ``lang`` and labels."""
    return read_eval_set(
        name,
        to_container(cfg.evaluate.sets),
        labels,
        Path(cfg.paths.root),
        Path(cfg.paths.public_data),
    )


def real_text_metrics(evaluation: Path) -> dict[str, float]:
    """The checkpoint's numbers on real text (``evaluate.extra``) from its evaluation, for the
    model card; empty when it was evaluated without extra sets (or not yet)."""
    if not evaluation.is_file():
        return {}
    metrics = json.loads(evaluation.read_text(encoding="utf-8"))
    return {k: v for k, v in metrics.items() if k.startswith("extra/")}


def _numbers(report: dict) -> dict[str, float]:
    """The report's numbers flattened for MLflow."""
    out = {f"parity/{k}": v for k, v in report["parity"].items()}
    out.update({f"bundle_test/{k}": v for k, v in report["bundle_test"].items()})
    out.update({f"novelty/{k}": v for k, v in report.get("novelty", {}).items()})
    out.update({f"static_int8/{k}": v for k, v in report.get("static_int8", {}).items()})
    for name, result in report["candidates"].items():
        out.update(
            {
                f"{name}/{k}": float(v)
                for k, v in result.items()
                if isinstance(v, (int, float)) and k != "why"
            }
        )
    return out


def novelty_report(
    spec: NoveltySpec, entry: dict, reference: np.ndarray, bundled: np.ndarray
) -> dict[str, float]:
    """The far-out rule on the gate's messages: the share far out by PyTorch's embeddings and
    by the bundle's, and how often the two agree (a lower-precision graph moves embeddings)."""
    far_reference, far_bundle = spec.far(spec.score(reference)), spec.far(spec.score(bundled))
    return {
        "k": float(spec.k),
        "threshold": spec.threshold,
        "quantile": float(entry["quantile"]),
        "n_bank": float(len(spec.bank)),
        "far_share_pytorch": float(far_reference.mean()),
        "far_share_bundle": float(far_bundle.mean()),
        "far_agreement": float((far_reference == far_bundle).mean()),
    }
