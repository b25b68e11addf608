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


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        # valid IBANs (ISO 7064 mod-97), unspaced, in groups of four, lower case, in sentences
        ("NL91ABNA0417164300", "<IBAN>"),
        (
            "Mijn IBAN is NL91 ABNA 0417 1643 00, graag terugstorten.",
            "Mijn IBAN is <IBAN>, graag terugstorten.",
        ),
        ("please refund to nl91abna0417164300 asap", "please refund to <IBAN> asap"),
        ("refund to GB82 WEST 1234 5698 7654 32 please", "refund to <IBAN> please"),
        # a following word of four letters is not taken into the IBAN
        ("BE68 5390 0754 7034 voor de huur", "<IBAN> voor de huur"),
        # valid card numbers (Luhn), unspaced, spaced, dashed, Amex grouping, with an expiry after
        ("betaald met 4111 1111 1111 1111 gisteren", "betaald met <CARD> gisteren"),
        ("my card 4111-1111-1111-1111 was charged twice", "my card <CARD> was charged twice"),
        ("kaartnummer 4111111111111111", "kaartnummer <CARD>"),
        ("amex 3782 822463 10005 exp 12/27", "amex <CARD> exp 12/27"),
        ("card 4111 1111 1111 1111 12/27", "card <CARD> 12/27"),
        (
            "Card 4111-1111-1111-1111 expired, refund to NL91ABNA0417164300 or mail a@b.nl",
            "Card <CARD> expired, refund to <IBAN> or mail <EMAIL>",
        ),
        # checksum-failing IBANs and cards are not masked as such
        ("rekening NL92ABNA0417164300 klopt niet", "rekening NL92ABNA0417164300 klopt niet"),
        (
            "account GB83 WEST 1234 5698 7654 32 is wrong",
            "account GB83 WEST 1234 5698 7654 32 is wrong",
        ),
        ("kaart 4111 1111 1111 1112 geweigerd", "kaart 4111 1111 1111 1112 geweigerd"),
        ("card 4111-1111-1111-1112 declined", "card 4111-1111-1111-1112 declined"),
        ("number 4111111111111112 declined", "number 4111111111111112 declined"),
        # ordinary text of similar shape stays as it was
        ("kortingscode WELKOM10 werkt niet", "kortingscode WELKOM10 werkt niet"),
        ("order NR-482913 kost 1299 euro", "order <ORDER> kost 1299 euro"),
        ("jaren 2024 2025 2026 2027", "jaren 2024 2025 2026 2027"),
        ("bel 06 1234 5678", "bel <PHONE>"),
    ],
)
def test_mask_pii_masks_valid_ibans_and_cards_whole(text, masked):
    assert mask_pii(text) == masked


def test_mask_pii_does_not_mask_a_checksum_failing_spaced_iban_as_iban():
    assert "<IBAN>" not in mask_pii("NL92 ABNA 0417 1643 00")
    assert mask_pii("NL91 ABNA 0417 1643 00") == "<IBAN>"


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
