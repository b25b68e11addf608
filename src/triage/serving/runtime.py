"""The serving runtime: load an exported bundle and classify messages, without torch.

Reads a bundle folder written by ``triage export`` (default ``models/onnx/``; its files and
manifest: :mod:`triage.serving.bundle`) and writes nothing.

Per message: clean the text as ``prepare`` did, prepend the input prefix, tokenise with
truncation to ``max_length``; sort the batch by length and pad each chunk to its own longest
sequence (messages are short: never to max_length); one session of the bundle's backend
(:mod:`triage.serving.backends`: onnxruntime or OpenVINO) for all calls;
rescale a head's probabilities where the message's language kept its own temperature; apply the
message's language's thresholds (the pooled ones for a language without its own), the far-out
rule (:mod:`triage.novelty`: a message far from the training data goes to review) and the
routing table. Imports numpy, onnxruntime, tokenizers and the pure-Python
parts of the package only (a test runs it with torch and transformers blocked).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from triage.batching import padded_batches
from triage.io import sha256_file
from triage.novelty import NoveltySpec, load_bank
from triage.routing import HeadDecision, RoutingTable, decide_head, route
from triage.serving.backends import STATIC_INT8, open_session
from triage.serving.bundle import (
    EMBEDDING_OUTPUT,
    MODEL_FILE,
    NOVELTY_FILE,
    ROUTING_FILE,
    TOKENIZER_FILE,
    BundleError,
    HeadSpec,
    Manifest,
    read_manifest,
)
from triage.serving.record import Prediction
from triage.text import UNDETERMINED, clean_text, detect_languages

log = logging.getLogger(__name__)

# classified once at load so that the first request does not pay for onnxruntime's first run and
# for lingua loading its n-gram models (1 to 5-grams, loaded lazily: a long text needs them all)
WARM_UP = "Where is my order, waiting for a week now? Waar blijft mijn bestelling, al een week?"
# log(0) is clipped here when a language's own temperature rescales probabilities
_TINY = float(np.finfo(np.float32).tiny)


def physical_cores(cpuinfo: str | None = None, allowed: set[int] | None = None) -> int:
    """Physical cores this process may run on (hyper-threads of one core count once).

    Reads ``/proc/cpuinfo`` (or ``cpuinfo``, its text) on Linux; elsewhere, or when it cannot
    tell, the usable CPUs. ``allowed``: the CPUs this process may use (default: its affinity).
    """
    if allowed is None:
        allowed = (
            os.sched_getaffinity(0)
            if hasattr(os, "sched_getaffinity")
            else set(range(os.cpu_count() or 1))
        )
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return max(1, len(allowed))
    cores = set()
    for block in cpuinfo.split("\n\n"):
        fields = dict(
            (k.strip(), v.strip())
            for k, _, v in (line.partition(":") for line in block.split("\n"))
        )
        if "processor" in fields and int(fields["processor"]) in allowed:
            cores.add((fields.get("physical id", "0"), fields.get("core id", fields["processor"])))
    return max(1, len(cores) or len(allowed))


def rescale(probs: np.ndarray, t_global: float, t_lang: float) -> np.ndarray:
    """Probabilities calibrated with ``t_global`` turned into those with ``t_lang``.

    ``p = softmax(z / t_global)`` gives ``log p = z / t_global - c``, so
    ``softmax(log p * t_global / t_lang) = softmax(z / t_lang)`` exactly (the constant cancels);
    ``log 0`` is clipped at the smallest normal float32.
    """
    z = np.log(np.clip(np.asarray(probs, dtype=np.float64), _TINY, 1.0)) * (t_global / t_lang)
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def apply_language_temperatures(
    probs: dict[str, np.ndarray],
    langs: Sequence[str],
    temperatures: Mapping[str, tuple[float, Mapping[str, float]]],
) -> dict[str, np.ndarray]:
    """Graph probabilities (each head at its global temperature) turned into the served ones:
    rows of a language that kept its own temperature are :func:`rescale`-d, in place.

    Args:
        probs: ``<head>: (n, n_labels)``, as :func:`graph_outputs` returns them.
        langs: each row's language.
        temperatures: ``<head>: (global temperature, {language: its own temperature})``.
    """
    langs_arr = np.asarray(langs, dtype=object)
    for head, (t_global, own) in temperatures.items():
        for lang, t_lang in own.items():
            rows = np.flatnonzero(langs_arr == lang)
            if len(rows):
                probs[head][rows] = rescale(probs[head][rows], t_global, t_lang)
    return probs


def token_ids(tokenizer: Tokenizer, texts: Sequence[str], prefix: str) -> list[list[int]]:
    """``prefix + text`` tokenised with ``tokenizer`` as it is set up (truncation included)."""
    return [e.ids for e in tokenizer.encode_batch([prefix + t for t in texts])]


def graph_outputs(
    session: Any,
    tokenizer: Tokenizer,
    texts: Sequence[str],
    prefix: str,
    pad_id: int,
    batch_size: int = 32,
) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Run a bundle graph: ``<head>_probs`` per head, ``(len(texts), n_labels)``, and the
    sentence embeddings ``(len(texts), hidden)`` where the graph has a ``sentence_embedding``
    output (else None), in text order.

    ``prefix + text`` is tokenised with ``tokenizer`` as it is set up (truncation included); the
    texts are sorted by token length and each chunk of ``batch_size`` is padded to its own
    longest sequence, never to the maximum length.
    """
    ids = token_ids(tokenizer, texts, prefix)
    outputs = [
        o for o in session.get_outputs() if o.name.endswith("_probs") or o.name == EMBEDDING_OUTPUT
    ]
    names = [o.name for o in outputs]
    # (batch, n): the last axis is fixed in the graph
    out = {o.name: np.zeros((len(texts), o.shape[1]), np.float32) for o in outputs}
    for index, input_ids, mask in padded_batches(ids, pad_id, batch_size):
        results = session.run(names, {"input_ids": input_ids, "attention_mask": mask})
        for name, value in zip(names, results, strict=True):
            out[name][index] = value
    embeddings = out.pop(EMBEDDING_OUTPUT, None)
    return {name.removesuffix("_probs"): value for name, value in out.items()}, embeddings


