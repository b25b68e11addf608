"""Texts without labels from configured sources: the unlabelled texts a student is distilled on
(``train.distill.unlabelled``) and the corpus the vocabulary is trimmed to (``triage vocab``)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from triage.data.sources import read_source
from triage.errors import DataError
from triage.text import clean_text, dedup_key, mask_pii


def source_texts(
    sources: dict[str, Any],
    project_root: Path,
    public_root: Path,
    exclude: Sequence[str] = (),
    max_rows: int | None = None,
    seed: int = 0,
    pii_mask: bool = False,
    where: str = "sources",
) -> list[str]:
    """The texts of ``sources`` (data source configs as dicts; labels ignored), cleaned as
    ``prepare`` cleans them, deduplicated, without a public set's fixed test partition and
    without those whose dedup key is in ``exclude`` (so that nothing of val, calib or test
    leaks in); at most ``max_rows`` (a seeded sample) when given.

    Raises:
        DataError: a source has no usable text (``where`` names the config key).
    """
    seen = {dedup_key(t) for t in exclude}
    texts: list[str] = []
    for name, source in sources.items():
        before = len(texts)
        for row in read_source(name, source, project_root, public_root) or []:
            if row.split == "test" or not isinstance(row.text, str):
                continue
            text = clean_text(row.text)
            key = dedup_key(text)
            if text and key not in seen:
                seen.add(key)
                texts.append(mask_pii(text) if pii_mask else text)
        if len(texts) == before:
            raise DataError(f"{where}.{name}: no text left (all empty, test or excluded)")
    if max_rows is not None:
        random.Random(seed).shuffle(texts)
        texts = texts[:max_rows]
    return texts
