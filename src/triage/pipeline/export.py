"""Stage `export`: the calibrated checkpoint as one self-contained ONNX bundle.

Reads:  ``{export.checkpoint}`` (the trained transformer), ``{export.calibration}``, the prepared
        splits in ``{data.out_dir}`` (``{export.split}`` for the gates; the other splits' texts
        for the vocabulary trim) and the routing table (``configs/routing``).
Writes ``{export.out_dir}`` (``models/onnx``), everything a service needs and nothing else:
        ``model.onnx``       input_ids, attention_mask -> ``<head>_probs``: encoder, mean pooling,
                             heads, the global temperature per head and softmax, all in the graph;
                             the manifest (without file hashes) in its metadata
        ``tokenizer.json``   the tokenizer, without truncation or padding (the runtime sets them)
        ``routing.json``     the routing table
        ``manifest.json``    labels, thresholds (pooled and per language), margin, temperatures,
                             max length, input prefix, encoder, run id, data fingerprints,
                             version, gates, file hashes
        ``model_card.md``    the same for people, with the bundle's own test numbers
       and ``{export.report}`` (``models/export.json``): every gate's numbers, also logged into the
       checkpoint's MLflow run.

Gates, in order: (1) parity: the fp32 graph against PyTorch on the test split (max absolute
difference, top-label agreement, identical threshold decisions); export fails when it breaks.
(2) candidates that shrink the bundle (int8 dynamic quantisation, the trimmed vocabulary, both)
are kept only when they stay within ``export.gate`` of the fp32 graph on the same messages.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import shutil
import tempfile
import unicodedata
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from omegaconf import DictConfig
from tokenizers import Tokenizer

from triage.config import to_container
from triage.data.splits import label_ids, load_split
from triage.io import atomic_folder, sha256_file, write_json
from triage.modeling.calibration import calibrated_probs, load_calibration, row_thresholds
from triage.modeling.metrics import automation_report, coverage_at, ece, per_class, summary
from triage.modeling.model import TriageModel, load_checkpoint, predict_logits, read_meta
from triage.routing import RoutingTable
from triage.schema import MISSING_LABEL
from triage.serving.runtime import FORMAT, apply_language_temperatures, graph_probs
from triage.tracking import add_to_checkpoint_run, fingerprint, read_run_id

log = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
ROUTING_FILE = "routing.json"
MANIFEST_FILE = "manifest.json"
CARD_FILE = "model_card.md"
SPLITS = ("train", "val", "calib", "test")


class ProbabilityGraph(torch.nn.Module):
    """What the ONNX file computes: calibrated probabilities per head, in label order."""

    def __init__(self, model: TriageModel, temperatures: dict[str, float]):
        super().__init__()
        self.model = model.eval()
        self.heads = list(model.labels)
        for head in self.heads:
            self.register_buffer(f"temperature_{head}", torch.tensor(float(temperatures[head])))

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        logits = self.model(input_ids, attention_mask)
        return tuple(
            torch.softmax(logits[h].float() / getattr(self, f"temperature_{h}"), dim=-1)
            for h in self.heads
        )


def export_graph(
    model: TriageModel, temperatures: dict[str, float], pad_id: int, path: Path, opset: int
) -> None:
    """Write the probability graph to ``path`` with fixed names and dynamic batch/sequence."""
    graph = ProbabilityGraph(model, temperatures)
    # two rows of different lengths, so neither axis is specialised to a constant
    ids = torch.tensor([[0, 5, 6, 7, 2], [0, 8, 2, pad_id, pad_id]], dtype=torch.long)
    mask = (ids != pad_id).long()
    mask[:, 0] = 1
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    torch.onnx.export(
        graph,
        (ids, mask),
        str(path),
        input_names=["input_ids", "attention_mask"],
        output_names=[f"{head}_probs" for head in graph.heads],
        dynamic_shapes={
            "input_ids": {0: batch, 1: sequence},
            "attention_mask": {0: batch, 1: sequence},
        },
        opset_version=opset,
        dynamo=True,
        external_data=False,
    )


def bundle_tokenizer(tokenizer_json: dict) -> Tokenizer:
    """A ``tokenizers`` tokenizer from its JSON, with truncation and padding off."""
    tokenizer = Tokenizer.from_str(json.dumps(tokenizer_json))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def onnx_probs(
    session: ort.InferenceSession,
    tokenizer: Tokenizer,
    texts: Sequence[str],
    prefix: str,
    max_length: int,
    pad_id: int,
    batch_size: int = 64,
) -> dict[str, np.ndarray]:
    """The graph's probabilities per head for ``texts`` (in order), run as the runtime runs it."""
    tokenizer = copy.deepcopy(tokenizer)
    tokenizer.enable_truncation(max_length)
    return graph_probs(session, tokenizer, texts, prefix, pad_id, batch_size)


