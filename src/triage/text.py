"""Text helpers shared by the data layer: cleaning, the deduplication key, PII masking and
language detection. Pure functions on strings; no I/O."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from functools import cache
from typing import Any

from triage.errors import ConfigError

# Control and format characters (zero-width spaces, BOMs, bidi marks) that carry no meaning in a
# message but make identical texts look different.
_INVISIBLE = re.compile(r"[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f\u200b-\u200f\u2060\ufeff]")
_SPACES = re.compile(r"\s+")
_NON_WORD = re.compile(r"[\W_]+")


def clean_text(text: str) -> str:
    """Remove invisible characters, turn every run of whitespace into one space, strip.

    The text is otherwise kept as written (case, emoji, accents): the tokenizer does its own
    NFKC normalisation, and casing carries signal (ALL-CAPS anger).
    """
    return _SPACES.sub(" ", _INVISIBLE.sub("", text)).strip()


def dedup_key(text: str) -> str:
    """The key under which two messages count as the same text.

    NFKC (full-width and compatibility forms fold to plain ones), case-folded, with punctuation,
    emoji and symbols removed and whitespace collapsed: "Waar blijft mn pakket??" and
    "waar blijft mn pakket" share a key. Texts with no letters or digits (emoji-only comments)
    keep their cleaned form as key so that different emoji stay different.
    """
    folded = unicodedata.normalize("NFKC", text).casefold()
    key = _NON_WORD.sub(" ", folded).strip()
    return key or clean_text(folded)


def _iban_valid(candidate: str) -> bool:
    """ISO 13616 shape (2 letters, 2 check digits, 11-30 alphanumerics) and ISO 7064 mod-97."""
    iban = candidate.replace(" ", "").upper()
    if not 15 <= len(iban) <= 34:
        return False
    digits = "".join(str(int(char, 36)) for char in iban[4:] + iban[:4])
    return int(digits) % 97 == 1


def _luhn_valid(candidate: str) -> bool:
    """13-19 digits (separators dropped) whose Luhn checksum holds."""
    digits = [int(char) for char in candidate if char.isdigit()]
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for position, digit in enumerate(reversed(digits)):
        if position % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def _checked(placeholder: str, valid: Callable[[str], bool]) -> Callable[[re.Match[str]], str]:
    """A replacement that masks the longest part of a match, cut at a separator, whose checksum
    holds, and keeps the rest: the pattern may take in a group that follows the number
    ("NL91 ABNA 0417 1643 00 voor", "4111 1111 1111 1111 12/27"). No valid part: kept as is."""

    def replace(match: re.Match[str]) -> str:
        found = match.group()
        cuts = [len(found), *(i for i in range(len(found) - 1, 0, -1) if found[i] in " -")]
        for cut in cuts:
            if valid(found[:cut]):
                return placeholder + found[cut:]
        return found

    return replace


# PII patterns, applied in this order (URLs before emails and handles, so that an @ inside a URL
# is masked once). Placeholders are plain words in angle brackets that survive tokenisation.
# IBANs and card numbers carry a checksum and are masked only where it holds, so that words and
# order numbers of the same shape stay; they come before phones, whose rule would otherwise eat
# the digit groups of "NL91 ABNA 0417 1643 00" and leave the rest in clear.
_PII_PATTERNS: tuple[tuple[str | Callable[[re.Match[str]], str], re.Pattern[str]], ...] = (
    (
        "<URL>",
        re.compile(
            r"\b(?:https?://|www\.)\S+"
            r"|\b[\w-]+(?:\.[\w-]+)*\.(?:com|nl|be|io|ly|net|org|eu|de|co)/\S*",
            re.I,
        ),
    ),
    ("<EMAIL>", re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")),
    ("<USER>", re.compile(r"(?<![\w@])@[A-Za-z0-9_.]{2,30}")),
    # IBAN, unspaced or in groups of four: NL91ABNA0417164300, NL91 ABNA 0417 1643 00
    (
        _checked("<IBAN>", _iban_valid),
        re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b", re.I),
    ),
    # payment card, unspaced or in groups split by one kind of separator: 4111 1111 1111 1111,
    # 4111-1111-1111-1111, 3782 822463 10005 (a card number never starts with 0, a phone does)
    (
        _checked("<CARD>", _luhn_valid),
        re.compile(r"(?<![\w+])(?:[1-9]\d{12,18}|[1-9]\d{3}([ -])\d{1,6}(?:\1\d{1,6}){1,3})(?!\w)"),
    ),
    # phone numbers, before order numbers (whose digit runs they contain):
    # +31 6 12345678, 06-12345678, (020) 123 4567, +32 470 12 34 56
    ("<PHONE>", re.compile(r"(?:\+\d{2}[\s-]?|\b0)\(?\d{1,3}\)?(?:[\s-]?\d{2,4}){2,4}\b")),
    # order-like references: a hashtag or letter prefix followed by digits (#NR-482913, NR482913)
    # and bare runs of 6+ digits; after phones, which start with + or 0
    ("<ORDER>", re.compile(r"#?\b[A-Z]{1,4}-?\d{4,}\b|#\d{4,}\b|\b\d{6,12}\b")),
)


def mask_pii(text: str) -> str:
    """Replace URLs, emails, @handles, IBANs, payment card numbers, phone numbers and order-like
    numbers by placeholders (``<URL>``, ``<EMAIL>``, ``<USER>``, ``<IBAN>``, ``<CARD>``,
    ``<PHONE>``, ``<ORDER>``); IBANs and cards only where their checksum holds."""
    for placeholder, pattern in _PII_PATTERNS:
        text = pattern.sub(placeholder, text)
    return text


# ISO 639-1 codes that the detector is built for, by lingua's language names.
_LINGUA_NAMES = {
    "nl": "DUTCH",
    "en": "ENGLISH",
    "de": "GERMAN",
    "fr": "FRENCH",
    "es": "SPANISH",
    "it": "ITALIAN",
    "pt": "PORTUGUESE",
    "tr": "TURKISH",
}
UNDETERMINED = "und"


@cache
def _detector(languages: tuple[str, ...]):
    # lingua ships its models inside the wheel (offline) and is built for short text; limiting
    # it to the configured languages makes it both faster and more accurate on 3-word messages.
    from lingua import Language, LanguageDetectorBuilder

    unknown = [code for code in languages if code not in _LINGUA_NAMES]
    if unknown:
        raise ConfigError(
            f"language detection does not know {unknown}; supported: {sorted(_LINGUA_NAMES)}"
        )
    if len(languages) < 2:
        raise ConfigError("language detection needs at least two configured languages")
    chosen = [getattr(Language, _LINGUA_NAMES[code]) for code in languages]
    return LanguageDetectorBuilder.from_languages(*chosen).build()


def detect_languages(texts: Sequence[str], languages: Iterable[str]) -> list[str]:
    """ISO codes for each text among ``languages``; ``und`` where no language can be told
    (emoji-only or digits-only texts)."""
    codes = {v: k for k, v in _LINGUA_NAMES.items()}
    detector = _detector(tuple(languages))
    found = detector.detect_languages_in_parallel_of(list(texts))
    return [codes[lang.name] if lang is not None else UNDETERMINED for lang in found]


# What PostgreSQL's text type cannot hold (and psycopg cannot send): NUL and lone surrogates.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(value: Any) -> Any:
    """``value`` with NUL and lone surrogates replaced by U+FFFD in every string, also inside
    the lists and dicts (keys too) of JSON fields; other values unchanged. The one rule at the
    storage boundary of the prediction log and the audit store, on every backend, so SQLite and
    PostgreSQL accept and return the same things."""
    if isinstance(value, str):
        return _UNSTORABLE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable(v) for v in value]
    return value
