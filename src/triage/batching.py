"""Length-sorted batching with per-batch padding, for inference on token ids (numpy only: the
PyTorch side and the torch-free serving runtime both use it).

Messages are short and their lengths vary a lot, so texts of similar length are batched
together and each batch is padded to its own longest sequence, never to the maximum length.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np


def pad(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """``input_ids`` and ``attention_mask`` (int64, ``(len(sequences), longest)``): the
    sequences padded with ``pad_id`` to the longest of them."""
    width = max(len(s) for s in sequences)
    ids = np.full((len(sequences), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(sequences), width), dtype=np.int64)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = seq
        mask[row, : len(seq)] = 1
    return ids, mask


def padded_batches(
    ids: Sequence[Sequence[int]], pad_id: int, batch_size: int
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The sequences sorted by length (stable) in chunks of ``batch_size``, each padded by
    :func:`pad`: ``(index, input_ids, attention_mask)`` per chunk, ``index`` being the positions
    in ``ids`` of its rows (write each chunk's results to ``out[index]`` to restore the order)."""
    order = np.argsort([len(s) for s in ids], kind="stable")
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        yield index, *pad([ids[i] for i in index], pad_id)
