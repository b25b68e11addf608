"""Style variants keep the message and change only how it is written."""

from collections import Counter

import numpy as np

from triage.modeling.augment import TRANSFORMS, style_variant

TEXTS = ["Waar blijft mijn pakket?! Al een WEEK 😡", "Do you ship to Germany?", "😂😂", "ok"]


def test_each_transform_changes_style_only():
    rng = np.random.default_rng(0)
    lowercase, no_punctuation, typo, mention, no_emoji = TRANSFORMS
    text = TEXTS[0]
    assert lowercase(text, rng) == "waar blijft mijn pakket?! al een week 😡"
    assert no_punctuation(text, rng) == "Waar blijft mijn pakket Al een WEEK 😡"
    assert mention(text, rng) == "@user " + text
    assert no_emoji(text, rng) == "Waar blijft mijn pakket?! Al een WEEK"
    swapped = typo(text, rng)
    assert swapped != text and Counter(swapped) == Counter(text)  # two letters swapped
    assert sum(a != b for a, b in zip(swapped, text, strict=True)) == 2
    # nothing to change, or nothing would be left: the text stays as it is
    assert no_emoji("😂😂", rng) == "😂😂" and no_punctuation("?!", rng) == "?!"
    assert typo("ok 42", rng) == "ok 42"


def test_variants_are_seeded_and_never_empty():
    first = [style_variant(t, np.random.default_rng(3)) for t in TEXTS]
    again = [style_variant(t, np.random.default_rng(3)) for t in TEXTS]
    assert first == again and all(v.strip() for v in first)
    rng = np.random.default_rng(1)
    variants = {style_variant(TEXTS[0], rng) for _ in range(50)}
    assert len(variants) > 5  # different changes on different draws