def far_out(decided: HeadDecision, score: float, threshold: float) -> HeadDecision:
    """The intent decision of a message far from the training data: never automatic, whatever
    its confidence (:mod:`triage.novelty`)."""
    why = (
        f"the message is far from the training data (novelty {score:.2f} ≥ {threshold:.2f}); "
        f"{decided.why}"
    )
    return replace(decided, automatic=False, why=why)


class Runtime:
    """A loaded bundle: one backend session, the tokenizer, the heads and the routing table.

    Thread-safe: :meth:`classify` may be called from several threads (onnxruntime sessions are
    safe for concurrent ``run``, the OpenVINO one keeps a request per thread; the tokenizer is
    only read).

    Use :meth:`load`; the constructor takes the already-loaded parts.
    """

    def __init__(
        self,
        folder: Path,
        manifest: Manifest,
        session: Any,
        tokenizer: Tokenizer,
        routing: RoutingTable,
        novelty: NoveltySpec | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.manifest = manifest
        self.session = session
        self.tokenizer = tokenizer
        self.routing = routing
        self.heads: dict[str, HeadSpec] = manifest.heads
        self.languages: list[str] = manifest.languages
        self.model_version: str = manifest.model_version
        self.prefix: str = manifest.input_prefix
        self.pad_id = manifest.pad_token_id
        self.margin = manifest.margin
        self.novelty = novelty
        outputs = {o.name for o in session.get_outputs()}
        missing = [f"{h}_probs" for h in self.heads if f"{h}_probs" not in outputs]
        if novelty is not None and EMBEDDING_OUTPUT not in outputs:
            missing.append(EMBEDDING_OUTPUT)
        inputs = {i.name for i in session.get_inputs()}
        if missing or not {"input_ids", "attention_mask"} <= inputs:
            raise BundleError(
                f"{self.folder / MODEL_FILE}: graph inputs {sorted(inputs)}, outputs "
                f"{sorted(outputs)} do not match the manifest (missing {missing}); re-export"
            )
        unrouted = routing.unrouted(self.heads["intent"].labels)
        if unrouted:
            log.warning(
                "routing.json names no rule for intents %s: they get the default rule (%s)",
                unrouted,
                routing.default.action,
            )

    @classmethod
    def load(
        cls, folder: str | os.PathLike[str], threads: int | None = None, verify: bool = True
    ) -> Runtime:
        """Load a bundle folder.

        Args:
            folder: the bundle (``models/onnx`` by default in the configs).
            threads: onnxruntime intra-op threads; None = the physical cores.
            verify: check every file's size and SHA-256 against the manifest (catches a
                truncated copy or files from two exports mixed).

        Raises:
            BundleError: missing files, hashes that differ, a manifest that does not match
                the graph.
        """
        folder = Path(folder)
        manifest = read_manifest(folder)
        for name, entry in (manifest.files or {}).items():
            path = folder / name
            if not path.is_file():
                raise BundleError(f"{path} is missing from the bundle; re-run `triage export`")
            if verify and (
                path.stat().st_size != entry["bytes"] or sha256_file(path) != entry["sha256"]
            ):
                raise BundleError(
                    f"{path} differs from the manifest (size or SHA-256): a partial copy or "
                    "files from two exports; copy the whole folder again or re-export"
                )
        for name in (MODEL_FILE, TOKENIZER_FILE, ROUTING_FILE):
            if not (folder / name).is_file():
                raise BundleError(f"{folder / name} is missing; re-run `triage export`")
        session = open_session(
            folder / MODEL_FILE,
            manifest.backend,
            threads or physical_cores(),
            manifest.quantization or "none",
        )
        embedded = session.get_modelmeta().custom_metadata_map.get("manifest")
        if (
            embedded is not None
            and json.loads(embedded).get("model_version") != manifest.model_version
        ):
            raise BundleError(
                f"{folder}: model.onnx and manifest.json come from different exports; re-export"
            )
        tokenizer = Tokenizer.from_file(str(folder / TOKENIZER_FILE))
        tokenizer.no_padding()
        tokenizer.enable_truncation(manifest.max_length)
        routing = RoutingTable.from_dict(
            json.loads((folder / ROUTING_FILE).read_text(encoding="utf-8"))
        )
        novelty = None
        if manifest.novelty is not None:
            if not (folder / NOVELTY_FILE).is_file():
                raise BundleError(f"{folder / NOVELTY_FILE} is missing; re-run `triage export`")
            novelty = NoveltySpec(
                bank=load_bank(folder / NOVELTY_FILE),
                k=int(manifest.novelty["k"]),
                threshold=float(manifest.novelty["threshold"]),
            )
        runtime = cls(folder, manifest, session, tokenizer, routing, novelty)
        runtime.classify([WARM_UP], langs=[None])  # first-call costs (and lingua) now
        return runtime

    # ----------------------------------------------------------------------------------------

    def detect(self, texts: Sequence[str]) -> list[str]:
        """The language of each (cleaned) text among the bundle's languages; ``und`` where none
        can be told. A one-language bundle assigns its language."""
        if len(self.languages) == 1:
            return [self.languages[0]] * len(texts)
        if not self.languages:
            return [UNDETERMINED] * len(texts)
        return detect_languages(texts, self.languages)

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        """How many tokens the model reads of each message as written (truncation included)."""
        encoded = self.tokenizer.encode_batch([self.prefix + clean_text(t) for t in texts])
        return [len(e.ids) for e in encoded]

    def probabilities(
        self, texts: Sequence[str], langs: Sequence[str], batch_size: int = 32
    ) -> dict[str, np.ndarray]:
        """Calibrated probabilities per head, ``(len(texts), n_labels)`` float32, in text order
        (see :meth:`outputs`)."""
        return self.outputs(texts, langs, batch_size)[0]

    def outputs(
        self, texts: Sequence[str], langs: Sequence[str], batch_size: int = 32
    ) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        """Calibrated probabilities per head, ``(len(texts), n_labels)`` float32, and each
        text's novelty (None for a bundle without it), in text order.

        Args:
            texts: cleaned texts (without the input prefix).
            langs: each text's language (for per-language temperatures).
            batch_size: messages per onnxruntime call.
        """
        out, embeddings = graph_outputs(
            self.session, self.tokenizer, texts, self.prefix, self.pad_id, batch_size
        )
        temperatures = {h: (s.temperature, s.language_temperatures) for h, s in self.heads.items()}
        probs = apply_language_temperatures(out, langs, temperatures)
        if self.novelty is None or embeddings is None:
            return probs, None
        return probs, self.novelty.score(embeddings)

    def classify(
        self,
        texts: Sequence[str],
        langs: Sequence[str | None] | None = None,
        batch_size: int = 32,
    ) -> list[Prediction]:
        """Classify and route messages.

        Args:
            texts: the messages as written (cleaned here as ``prepare`` cleaned training data).
            langs: a language code per message, or None (per message or for all) to detect it
                among the bundle's languages.
            batch_size: messages per onnxruntime call.

        Raises:
            ValueError: a text is empty after cleaning, or ``langs`` has another length.
        """
        cleaned = [clean_text(t) for t in texts]
        empty = [i for i, t in enumerate(cleaned) if not t]
        if empty:
            raise ValueError(f"messages {empty} are empty (after removing whitespace)")
        if langs is None:
            langs = [None] * len(texts)
        if len(langs) != len(texts):
            raise ValueError(f"{len(langs)} languages for {len(texts)} messages")
        langs = [lang.strip().lower() if lang else None for lang in langs]
        unknown = [i for i, lang in enumerate(langs) if lang is None]
        if unknown:
            for i, lang in zip(unknown, self.detect([cleaned[i] for i in unknown]), strict=True):
                langs[i] = lang
        if not cleaned:
            return []
        probs, novelty = self.outputs(cleaned, langs, batch_size)
        intent = self.heads["intent"]
        sentiment = self.heads.get("sentiment")
        predictions = []
        for i in range(len(cleaned)):
            intent_probs = dict(zip(intent.labels, probs["intent"][i].tolist(), strict=True))
            decided = decide_head(
                "intent",
                probs["intent"][i].tolist(),
                intent.labels,
                intent.thresholds_for(langs[i]),
                self.margin,
            )
            score = None if novelty is None else float(novelty[i])
            if score is not None and self.novelty.far(score):
                decided = far_out(decided, score, self.novelty.threshold)
            sentiment_probs = sent = None
            if sentiment is not None:
                row = probs["sentiment"][i].tolist()
                sentiment_probs = dict(zip(sentiment.labels, row, strict=True))
                sent = decide_head(
                    "sentiment",
                    row,
                    sentiment.labels,
                    sentiment.thresholds_for(langs[i]),
                    self.margin,
                )
            routed = route(self.routing, decided, sentiment_probs)
            predictions.append(
                Prediction(
                    intent=decided.label,
                    intent_prob=decided.prob,
                    intent_probs=intent_probs,
                    intent_threshold=decided.threshold,
                    sentiment=None if sent is None else sent.label,
                    sentiment_prob=None if sent is None else sent.prob,
                    sentiment_probs=sentiment_probs,
                    sentiment_threshold=None if sent is None else sent.threshold,
                    decision=routed.decision,
                    action=str(routed.action),
                    priority=str(routed.priority),
                    reason=routed.reason,
                    novelty=score,
                    lang=langs[i],
                    model_version=self.model_version,
                )
            )
        return predictions

    def metadata(self) -> dict[str, Any]:
        """What ``GET /v1/model`` shows: the manifest without file hashes, and the routing."""
        meta = self.manifest.to_dict()
        meta["files"] = {k: v.get("bytes") for k, v in (self.manifest.files or {}).items()}
        meta["routing"] = self.routing.to_dict()
        meta["precision"] = self.precision
        return meta

    @property
    def precision(self) -> str:
        """The arithmetic the backend runs: int8 for a graph with int8 activations (dynamic
        or static), else OpenVINO's choice for this CPU (bf16 or f32) or fp32."""
        if self.manifest.quantization in ("int8", STATIC_INT8):
            return "int8"
        return getattr(self.session, "precision", "fp32")
