"""Cleaning, deduplication keys, PII masking and language detection on literal strings."""

from __future__ import annotations

import pytest

from triage.cli import main
from triage.text import clean_text, dedup_key, detect_languages, mask_pii


def test_clean_text_keeps_the_message_and_drops_invisible_characters():
    assert clean_text("  Waar\u200b blijft\n\tmn   PAKKET?? 😡 ") == "Waar blijft mn PAKKET?? 😡"


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Waar blijft mn pakket??", "waar blijft MN pakket"),
        ("Ｎｏｒｒｌａｎｄ ＡＢＣ１２３", "norrland abc123"),
        ("love it 😍", "Love it!!! 🔥"),
    ],
)
def test_dedup_key_merges_variants(a, b):
    assert dedup_key(a) == dedup_key(b)


def test_dedup_key_keeps_different_emoji_only_messages_apart():
    assert dedup_key("😂😂") != dedup_key("🔥🔥")


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("mail jan.de.vries@gmail.com", "mail <EMAIL>"),
        ("bel 06-12345678 of +31 6 1234 5678", "bel <PHONE> of <PHONE>"),
        ("+32 470 12 34 56 graag terugbellen", "<PHONE> graag terugbellen"),
        ("order #NR-482913 en 1000234567", "order <ORDER> en <ORDER>"),
        ("kijk https://postnl.nl/tracktrace/3SABC en bit.ly/x1", "kijk <URL> en <URL>"),
        ("@norrland_support help", "<USER> help"),
        ("prijs is 129 euro voor 2 stuks", "prijs is 129 euro voor 2 stuks"),  # no false positives
    ],
)
def test_mask_pii(text, masked):
    assert mask_pii(text) == masked


def test_detect_languages_on_short_informal_messages():
    texts = [
        "ff checken of mn pakket er al is",
        "where is my order??",
        "Kan ik iemand spreken?",
        "cancel my sub pls",
        "allez, ge moogt da terugsturen",
        "😂😂",
    ]
    assert detect_languages(texts, ["nl", "en"]) == ["nl", "en", "nl", "en", "nl", "und"]


def test_detect_languages_rejects_unknown_codes():
    with pytest.raises(ValueError, match="does not know"):
        detect_languages(["hoi"], ["nl", "xx"])


def test_cli_reports_bad_overrides_without_a_traceback(capsys):
    assert main(["prepare", "data.seed=abc"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("triage prepare: error: invalid configuration") and "seed" in err
    assert main(["nonsense"]) == 2
