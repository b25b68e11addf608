"""The classifier: one pretrained encoder, mean pooling, one linear head per task.

The set of heads comes from the data (``labels.json``): ``intent`` and ``sentiment`` on the
social data, ``intent`` alone on benchmarks. A checkpoint folder describes itself, so it reloads
without the original config files:

    model.safetensors   all weights (encoder + heads)
    config.json         the encoder's transformers config (architecture only)
    tokenizer files     the encoder's tokenizer
    triage.json         heads and label order, input prefix, max length, dropout, encoder source,
                        the data and training config that produced it
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from triage.batching import pad, padded_batches
from triage.encoder.e5 import mean_pool
from triage.errors import ConfigError, MissingInputError
from triage.io import atomic_folder
from triage.modeling.calibration import softmax
from triage.schema import MISSING_LABEL
from triage.tracking import RUN_ID_FILE

META_FILE = "triage.json"
KIND = "transformer"
WEIGHTS_FILE = "model.safetensors"


class TriageModel(nn.Module):
    """Encoder + mean pooling + a linear head per task.

    Args:
        encoder: a transformers encoder returning ``last_hidden_state``.
        labels: head name -> label names, in output order.
        dropout: dropout on the pooled vector before the heads.
    """

    def __init__(self, encoder: nn.Module, labels: dict[str, list[str]], dropout: float = 0.1):
        super().__init__()
        if not labels:
            raise ValueError("a model needs at least one head")
        self.encoder = encoder
        self.labels = {head: list(names) for head, names in labels.items()}
        self.dropout = nn.Dropout(dropout)
        hidden = encoder.config.hidden_size
        self.heads = nn.ModuleDict({h: nn.Linear(hidden, len(n)) for h, n in labels.items()})

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Logits per head, ``(batch, n_labels)``."""
        return self.outputs(input_ids, attention_mask)[0]

    def outputs(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Logits per head and the pooled sentence embedding ``(batch, hidden)`` the heads read
        (before dropout; what :mod:`triage.novelty` measures distances on)."""
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
        pooled = mean_pool(out.last_hidden_state, attention_mask)
        dropped = self.dropout(pooled)
        return {head: layer(dropped) for head, layer in self.heads.items()}, pooled


def multitask_loss(
    logits: dict[str, torch.Tensor],
    targets: dict[str, torch.Tensor],
    head_weights: dict[str, float] | None = None,
    class_weights: dict[str, torch.Tensor] | None = None,
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted sum of per-head cross-entropies; a missing label counts for nothing.

    A head with no labelled row in the batch adds nothing (rather than NaN).

    Returns:
        The total loss and the per-head loss values (for logging).
    """
    total = next(iter(logits.values())).new_zeros(())
    parts: dict[str, float] = {}
    for head, head_logits in logits.items():
        target = targets[head]
        if not (target != MISSING_LABEL).any():
            continue
        loss = nn.functional.cross_entropy(
            head_logits.float(),
            target,
            ignore_index=MISSING_LABEL,
            label_smoothing=label_smoothing,
            weight=None if class_weights is None else class_weights.get(head),
        )
        parts[head] = float(loss.detach())
        total = total + (1.0 if head_weights is None else head_weights.get(head, 1.0)) * loss
    return total, parts


def build_model(
    encoder_path: str,
    labels: dict[str, list[str]],
    dropout: float,
    layers: Sequence[int] | None = None,
) -> TriageModel:
    """A new model on pretrained encoder weights (a folder or hub name), heads freshly made;
    ``layers`` keeps only those transformer layers, in that order (a smaller student)."""
    from transformers import AutoModel

    encoder = AutoModel.from_pretrained(encoder_path, **_encoder_kwargs(encoder_path))
    if layers is not None:
        keep_layers(encoder, layers)
    return TriageModel(encoder, labels, dropout)


def keep_layers(encoder: nn.Module, layers: Sequence[int]) -> None:
    """Cut a BERT-style encoder down to ``layers`` (indices into its layer stack), in place; its
    config records the new depth, so the saved checkpoint reloads as the smaller model."""
    stack = getattr(getattr(encoder, "encoder", None), "layer", None)
    if stack is None:
        raise ConfigError("model.layers needs a BERT-style encoder (encoder.layer); this has none")
    if not layers or any(not 0 <= i < len(stack) for i in layers) or len(set(layers)) < len(layers):
        raise ConfigError(
            f"model.layers={list(layers)}: give distinct layer indices in 0..{len(stack) - 1}"
        )
    encoder.encoder.layer = nn.ModuleList([stack[i] for i in layers])
    encoder.config.num_hidden_layers = len(layers)


def encoder_from_checkpoint(
    path: Path, encoder: str, layers: Sequence[int] | None = None
) -> nn.Module:
    """The fine-tuned encoder of a transformer checkpoint, its heads left behind: the start of a
    new training on other labels (intermediate training, ``train.init_encoder``); ``layers``
    keeps only those of its layers, as in :func:`build_model`.

    Raises:
        MissingInputError: ``path`` is not a checkpoint.
        ConfigError: it holds another kind of model, or was trained from another encoder.
    """
    meta = read_meta(path)
    if meta.get("kind") != KIND or meta.get("encoder") != encoder:
        raise ConfigError(
            f"train.init_encoder={path} holds a {meta.get('kind')} model on encoder "
            f"{meta.get('encoder')!r}; start from a transformer checkpoint trained from "
            f"model.encoder={encoder!r}"
        )
    source, _, _ = load_checkpoint(path)
    if layers is not None:
        keep_layers(source.encoder, layers)
    return source.encoder


def _encoder_kwargs(path_or_config: Any) -> dict[str, Any]:
    # BERT-style encoders build a pooler we never use (e5 is mean-pooled; the converted copy has
    # none): leave it out instead of carrying random weights and a "missing keys" warning.
    from transformers import AutoConfig, PretrainedConfig

    config = (
        path_or_config
        if isinstance(path_or_config, PretrainedConfig)
        else AutoConfig.from_pretrained(path_or_config)
    )
    return {"add_pooling_layer": False} if config.model_type in ("bert", "xlm-roberta") else {}


def save_checkpoint(
    model: TriageModel, tokenizer: Any, out_dir: Path, meta: dict[str, Any]
) -> None:
    """Write a self-describing checkpoint folder, atomically."""
    with atomic_folder(out_dir) as tmp:
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS_FILE))
        model.encoder.config.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        full_meta = {**meta, "kind": KIND, "labels": model.labels, "dropout": model.dropout.p}
        (tmp / META_FILE).write_text(
            json.dumps(full_meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        if meta.get("run_id"):  # later stages add to the same MLflow run
            (tmp / RUN_ID_FILE).write_text(meta["run_id"] + "\n")


def read_meta(path: Path) -> dict[str, Any]:
    """A checkpoint's ``triage.json`` (what it is, its labels, how it was made)."""
    if not (Path(path) / META_FILE).is_file():
        raise MissingInputError(
            f"{path} is not a triage checkpoint (no {META_FILE}); run `triage train` (or "
            "`triage baseline`) first, or point to the folder it wrote"
        )
    return json.loads((Path(path) / META_FILE).read_text(encoding="utf-8"))


def load_checkpoint(path: Path) -> tuple[TriageModel, Any, dict[str, Any]]:
    """Rebuild model, tokenizer and metadata from a checkpoint folder alone."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    path = Path(path)
    meta = read_meta(path)
    config = AutoConfig.from_pretrained(str(path))
    encoder = AutoModel.from_config(config, **_encoder_kwargs(config))
    model = TriageModel(encoder, meta["labels"], meta["dropout"])
    model.load_state_dict(load_file(str(path / WEIGHTS_FILE)))
    model.eval()
    return model, AutoTokenizer.from_pretrained(str(path)), meta


def encode(tokenizer: Any, texts: Sequence[str], prefix: str, max_length: int) -> list[list[int]]:
    """Token ids of ``prefix + text`` per text, truncated to ``max_length``, unpadded."""
    return tokenizer([prefix + t for t in texts], truncation=True, max_length=max_length)[
        "input_ids"
    ]


def pad_batch(sequences: Sequence[Sequence[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad to the longest sequence of the batch (not to max_length: messages are short)."""
    ids, mask = pad(sequences, pad_id)
    return {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}


@torch.inference_mode()
def predict_outputs(
    model: TriageModel,
    tokenizer: Any,
    texts: Sequence[str],
    prefix: str,
    max_length: int,
    batch_size: int = 64,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Logits per head, ``(len(texts), n_labels)`` float32, and the pooled embeddings
    ``(len(texts), hidden)`` float32, in the order of ``texts``.

    Batches are formed from texts of similar length, so little compute goes to padding.
    """
    model.eval()
    device = next(model.parameters()).device
    ids = encode(tokenizer, texts, prefix, max_length)
    out = {
        head: np.zeros((len(texts), len(names)), dtype=np.float32)
        for head, names in model.labels.items()
    }
    embeddings = np.zeros((len(texts), model.encoder.config.hidden_size), dtype=np.float32)
    for index, input_ids, mask in padded_batches(ids, tokenizer.pad_token_id, batch_size):
        logits, pooled = model.outputs(
            torch.from_numpy(input_ids).to(device), torch.from_numpy(mask).to(device)
        )
        for head, value in logits.items():
            out[head][index] = value.float().cpu().numpy()
        embeddings[index] = pooled.float().cpu().numpy()
    return out, embeddings


def predict_proba(
    model: TriageModel,
    tokenizer: Any,
    texts: Sequence[str],
    prefix: str,
    max_length: int,
    batch_size: int = 64,
) -> dict[str, np.ndarray]:
    """Uncalibrated softmax probabilities per head (see :func:`predict_outputs`)."""
    logits, _ = predict_outputs(model, tokenizer, texts, prefix, max_length, batch_size)
    return {head: softmax(value) for head, value in logits.items()}


class TransformerPredictor:
    """A loaded checkpoint behind the interface calibrate and evaluate use: ``labels``,
    ``meta`` and ``logits(texts)``; ``outputs(texts)`` adds the sentence embeddings (the TF-IDF
    baseline has none, so no novelty)."""

    def __init__(self, path: Path, batch_size: int = 64):
        self.model, self.tokenizer, self.meta = load_checkpoint(path)
        self.labels = self.model.labels
        self.batch_size = batch_size

    def logits(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        return self.outputs(texts)[0]

    def outputs(self, texts: Sequence[str]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Logits per head and pooled embeddings (:func:`predict_outputs`)."""
        return predict_outputs(
            self.model,
            self.tokenizer,
            texts,
            self.meta["input_prefix"],
            self.meta["max_length"],
            self.batch_size,
        )


def load_predictor(path: Path) -> Any:
    """The transformer or the TF-IDF baseline, whichever ``path`` holds (``triage.json``)."""
    from triage.modeling.tfidf import KIND as TFIDF
    from triage.modeling.tfidf import TfidfModel

    path = Path(path)
    if read_meta(path).get("kind") == TFIDF:
        return TfidfModel.load(path)
    return TransformerPredictor(path)
