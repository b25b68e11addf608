"""Parity on identical messages: pairing rows by pair_id and the per-class table."""

from __future__ import annotations

import numpy as np
import pandas as pd

from triage.modeling.parity import language_pairs, pairs, parity
from triage.schema import MISSING_LABEL


def test_parity_pairs_rows_by_pair_id_and_names_where_the_first_language_loses():
    frame = pd.DataFrame(
        {
            "pair_id": ["p1", "p1", "p2", "p2", "p3", "p3", "p4", None, "p5"],
            "lang": ["nl", "en", "en", "nl", "nl", "en", "nl", "en", "nl"],
            "text": ["zet alarm", "set alarm", "rain?", "regen?", "licht aan", "lights on",
                     "alleen nl", "only en", "nog een"],
        }
    )  # fmt: skip
    names = ["alarm", "weather", "iot"]
    y = np.array([0, 0, 1, 1, 2, 2, 0, 0, MISSING_LABEL])
    pred = np.array([1, 0, 1, 1, 2, 0, 0, 0, 0])  # nl wrong on p1, en wrong on p3
    matched = pairs(frame, "nl", "en")
    assert sorted(matched["pair_id"]) == ["p1", "p2", "p3"]
    assert language_pairs(frame, ["nl", "en"]) == [("nl", "en")]
    assert language_pairs(frame.assign(pair_id=None), ["nl", "en"]) == []
    numbers, table = parity(frame, y, pred, names, "nl", "en")
    assert numbers["n"] == 3 and numbers["acc_a"] == numbers["acc_b"] == 2 / 3
    assert (numbers["only_a"], numbers["only_b"]) == (1, 1)
    worst = table.iloc[0]
    assert worst["label"] == "alarm" and worst["diff"] == -1.0
    assert worst["examples"] == "zet alarm -> weather (set alarm)"
    assert list(table["label"]) == ["alarm", "weather", "iot"]
    assert table.set_index("label").loc["iot", "diff"] == 1.0
