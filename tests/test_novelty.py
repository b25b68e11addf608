"""Novelty on literal vectors: the k-th neighbour's cosine distance, the far-out rule, the bank."""

import numpy as np
import pytest

from triage.novelty import NoveltySpec, novelty, save_bank, unit


def test_novelty_is_the_cosine_distance_to_the_kth_nearest_bank_row(tmp_path):
    bank = unit(np.array([[1, 0, 0], [0.8, 0.6, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float32))
    queries = np.array([[2, 0, 0], [0, 0, -3], [1, 1, 0]], dtype=np.float32)  # any length
    first = novelty(queries, bank, k=1)
    assert first[0] == pytest.approx(0.0, abs=1e-6)  # the same direction as a bank row
    assert first[1] == pytest.approx(1.0)  # orthogonal to three rows, opposite the fourth
    # (1, 1, 0)/sqrt(2) against (0.8, 0.6, 0): cosine (0.8 + 0.6) / sqrt(2)
    assert first[2] == pytest.approx(1 - 1.4 / np.sqrt(2), abs=1e-6)
    second = novelty(queries, bank, k=2)
    assert second[0] == pytest.approx(1 - 0.8)  # its second neighbour: (0.8, 0.6, 0)
    assert second[2] == pytest.approx(1 - 1 / np.sqrt(2), abs=1e-6)  # (1,0,0) and (0,1,0) tie
    assert novelty(queries, bank, k=99)[1] == pytest.approx(2.0)  # clipped to the bank: -1
    # a float16 bank (as stored) gives the same answer within its precision
    assert np.allclose(novelty(queries, bank.astype(np.float16), 2), second, atol=1e-3)
    with pytest.raises(ValueError, match="empty"):
        novelty(queries, bank[:0], 1)

    save_bank(tmp_path / "calibration.novelty.npy", bank.astype(np.float16))
    entry = {"bank": "calibration.novelty.npy", "k": 2, "threshold": 0.2}
    spec = NoveltySpec.load(entry, tmp_path)
    scores = spec.score(queries)
    assert np.allclose(scores, second, atol=1e-3)
    # at or above the threshold is far out: (2, 0, 0) is 0.2 from its 2nd neighbour
    assert spec.far(np.array([0.1999, 0.2, 0.5])).tolist() == [False, True, True]