def session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def decisions(probs: np.ndarray, thresholds: np.ndarray, margin: float) -> np.ndarray:
    """Which rows a head decides automatically (see :func:`triage.modeling.metrics.coverage_at`)."""
    return coverage_at(probs, thresholds, margin)


def parity(
    reference: dict[str, np.ndarray],
    candidate: dict[str, np.ndarray],
    thresholds: dict[str, np.ndarray],
    margin: float,
) -> dict[str, float]:
    """How far the exported graph is from PyTorch, per head: max absolute difference,
    top-label agreement and the number of rows whose threshold decision differs."""
    out: dict[str, float] = {}
    for head, ref in reference.items():
        cand = candidate[head]
        out[f"{head}/max_abs_diff"] = float(np.abs(ref - cand).max())
        out[f"{head}/top1_agreement"] = float((ref.argmax(1) == cand.argmax(1)).mean())
        out[f"{head}/decision_mismatches"] = float(
            (
                decisions(ref, thresholds[head], margin)
                != decisions(cand, thresholds[head], margin)
            ).sum()
        )
    return out


def quality(probs: np.ndarray, y: np.ndarray, labels: list[str], n_bins: int) -> dict[str, Any]:
    """Macro-F1, per-class one-vs-rest FPR and ECE on the labelled rows."""
    known = y != MISSING_LABEL
    p, t = probs[known], y[known]
    return {
        "macro_f1": summary(t, p.argmax(1), labels)["macro_f1"],
        "fpr": per_class(t, p.argmax(1), len(labels))["fpr"],
        "ece": ece(p, t, n_bins),
    }


def gate(
    reference: dict[str, np.ndarray],
    candidate: dict[str, np.ndarray],
    targets: dict[str, np.ndarray],
    labels: dict[str, list[str]],
    limits: DictConfig,
    n_bins: int,
) -> tuple[dict[str, float], list[str]]:
    """A smaller bundle against the fp32 graph on the same messages.

    Returns:
        The numbers per head (``{head}/top1_agreement``, ``macro_f1_drop``, ``fpr_rise_max``,
        ``ece_rise``; drops and rises in points of 1.0) and the reasons it fails (empty: pass).
    """
    numbers: dict[str, float] = {}
    reasons: list[str] = []
    for head, names in labels.items():
        ref = quality(reference[head], targets[head], names, n_bins)
        cand = quality(candidate[head], targets[head], names, n_bins)
        rise = cand["fpr"] - ref["fpr"]
        checks = {
            "top1_agreement": (
                float((reference[head].argmax(1) == candidate[head].argmax(1)).mean()),
                lambda v: v >= limits.top1_agreement,
            ),
            "macro_f1_drop": (
                ref["macro_f1"] - cand["macro_f1"],
                lambda v: v <= limits.macro_f1_drop,
            ),
            "fpr_rise_max": (float(rise.max()), lambda v: v <= limits.fpr_rise),
            "ece_rise": (cand["ece"] - ref["ece"], lambda v: v <= limits.ece_rise),
        }
        for name, (value, ok) in checks.items():
            numbers[f"{head}/{name}"] = value
            if not ok(value):
                worst = f" ({names[int(rise.argmax())]})" if name == "fpr_rise_max" else ""
                reasons.append(f"{head} {name} {value:.4f}{worst} beyond the limit")
    return numbers, reasons


def latin_piece(piece: str) -> bool:
    """True when every letter of a vocabulary piece is Latin (digits, punctuation, symbols,
    emoji and combining marks count as any script's)."""
    return all(
        not unicodedata.category(c).startswith("L") or "LATIN" in unicodedata.name(c, "")
        for c in piece
    )


