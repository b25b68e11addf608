"""Length-sorted batching with per-batch padding (shared by PyTorch inference and the runtime)."""

from __future__ import annotations

import numpy as np

from triage.batching import pad, padded_batches


def test_pad_to_the_longest_of_the_batch():
    ids, mask = pad([[5, 6, 7], [8], [9, 10]], pad_id=1)
    assert ids.dtype == mask.dtype == np.int64
    np.testing.assert_array_equal(ids, [[5, 6, 7], [8, 1, 1], [9, 10, 1]])
    np.testing.assert_array_equal(mask, [[1, 1, 1], [1, 0, 0], [1, 1, 0]])


def test_batches_are_sorted_by_length_and_restore_the_order():
    sequences = [[1] * n for n in (4, 1, 3, 1, 2, 6, 2)]
    batches = list(padded_batches(sequences, pad_id=0, batch_size=3))
    # stable: equal lengths keep their input order
    assert [index.tolist() for index, _, _ in batches] == [[1, 3, 4], [6, 2, 0], [5]]
    assert [ids.shape[1] for _, ids, _ in batches] == [2, 4, 6]  # each to its own longest
    lengths = np.zeros(len(sequences), dtype=int)
    for index, _, mask in batches:
        lengths[index] = mask.sum(1)
    assert lengths.tolist() == [len(s) for s in sequences]
    assert list(padded_batches([], pad_id=0, batch_size=3)) == []
