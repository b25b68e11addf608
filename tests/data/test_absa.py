"""The SemEval ABSA sentence reader on literal XML, and an extra evaluation set built on it."""

from __future__ import annotations

import numpy as np
import pytest

from triage.data.public import read_absa
from triage.errors import ConfigError, DataError
from triage.modeling.realtext import read_eval_set, score_eval_set
from triage.schema import MISSING_LABEL

XML = """<?xml version='1.0' encoding='UTF-8'?>
<Reviews>
  <Review rid="r1">
    <sentences>
      <sentence id="r1:1">
        <text>Lange wachttijd.</text>
        <Opinions>
          <Opinion target="wachttijd" category="SERVICE#GENERAL" polarity="negative"/>
        </Opinions>
      </sentence>
      <sentence id="r1:2">
        <text>Via via hadden we gehoord dat we hier moesten zijn.</text>
      </sentence>
      <sentence id="r1:3">
        <text>Lekker eten maar trage bediening.</text>
        <Opinions>
          <Opinion target="eten" category="FOOD#QUALITY" polarity="positive" from="7" to="11"/>
          <Opinion target="bediening" category="SERVICE#GENERAL" polarity="negative"/>
        </Opinions>
      </sentence>
      <sentence id="r1:4">
        <text>Top eten, top wijn!</text>
        <Opinions>
          <Opinion target="eten" category="FOOD#QUALITY" polarity="positive" from="4" to="8"/>
          <Opinion target="wijn" category="DRINKS#QUALITY" polarity="positive" from="14" to="18"/>
        </Opinions>
      </sentence>
    </sentences>
  </Review>
</Reviews>
"""


@pytest.fixture
def absa(tmp_path):
    folder = tmp_path / "semeval2016_absa_nl"
    folder.mkdir()
    (folder / "restaurants_dutch_training.xml").write_text(XML, encoding="utf-8")
    return folder


def test_sentences_get_the_polarity_their_opinions_agree_on(absa):
    rows = list(read_absa(absa, {}))
    assert [(r.id, r.text, r.sentiment) for r in rows] == [
        ("absa-r1:1", "Lange wachttijd.", "negative"),
        ("absa-r1:2", "Via via hadden we gehoord dat we hier moesten zijn.", "neutral"),
        ("absa-r1:4", "Top eten, top wijn!", "positive"),
    ]  # r1:3 is mixed: left out
    assert rows[0].where.endswith("restaurants_dutch_training.xml:sentence 1")
    (absa / "broken.xml").write_text("<Reviews><sentence>", encoding="utf-8")
    with pytest.raises(DataError, match="not a readable SemEval ABSA XML"):
        list(read_absa(absa, {}))


def test_an_extra_set_is_read_like_training_data_and_scored_per_head(absa, root):
    sets = {"absa_nl": {"kind": "absa", "path": absa.name, "lang": "nl", "on_invalid": "drop",
                        "options": {}, "intent_map": None, "sentiment_map": None}}  # fmt: skip
    labels = {"intent": ["order_status", "other"], "sentiment": ["negative", "neutral", "positive"]}
    frame = read_eval_set("absa_nl", sets, labels, root, absa.parent)
    assert list(frame["sentiment"]) == ["negative", "neutral", "positive"]
    assert frame["intent"].isna().all() and set(frame["lang"]) == {"nl"}
    with pytest.raises(ConfigError, match=r"evaluate\.sets does not define"):
        read_eval_set("tweets", sets, labels, root, absa.parent)
    probs = {
        "intent": np.full((3, 2), 0.5),
        "sentiment": np.array([[0.95, 0.03, 0.02], [0.2, 0.5, 0.3], [0.75, 0.05, 0.2]]),
    }
    targets = {"intent": np.full(3, MISSING_LABEL), "sentiment": np.array([0, 1, 2])}
    out = score_eval_set(probs, targets, labels, "absa_nl", n_bins=10)
    assert not any(k.startswith("extra/absa_nl/intent") for k in out)  # no intent labels
    key = "extra/absa_nl/sentiment"
    assert out[f"{key}/n"] == 3 and out[f"{key}/accuracy"] == pytest.approx(2 / 3)
    assert out[f"{key}/share_at_0.9"] == pytest.approx(1 / 3)
    assert out[f"{key}/accuracy_at_0.9"] == 1.0
    assert out[f"{key}/share_at_0.7"] == pytest.approx(2 / 3)
    assert out[f"{key}/accuracy_at_0.7"] == 0.5
    # macro-F1 over negative (P 1/2, R 1), neutral (1, 1), positive (0): (2/3 + 1 + 0) / 3
    assert out[f"{key}/macro_f1"] == pytest.approx((2 / 3 + 1) / 3)
    assert not any(k.endswith("_near") for k in out)
    # the confident right answer is far out: sent to review, so no answer at 0.9 is given
    gated = score_eval_set(probs, targets, labels, "absa_nl", 10, far=np.array([1, 0, 0], bool))
    assert gated["extra/absa_nl/novelty/far_share"] == pytest.approx(1 / 3)
    assert gated[f"{key}/share_at_0.9_near"] == 0.0 and gated[f"{key}/accuracy_at_0.9_near"] == 0
    assert gated[f"{key}/share_at_0.7_near"] == pytest.approx(1 / 3)
    assert gated[f"{key}/accuracy_at_0.7_near"] == 0.0  # row 3: 0.75 negative, truly positive
    assert gated[f"{key}/accuracy_at_0.9"] == 1.0  # the ungated numbers stay


def test_the_negative_rule_is_rechecked_on_real_text(root):
    from triage.config import load_config, to_container
    from triage.modeling.realtext import negative_replies
    from triage.routing import RoutingTable

    table = RoutingTable.from_dict(to_container(load_config([], root=root).routing))
    labels = {
        "intent": ["order_status", "complaint"],
        "sentiment": ["negative", "neutral", "positive"],
    }
    probs = {  # three truly negative messages, all confidently order_status (an auto_reply)
        "intent": np.array([[0.95, 0.05], [0.95, 0.05], [0.95, 0.05], [0.95, 0.05]]),
        "sentiment": np.array([[0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [0.35, 0.6, 0.05],
                               [0.9, 0.05, 0.05]]),
    }  # fmt: skip
    y = np.array([0, 0, 0, 2])  # the last is positive: not counted
    thresholds = np.full((4, 2), 0.8)
    out = negative_replies(probs, y, thresholds, labels, table, 0.0, "absa_nl")
    # P(negative) 0.9 and 0.35 reach block_auto_reply_at (0.3): only the 0.2 one gets a template
    assert out["extra/absa_nl/routing/negative_n"] == 3
    assert out["extra/absa_nl/routing/negative_auto_reply"] == pytest.approx(1 / 3)
    assert out["extra/absa_nl/routing/negative_auto_reply_without_rule"] == 1.0
    # the one that got a template is far out: the novelty rule sends it to review instead
    far = np.array([False, True, False, False])
    out = negative_replies(probs, y, thresholds, labels, table, 0.0, "absa_nl", far)
    assert out["extra/absa_nl/routing/negative_auto_reply"] == 0.0
    assert out["extra/absa_nl/routing/negative_auto_reply_without_novelty"] == pytest.approx(1 / 3)
    assert out["extra/absa_nl/routing/negative_auto_reply_without_rule"] == pytest.approx(2 / 3)