def trim_vocabulary(
    tokenizer_json: dict, texts: Iterable[str], prefix: str
) -> tuple[dict, np.ndarray]:
    """Keep the vocabulary pieces whose letters are all Latin, every single character, the
    specials and whatever else ``texts`` use.

    A subword tokenizer can only use pieces that occur in the text, so a Dutch or English
    message (Latin letters, digits, punctuation, emoji) is tokenised exactly as before; a
    message in another script falls back to single characters.

    Returns:
        The trimmed tokenizer JSON and the kept old ids in new-id order (the rows of the
        embedding matrix to keep). Kept pieces keep their relative order, so the special tokens
        at the front keep their ids.

    Raises:
        ValueError: a tokenizer model or post-processor this function does not know.
    """
    model = tokenizer_json["model"]
    if model["type"] == "Unigram":
        pieces = [piece for piece, _ in model["vocab"]]
    elif model["type"] == "WordPiece":
        pieces = [""] * len(model["vocab"])
        for piece, i in model["vocab"].items():
            pieces[i] = piece
    else:
        raise ValueError(f"cannot trim a {model['type']} vocabulary; set export.trim_vocab=false")
    tokenizer = bundle_tokenizer(tokenizer_json)
    used: set[int] = {t["id"] for t in tokenizer_json["added_tokens"]}
    for chunk in _chunks(list(texts), 2048):
        for encoding in tokenizer.encode_batch([prefix + t for t in chunk]):
            used.update(encoding.ids)
    used.update(
        i
        for i, p in enumerate(pieces)
        if latin_piece(p) or len(p.removeprefix("▁").removeprefix("##")) <= 1
    )
    keep = np.array(sorted(used))
    new_id = {int(old): new for new, old in enumerate(keep)}
    out = copy.deepcopy(tokenizer_json)
    if model["type"] == "Unigram":
        out["model"]["vocab"] = [model["vocab"][i] for i in keep]
        if model.get("unk_id") is not None:
            out["model"]["unk_id"] = new_id[model["unk_id"]]
    else:
        out["model"]["vocab"] = {pieces[i]: new_id[int(i)] for i in keep}
    for token in out["added_tokens"]:
        token["id"] = new_id[token["id"]]
    post = out.get("post_processor") or {}
    if post.get("type") == "TemplateProcessing":
        for special in post["special_tokens"].values():
            special["ids"] = [new_id[i] for i in special["ids"]]
    elif post.get("type") in ("RobertaProcessing", "BertProcessing"):
        for key in ("sep", "cls"):
            post[key] = [post[key][0], new_id[post[key][1]]]
    elif post:
        raise ValueError(f"cannot trim with a {post['type']} post-processor")
    return out, keep


