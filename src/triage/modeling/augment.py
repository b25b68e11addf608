"""Style variants of training messages, for robustness to how real people write.

The authored messages are written to a brief; real text differs in style more than in content:
no capitals, no punctuation, typos, @mentions, emoji or none. A model can learn such surface
cues as if they carried the label (on real tweets the authored-data model calls 439 of 869
neutral tweets negative). ``train.augment`` replaces that share of the training examples, anew
each epoch, by a variant of the same message with one or two of the changes below, which keep
its intent and sentiment in Dutch and English alike.
"""

from __future__ import annotations

import re
import unicodedata

import numpy as np

_WORD = re.compile(r"\b[^\W\d_]{4,}\b")
_PUNCT = re.compile(r"[.,;:!?¡¿…\"“”‘’()\[\]]+")


def _lowercase(text: str, rng: np.random.Generator) -> str:
    return text.lower()


def _no_punctuation(text: str, rng: np.random.Generator) -> str:
    return re.sub(r"\s+", " ", _PUNCT.sub(" ", text)).strip() or text


def _typo(text: str, rng: np.random.Generator) -> str:
    """Two neighbouring letters of one longer word swapped."""
    # inside a word of 4+ letters (its first letter kept), two different neighbours
    spots = [
        i
        for word in _WORD.finditer(text)
        for i in range(word.start() + 1, word.end() - 1)
        if text[i] != text[i + 1]
    ]
    if not spots:
        return text
    i = spots[int(rng.integers(len(spots)))]
    return text[:i] + text[i + 1] + text[i] + text[i + 2 :]


def _mention(text: str, rng: np.random.Generator) -> str:
    """Addressed as on social media: a leading @handle (as the public sets write it)."""
    return "@user " + text


def _no_emoji(text: str, rng: np.random.Generator) -> str:
    kept = "".join(c for c in text if unicodedata.category(c) != "So")
    return re.sub(r"\s+", " ", kept).strip() or text


TRANSFORMS = (_lowercase, _no_punctuation, _typo, _mention, _no_emoji)


def style_variant(text: str, rng: np.random.Generator) -> str:
    """``text`` with one or two of :data:`TRANSFORMS` applied (never empty)."""
    chosen = rng.choice(len(TRANSFORMS), size=int(rng.integers(1, 3)), replace=False)
    for index in sorted(chosen):
        text = TRANSFORMS[index](text, rng)
    return text
