"""The bundle contract between ``triage export`` (which writes it) and the runtime (which reads
it): the file names, the format and the manifest, one dataclass for both sides.

A bundle folder (``models/onnx/`` by default) holds:

    model.onnx      inputs input_ids, attention_mask (int64); outputs <head>_probs: calibrated
                    probabilities (global temperature and softmax inside the graph) and
                    ``sentence_embedding``, the pooled sentence embedding; the manifest JSON
                    (without file hashes) in its metadata
    novelty.npy     the training messages' embeddings (float16, unit length) that novelty is
                    measured against (:mod:`triage.novelty`; k and threshold in the manifest);
                    absent from a bundle exported without novelty
    tokenizer.json  a `tokenizers` file (no truncation or padding set: the runtime sets them)
    routing.json    the routing table (triage.routing)
    model_card.md   the bundle described for people
    manifest.json   labels, thresholds (pooled and per language), per-language temperatures,
                    margin, max_length, prefix, encoder, run id, data fingerprints, model version,
                    parity and the bundle's own test numbers, file hashes: :class:`Manifest`
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from triage.errors import TriageError
from triage.io import sha256_file

# /2 added per-language thresholds, /3 novelty (an older runtime must not serve a /3 bundle
# without its far-out rule), /4 the backend and 8-bit weight storage (an older runtime would
# run int8_weights without folding them, or an OpenVINO bundle on onnxruntime)
FORMAT = "social-triage-bundle/4"
# a /1 bundle has pooled thresholds only, a /2 bundle no novelty, a /3 bundle runs on onnxruntime
READABLE_FORMATS = (
    "social-triage-bundle/1",
    "social-triage-bundle/2",
    "social-triage-bundle/3",
    FORMAT,
)
MODEL_FILE = "model.onnx"
NOVELTY_FILE = "novelty.npy"
#: the graph output with the pooled sentence embedding
EMBEDDING_OUTPUT = "sentence_embedding"  # not "embedding": the encoder has a node of that name
TOKENIZER_FILE = "tokenizer.json"
ROUTING_FILE = "routing.json"
MANIFEST_FILE = "manifest.json"
CARD_FILE = "model_card.md"
#: the files the manifest lists with their size and SHA-256
HASHED_FILES = (MODEL_FILE, TOKENIZER_FILE, ROUTING_FILE, CARD_FILE)


class BundleError(TriageError, ValueError):
    """A bundle folder that is missing, incomplete or inconsistent; says what to do."""


def _threshold_table(table: dict[str, Any]) -> dict[str, float | None]:
    return {k: (None if v is None else float(v)) for k, v in table.items()}


@dataclass(frozen=True)
class HeadSpec:
    """One head of a bundle, from its manifest."""

    name: str
    labels: list[str]
    thresholds: dict[str, float | None]  # None: the class is never decided automatically
    temperature: float  # the global temperature, already applied inside the graph
    language_temperatures: dict[str, float]  # languages that kept their own temperature
    language_thresholds: dict[str, dict[str, float | None]]  # languages with their own table

    def thresholds_for(self, lang: str | None) -> dict[str, float | None]:
        """The thresholds a message in ``lang`` is decided with: its language's own, or the
        pooled ones."""
        return self.language_thresholds.get(lang or "", self.thresholds)

    def to_dict(self) -> dict[str, Any]:
        """The head as ``manifest.json`` holds it (under its name)."""
        return {
            "labels": self.labels,
            "thresholds": self.thresholds,
            "language_thresholds": self.language_thresholds,
            "temperature": self.temperature,
            "language_temperatures": self.language_temperatures,
        }

    @classmethod
    def from_dict(cls, name: str, spec: dict[str, Any]) -> HeadSpec:
        """A head read back from the manifest; a /1 bundle has no per-language tables.

        Raises:
            BundleError: a key is missing or bad, or a threshold table does not name exactly
                the head's labels (a missing label would silently read as never automatic).
        """
        try:
            head = cls(
                name=name,
                labels=list(spec["labels"]),
                thresholds=_threshold_table(spec["thresholds"]),
                temperature=float(spec["temperature"]),
                language_temperatures={
                    k: float(v) for k, v in spec.get("language_temperatures", {}).items()
                },
                language_thresholds={
                    lang: _threshold_table(table)
                    for lang, table in spec.get("language_thresholds", {}).items()
                },
            )
        except (KeyError, TypeError) as exc:
            raise BundleError(f"manifest head {name!r}: missing or bad key {exc}") from exc
        for lang, table in {"pooled": head.thresholds, **head.language_thresholds}.items():
            if set(table) != set(head.labels):
                raise BundleError(
                    f"manifest head {name!r}: the {lang} thresholds name {sorted(table)}, "
                    f"the labels are {head.labels}; re-run `triage export`"
                )
        return head


@dataclass(frozen=True, kw_only=True)
class Manifest:
    """What a bundle is and how it was made (``manifest.json``; also inside ``model.onnx``
    without ``files``), its fields in the file's order. The runtime needs the format, model
    version, max length, pad token and an ``intent`` head; the other fields describe the bundle
    (``GET /v1/model``, the model card) and may be absent when reading."""

    format: str
    package_version: str | None = None
    model_version: str
    created_at: str | None = None
    encoder: str | None = None
    data: Any = None  # the training data's identity, as the checkpoint recorded it
    languages: list[str] = field(default_factory=list)
    run_id: str | None = None
    input_prefix: str = ""
    max_length: int
    pad_token_id: int
    # "none"; "int8" (dynamic: int8 weights and activations); "int8_embedding" (int8 word
    # embeddings, gathered and dequantised) or "int8_weights" (those and int8-stored MatMul
    # weights; float compute): pipeline/export/storage.py; "int8_static" (int8 weights and
    # activations calibrated by NNCF, some operations left in float): pipeline/export/static.py
    quantization: str | None = None
    backend: str = "onnxruntime"  # serving.backends: onnxruntime or openvino
    vocab_trimmed: bool | None = None
    fpr_target: float | None = None
    margin: float = 0.0
    heads: dict[str, HeadSpec]
    data_fingerprints: dict[str, Any] = field(default_factory=dict)
    parity: dict[str, float] = field(default_factory=dict)  # the fp32 graph against PyTorch
    bundle_test: dict[str, float] = field(default_factory=dict)  # the bundle's own numbers
    # {"k", "threshold", "quantile", "n_bank"}: far-out rule over NOVELTY_FILE; None = none
    novelty: dict[str, Any] | None = None
    files: dict[str, dict[str, Any]] | None = None  # name: {"sha256", "bytes"}; set on writing

    def to_dict(self) -> dict[str, Any]:
        """The manifest as JSON holds it; without ``files`` until they are set, and without
        ``novelty`` for a bundle that has none."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["heads"] = {name: head.to_dict() for name, head in self.heads.items()}
        for key in ("novelty", "files"):  # absent rather than null: a /2 manifest stays as read
            if out[key] is None:
                del out[key]
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str = "manifest") -> Manifest:
        """A manifest read back, checked as the runtime needs it (keys it does not know are
        left out).

        Raises:
            BundleError: a format this code does not read, a missing or bad key, a bad head,
                or no ``intent`` head (routing needs one).
        """
        if raw.get("format") not in READABLE_FORMATS:
            raise BundleError(
                f"{where}: format {raw.get('format')!r}, this runtime reads "
                f"{' or '.join(map(repr, READABLE_FORMATS))}; "
                "re-export the model with this version of social-triage"
            )
        heads = {name: HeadSpec.from_dict(name, s) for name, s in raw.get("heads", {}).items()}
        if "intent" not in heads:
            raise BundleError(
                f"the bundle has heads {sorted(heads)}, but routing needs an `intent` head"
            )
        missing = [k for k in ("model_version", "max_length", "pad_token_id") if k not in raw]
        if missing:
            raise BundleError(f"{where}: no {missing}; re-run `triage export`")
        known = {f.name for f in fields(cls)} - {"heads"}
        given = {k: v for k, v in raw.items() if k in known}
        try:
            return cls(**given, heads=heads)._typed()
        except (TypeError, ValueError) as exc:
            raise BundleError(f"{where}: a bad value ({exc}); re-run `triage export`") from exc

    def _typed(self) -> Manifest:
        """The values the runtime computes with, as their types (a bad one raises)."""
        return replace(
            self,
            model_version=str(self.model_version),
            max_length=int(self.max_length),
            pad_token_id=int(self.pad_token_id),
            languages=list(self.languages or []),
            input_prefix=self.input_prefix or "",
            margin=float(self.margin or 0.0),
        )

    def with_files(self, folder: Path) -> Manifest:
        """This manifest with the size and SHA-256 of the bundle files in ``folder``."""
        return replace(
            self,
            files={
                name: {
                    "sha256": sha256_file(folder / name),
                    "bytes": (folder / name).stat().st_size,
                }
                for name in HASHED_FILES + ((NOVELTY_FILE,) if self.novelty else ())
            },
        )


def write_manifest(folder: Path, manifest: Manifest) -> None:
    """``folder/manifest.json`` (indented, UTF-8, a final newline)."""
    (Path(folder) / MANIFEST_FILE).write_text(
        json.dumps(manifest.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )


def read_manifest(folder: str | Path) -> Manifest:
    """A bundle's ``manifest.json``, checked for its format and content.

    Raises:
        BundleError: no bundle there, not JSON, a format this code does not read, or a
            manifest the runtime cannot use (see :meth:`Manifest.from_dict`).
    """
    folder = Path(folder)
    path = folder / MANIFEST_FILE
    if not path.is_file():
        raise BundleError(
            f"{folder} is not a model bundle (no {MANIFEST_FILE}); run `triage export` first "
            "or point to the folder it wrote"
        )
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path}: not valid JSON ({exc}); re-run `triage export`") from exc
    return Manifest.from_dict(raw, where=str(path))