def _chunks(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def trimmed_model(model: TriageModel, keep: np.ndarray) -> TriageModel:
    """A copy of ``model`` whose word-embedding matrix has only the ``keep`` rows."""
    small = copy.deepcopy(model)
    weight = small.encoder.get_input_embeddings().weight.detach()[torch.as_tensor(keep)]
    small.encoder.set_input_embeddings(torch.nn.Embedding.from_pretrained(weight, freeze=True))
    small.encoder.config.vocab_size = len(keep)
    return small


def quantize(fp32: Path, out: Path) -> None:
    """Dynamic int8 quantisation of the weights (MatMul and Gather) with onnxruntime."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quiet = logging.getLogger().level
    logging.getLogger().setLevel(logging.WARNING)  # it logs every tensor at INFO
    try:
        quantize_dynamic(str(fp32), str(out), weight_type=QuantType.QInt8, per_channel=True)
    finally:
        logging.getLogger().setLevel(quiet)


def run(cfg: DictConfig) -> Path:
    """Export ``cfg.export.checkpoint`` with its calibration; return the bundle folder."""
    ecfg = cfg.export
    checkpoint, out_dir = Path(ecfg.checkpoint), Path(ecfg.out_dir)
    kind = read_meta(checkpoint).get("kind")
    if kind != "transformer":
        raise ValueError(
            f"{checkpoint} holds a {kind} model; only transformer checkpoints export: point "
            "export.checkpoint at `triage train`'s folder"
        )
    model, hf_tokenizer, meta = load_checkpoint(checkpoint)
    calibration = load_calibration(Path(ecfg.calibration))
    labels = model.labels
    if set(calibration["heads"]) != set(labels):
        raise ValueError(
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
    # per message: its language's thresholds, as the runtime applies them
    thresholds = {h: row_thresholds(heads_cal[h], names, langs) for h, names in labels.items()}

    def served(path: Path, tok_json: dict) -> dict[str, np.ndarray]:
        """A graph's probabilities as the runtime serves them (per-language temperatures)."""
        probs = onnx_probs(
            session(path), bundle_tokenizer(tok_json), texts, prefix, max_length, pad_id
        )
        return apply_language_temperatures(probs, langs, served_temperatures)

    # every comparison below is on calibrated probabilities as `evaluate` scores and the
    # runtime serves them: thresholds were chosen on those
    log.info("PyTorch reference on %d %s messages", len(texts), ecfg.split)
    reference = {
        h: calibrated_probs(v, langs, heads_cal[h])
        for h, v in predict_logits(model, hf_tokenizer, texts, prefix, max_length).items()
    }

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="triage-export-", dir=out_dir.parent))
    try:
        report: dict[str, Any] = {"split": ecfg.split, "n": len(texts), "candidates": {}}
        fp32 = work / "fp32.onnx"
        log.info("exporting the fp32 graph (opset %d)", ecfg.opset)
        export_graph(model, temperatures, pad_id, fp32, ecfg.opset)
        exported = served(fp32, tokenizer_json)
        report["parity"] = parity(reference, exported, thresholds, margin)
        broken = [
            f"{k} = {v:g}"
            for k, v in report["parity"].items()
            if (k.endswith("max_abs_diff") and v > ecfg.parity_atol)
            or (k.endswith("top1_agreement") and v < 1.0)
            or (k.endswith("decision_mismatches") and v > 0)
        ]
        if broken:
            raise RuntimeError(
                "parity gate failed: the ONNX graph does not reproduce PyTorch on the "
                f"{ecfg.split} split ({'; '.join(broken)}); the bundle was not written"
            )
        log.info("parity gate passed: %s", _fmt(report["parity"]))

        chosen = {"path": fp32, "quantization": "none", "vocab_trimmed": False}
        chosen["tokenizer"], chosen["probs"] = tokenizer_json, exported
        candidates = []
        if ecfg.trim_vocab:
            corpus = [
                t
                for split in SPLITS
                if split != ecfg.split and (data_dir / f"{split}.parquet").is_file()
                for t in load_split(data_dir, split)["text"]
            ]
            trimmed_json, keep = trim_vocabulary(tokenizer_json, corpus, prefix)
            if bundle_tokenizer(trimmed_json).token_to_id(hf_tokenizer.pad_token) != pad_id:
                raise ValueError(
                    "the trimmed vocabulary moves the pad token; set export.trim_vocab=false"
                )
            log.info("vocabulary: %d of %d pieces kept", len(keep), hf_tokenizer.vocab_size)
            report["vocab_kept"] = len(keep)
            trimmed = work / "trimmed.onnx"
            export_graph(trimmed_model(model, keep), temperatures, pad_id, trimmed, ecfg.opset)
            candidates.append(("trimmed", trimmed, trimmed_json, "none", True))
        if ecfg.quantize:
            quantize(fp32, work / "int8.onnx")
            candidates.append(("int8", work / "int8.onnx", tokenizer_json, "int8", False))
            if ecfg.trim_vocab:
                quantize(trimmed, work / "trimmed_int8.onnx")
                candidates.append(
                    ("trimmed_int8", work / "trimmed_int8.onnx", trimmed_json, "int8", True)
                )
        for name, path, tok_json, quant, trim in candidates:
            probs = served(path, tok_json)
            numbers, reasons = gate(exported, probs, targets, labels, ecfg.gate, ecfg.n_bins)
            size = path.stat().st_size
            report["candidates"][name] = {
                **numbers,
                "bytes": size,
                "passed": not reasons,
                "why": "; ".join(reasons) or "within every limit",
            }
            verdict = "kept" if not reasons else "rejected: " + "; ".join(reasons)
            log.info("%s (%.0f MB): %s, %s", name, size / 1e6, _fmt(numbers), verdict)
            if not reasons and size < chosen["path"].stat().st_size:
                chosen = {"path": path, "quantization": quant, "vocab_trimmed": trim}
                chosen["tokenizer"], chosen["probs"] = tok_json, probs
        report["chosen"] = {k: chosen[k] for k in ("quantization", "vocab_trimmed")}
        report["bundle_test"] = bundle_metrics(
            chosen["probs"], targets, langs, labels, thresholds, margin, ecfg.n_bins
        )
        manifest = build_manifest(cfg, meta, checkpoint, calibration, chosen, report, pad_id)
        write_bundle(out_dir, chosen, manifest, routing, report)
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
        manifest["quantization"] + (" + trimmed vocabulary" if manifest["vocab_trimmed"] else ""),
        manifest["files"][MODEL_FILE]["bytes"] / 1e6,
        manifest["model_version"],
    )
    return out_dir


