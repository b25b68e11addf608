"""multilingual-e5-small's facts: its architecture, its special token ids, its query prefix and
its pooling (mean over the attention mask; the model has no pooler)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # torch is imported lazily: resolving a cached folder stays cheap
    import torch

# Architecture of multilingual-e5-small; verify_encoder checks the converted folder against these
# constants (not against its own config.json, which could be the thing that is wrong).
HIDDEN = 384
N_LAYERS = 12
FFN = 1536
VOCAB = 250037  # embedding rows; the tokenizer itself has 250,002 pieces (XLM-R), as on the hub
TOKENIZER_PIECES = 250002
MAX_POSITIONS = 512
TYPE_VOCAB = 2
PAD_ID, BOS_ID, EOS_ID, UNK_ID, MASK_ID = 1, 0, 2, 3, 250001

QUERY_PREFIX = "query: "


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