def bundle_metrics(
    probs: dict[str, np.ndarray],
    targets: dict[str, np.ndarray],
    langs: np.ndarray,
    labels: dict[str, list[str]],
    thresholds: dict[str, np.ndarray],
    margin: float,
    n_bins: int,
) -> dict[str, float]:
    """The chosen bundle's own numbers on the gate split, overall and per language."""
    out: dict[str, float] = {}
    for head, names in labels.items():
        known = targets[head] != MISSING_LABEL
        for lang in [None, *sorted(set(langs[known]))]:
            rows = known if lang is None else known & (langs == lang)
            p, t = probs[head][rows], targets[head][rows]
            key = head if lang is None else f"{head}/{lang}"
            out[f"{key}/macro_f1"] = summary(t, p.argmax(1), names)["macro_f1"]
            out[f"{key}/ece"] = ece(p, t, n_bins)
            auto = automation_report(p, t, thresholds[head][rows], names, margin)
            out[f"{key}/coverage"] = auto["coverage"]
            out[f"{key}/auto_fpr_max"] = auto["auto_fpr_max"]
    return out


def language_temperatures(fit: dict) -> dict[str, float]:
    """The languages of a head's calibration (``calibration.json``) that kept their own
    temperature, and that temperature."""
    return {lang: v["temperature"] for lang, v in fit.get("languages", {}).items() if v["own"]}


def build_manifest(
    cfg: DictConfig,
    meta: dict,
    checkpoint: Path,
    calibration: dict,
    chosen: dict,
    report: dict,
    pad_id: int,
) -> dict[str, Any]:
    """What the bundle is and how it was made (the file hashes are added when written)."""
    run_id = read_run_id(checkpoint)
    digest = sha256_file(chosen["path"])

    def served_thresholds(table: dict) -> dict[str, float | None]:
        """A calibration threshold table as the manifest holds it (never automatic: null)."""
        return {
            label: None if math.isinf(v["threshold"]) else v["threshold"]
            for label, v in table.items()
        }

    heads = {}
    for head, names in meta["labels"].items():
        fit = calibration["heads"][head]
        heads[head] = {
            "labels": names,
            "thresholds": served_thresholds(fit["thresholds"]),
            "language_thresholds": {
                lang: served_thresholds(table)
                for lang, table in fit.get("language_thresholds", {}).items()
            },
            "temperature": fit["temperature"],
            "language_temperatures": language_temperatures(fit),
        }
    data_dir = Path(cfg.data.out_dir)
    return {
        "format": FORMAT,
        "package_version": version("social-triage"),
        "model_version": f"{(run_id or 'local')[:8]}-{digest[:8]}",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "encoder": meta["encoder"],
        "data": meta.get("data"),
        "languages": list(cfg.data.languages),
        "run_id": run_id,
        "input_prefix": meta["input_prefix"],
        "max_length": meta["max_length"],
        "pad_token_id": pad_id,
        "quantization": chosen["quantization"],
        "vocab_trimmed": chosen["vocab_trimmed"],
        "fpr_target": calibration["fpr_target"],
        "margin": calibration["margin"],
        "heads": heads,
        "data_fingerprints": {
            split: fingerprint(data_dir / f"{split}.parquet")
            for split in SPLITS
            if (data_dir / f"{split}.parquet").is_file()
        },
        "parity": report["parity"],
        "bundle_test": report["bundle_test"],
    }


def write_bundle(out_dir: Path, chosen: dict, manifest: dict, routing: dict, report: dict) -> None:
    """Write the bundle folder atomically: a reader sees the old bundle or the new one."""
    with atomic_folder(out_dir) as tmp:
        model = onnx.load(str(chosen["path"]))
        del model.metadata_props[:]
        onnx.helper.set_model_props(model, {"manifest": json.dumps(manifest, ensure_ascii=False)})
        onnx.save(model, str(tmp / MODEL_FILE))
        (tmp / TOKENIZER_FILE).write_text(
            json.dumps(chosen["tokenizer"], ensure_ascii=False), encoding="utf-8"
        )
        (tmp / ROUTING_FILE).write_text(
            json.dumps(routing, indent=2, ensure_ascii=False) + "\n",
            encoding="utf-8",
        )
        (tmp / CARD_FILE).write_text(model_card(manifest, report), encoding="utf-8")
        manifest["files"] = {
            name: {"sha256": sha256_file(tmp / name), "bytes": (tmp / name).stat().st_size}
            for name in (MODEL_FILE, TOKENIZER_FILE, ROUTING_FILE, CARD_FILE)
        }
        (tmp / MANIFEST_FILE).write_text(
            json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )


def model_card(manifest: dict, report: dict) -> str:
    """The bundle described for people: what it is, how it decides, how well, how it was made."""
    lines = [
        f"# social-triage model {manifest['model_version']}",
        "",
        f"Intent and sentiment classifier for {' and '.join(manifest['languages'])} social-media "
        f"customer messages. Encoder `{manifest['encoder']}`, trained on data "
        f"`{manifest['data']}` (MLflow run `{manifest['run_id']}`), package "
        f"{manifest['package_version']}, exported {manifest['created_at']}.",
        "",
        "## How it decides",
        "",
        f"Inputs are `{manifest['input_prefix']}` + the message, at most "
        f"{manifest['max_length']} tokens. Outputs are calibrated probabilities (temperature "
        "scaling inside the graph). A class is decided automatically only when its probability "
        "reaches its threshold; thresholds were chosen on the calib split so that at most "
        f"{manifest['fpr_target']:.0%} of a class's automated decisions are wrong "
        f"(margin rule {manifest['margin']}), per language where a language had enough calib "
        "messages (its column below) and pooled for the others (`all`). Everything else goes to "
        "review; routing.json maps decisions to actions.",
        "",
    ]

    def shown(t: float | None) -> str:
        return "never automatic" if t is None else f"{t:.3f}"

    for head, spec in manifest["heads"].items():
        tables = {"all": spec["thresholds"], **spec["language_thresholds"]}
        lines += [f"### {head} (temperature {spec['temperature']:.3f})", ""]
        lines += [
            "| label | " + " | ".join(f"threshold ({name})" for name in tables) + " |",
            "|---|" + "---|" * len(tables),
        ]
        lines += [
            f"| {label} | " + " | ".join(shown(t[label]) for t in tables.values()) + " |"
            for label in spec["labels"]
        ]
        lines.append("")
    test = report["bundle_test"]
    lines += [
        f"## Measured on the {report['split']} split ({report['n']} messages), this bundle",
        "",
        "| head | language | macro-F1 | ECE | coverage | worst class: wrong automated |",
        "|---|---|---|---|---|---|",
    ]
    for key in sorted(k.removesuffix("/macro_f1") for k in test if k.endswith("/macro_f1")):
        head, _, lang = key.partition("/")
        lines.append(
            f"| {head} | {lang or 'all'} | {test[f'{key}/macro_f1']:.3f} | "
            f"{test[f'{key}/ece']:.3f} | {test[f'{key}/coverage']:.3f} | "
            f"{test[f'{key}/auto_fpr_max']:.3f} |"
        )
    lines += [
        "",
        "## Export gates",
        "",
        f"Parity of the fp32 graph with PyTorch: {_fmt(report['parity'])}.",
        "",
    ]
    for name, result in report["candidates"].items():
        lines.append(
            f"- {name}: {result['bytes'] / 1e6:.0f} MB, "
            f"{'passed' if result['passed'] else 'rejected'} ({result['why']})"
        )
    lines += [
        "",
        f"Shipped: quantization {manifest['quantization']}, vocabulary trimmed: "
        f"{manifest['vocab_trimmed']}.",
        "",
        "## Limits",
        "",
        "Per-language numbers rest on small test sets (see the counts above); the project's "
        "authored data was written for this project and is not a sample of real inbox traffic. "
        "Audit automated decisions weekly (`triage audit`).",
        "",
    ]
    return "\n".join(lines)


def _numbers(report: dict) -> dict[str, float]:
    """The report's numbers flattened for MLflow."""
    out = {f"parity/{k}": v for k, v in report["parity"].items()}
    out.update({f"bundle_test/{k}": v for k, v in report["bundle_test"].items()})
    for name, result in report["candidates"].items():
        out.update(
            {
                f"{name}/{k}": float(v)
                for k, v in result.items()
                if isinstance(v, (int, float)) and k != "why"
            }
        )
    return out


def _fmt(numbers: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in numbers.items())
