"""Adapters for the public datasets in ``paths.public_data`` (read in place, never copied).

Each adapter knows one dataset's file layout and yields :class:`~triage.data.readers.RawRow`
with the dataset's own label names; mapping them into the taxonomy is configuration
(``configs/data/*.yaml``), not code; :mod:`triage.data.sources` registers them as source
kinds. See ``../shared/data/README.md`` for provenance.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from triage.data.readers import RawRow, load_table, read_lines
from triage.data.splits import hash_seed
from triage.errors import DataError


def read_bitext(path: Path, options: dict[str, Any]) -> Iterator[RawRow]:
    """Bitext customer-support CSV: ``utterance`` and ``intent`` (27 intents)."""
    frame = load_table(path, "csv")
    _need_columns(path, frame.columns, ["utterance", "intent"])
    for i, (text, intent) in enumerate(zip(frame["utterance"], frame["intent"], strict=True)):
        yield RawRow(text=text, intent=intent, where=f"{path}:line {i + 2}", id=f"bitext-{i}")


def read_airline(path: Path, options: dict[str, Any]) -> Iterator[RawRow]:
    """Twitter US airline sentiment: ``text``, ``airline_sentiment``, ``tweet_created``
    (dd-mm-yyyy HH.MM). The ``tweet_id`` column was mangled by a spreadsheet: ids are ours."""
    frame = load_table(path, "csv")
    _need_columns(path, frame.columns, ["text", "airline_sentiment", "tweet_created"])
    for i, row in enumerate(frame.itertuples(index=False)):
        yield RawRow(
            text=row.text,
            sentiment=row.airline_sentiment,
            where=f"{path}:line {i + 2}",
            id=f"airline-{i}",
            channel="x",
            created_at=_airline_date(row.tweet_created),
        )


def _airline_date(value: Any) -> str | None:
    try:
        return datetime.strptime(str(value), "%d-%m-%Y %H.%M").isoformat()
    except ValueError:
        return None


# XED numbers Plutchik's emotions alphabetically; neu_en.txt marks neutral lines with 9.
XED_EMOTIONS = {
    "1": "anger",
    "2": "anticipation",
    "3": "disgust",
    "4": "fear",
    "5": "joy",
    "6": "sadness",
    "7": "surprise",
    "8": "trust",
    "0": "neutral",
    "9": "neutral",
}


def read_xed(path: Path, options: dict[str, Any]) -> Iterator[RawRow]:
    """XED emotion lines: ``language: nl`` reads the projected Dutch lines, ``en`` the English
    gold lines plus the neutral ones. Labels are lists of emotion names (multi-label)."""
    language = options.get("language", "nl")
    if language == "nl":
        files = [(path / "nl-projections.tsv", False)]
    elif language == "en":
        files = [(path / "en-annotated.tsv", False), (path / "neu_en.txt", True)]
    else:
        raise DataError(f"xed: options.language must be nl or en, got {language!r}")
    for file, label_first in files:
        # tab-separated without quoting (subtitles hold unbalanced quotes); a few neu_en.txt
        # lines end in stray tabs
        for i, line in enumerate(read_lines(file)):
            first, _, rest = line.partition("\t")
            label, text = (first, rest.rstrip("\t")) if label_first else (rest, first)
            codes = [c.strip() for c in label.split(",") if c.strip()]
            yield RawRow(
                text=text,
                where=f"{file}:line {i + 1}",
                id=f"xed-{file.stem}-{i}",
                sentiment=[XED_EMOTIONS.get(c, c) for c in codes],
            )


def read_youtube_spam(path: Path, options: dict[str, Any]) -> Iterator[RawRow]:
    """YouTube spam collection: five CSVs with ``CONTENT`` and ``CLASS`` (1 spam, 0 ham)."""
    files = sorted(path.glob("Youtube*.csv"))
    if not files:
        raise DataError(f"{path}: no Youtube*.csv files")
    for file in files:
        frame = load_table(file, "csv")
        _need_columns(file, frame.columns, ["CONTENT", "CLASS", "DATE"])
        for i, row in enumerate(frame.itertuples(index=False)):
            yield RawRow(
                text=row.CONTENT,
                intent=str(row.CLASS),
                where=f"{file}:line {i + 2}",
                id=f"youtube-{file.stem}-{i}",
                channel="youtube_comment",
                created_at=row.DATE,
            )


def read_tweeteval(path: Path, options: dict[str, Any]) -> Iterator[RawRow]:
    """TweetEval task folder (``options.task``: offensive, hate, ...): aligned
    ``{split}_text.txt`` / ``{split}_labels.txt``; all splits are pooled and split by us.
    Labels go to the intent head unless ``options.head: sentiment``."""
    task = options.get("task")
    if not task:
        raise DataError("tweeteval: set options.task (offensive, hate, emotion, irony, sentiment)")
    head = options.get("head", "intent")
    for split in options.get("splits", ["train", "val", "test"]):
        for text, label, where in _aligned(
            path / task / f"{split}_text.txt", path / task / f"{split}_labels.txt"
        ):
            line = where.split()[-1]
            yield RawRow(
                text=text,
                where=where,
                channel="x",
                id=f"tweeteval-{task}-{split}-{line}",
                **{head: label},
            )


def read_fewshot(path: Path, options: dict[str, Any]) -> Iterator[RawRow]:
    """BANKING77 / CLINC150 / HWU64 folder: ``{split}/seq.in`` and ``{split}/label``.

    ``options.fixed``: original split -> our split it stays in (``{test: test}`` keeps the
    original test set); ``options.pooled``: original splits that we split into
    train/val/calib ourselves.
    """
    fixed = dict(options.get("fixed", {"test": "test"}))
    pooled = list(options.get("pooled", ["train", "valid"]))
    for split in [*fixed, *pooled]:
        for text, label, where in _aligned(path / split / "seq.in", path / split / "label"):
            yield RawRow(
                text=text,
                intent=label,
                where=where,
                id=f"{path.name.lower()}-{split}-{where.split()[-1]}",
                split=fixed.get(split),
            )


def read_absa(path: Path, options: dict[str, Any]) -> Iterator[RawRow]:
    """SemEval-2016 ABSA XML (Review > sentences > sentence > text, Opinions > Opinion
    polarity), one row per sentence with a sentence-level sentiment: all its opinions agree ->
    that polarity; no opinion -> ``neutral``; opinions that disagree -> left out (no single
    label). ``path``: the XML file, or a folder of them. Development and evaluation data only
    (no licence is stated): never train a shipped model on it."""
    from xml.etree import ElementTree

    files = sorted(path.glob("*.xml")) if path.is_dir() else [path]
    if not files:
        raise DataError(f"{path}: no .xml files")
    for file in files:
        try:
            root = ElementTree.parse(file).getroot()
        except (ElementTree.ParseError, OSError) as exc:
            raise DataError(f"{file}: not a readable SemEval ABSA XML file ({exc})") from exc
        for n, sentence in enumerate(root.iter("sentence"), start=1):
            text = sentence.findtext("text")
            polarities = {o.get("polarity") for o in sentence.iter("Opinion")}
            if len(polarities) > 1:
                continue  # mixed: no sentence-level label
            yield RawRow(
                text=text,
                sentiment=polarities.pop() if polarities else "neutral",
                where=f"{file}:sentence {n}",
                id=f"absa-{sentence.get('id') or n}",
            )


#: our language code -> MASSIVE's locale (its file name)
MASSIVE_LOCALES = {"nl": "nl-NL", "en": "en-US"}
#: MASSIVE's partitions -> our split (dev: None, drawn by us into val and calib)
MASSIVE_SPLITS = {"train": "train", "dev": None, "test": "test"}


def read_massive(path: Path, options: dict[str, Any]) -> Iterator[RawRow]:
    """MASSIVE 1.1 JSONL per locale (``{locale}.jsonl``: ``id``, ``locale``, ``partition``,
    ``intent``, ``utt``, ...). The same ``id`` is the same utterance in every locale: it becomes
    the rows' ``pair_id`` (``massive-{id}``); the row ids are ``massive-{lang}-{id}``.

    ``options.languages``: the languages whose test partition is read (default nl and en);
    ``options.train_languages``: those whose train and dev partitions are read too (default:
    all of ``languages``; one of them for cross-lingual transfer); ``options.train_per_intent``:
    language -> at most this many train utterances per intent (seeded; the data-size curve);
    ``options.partitions``: which MASSIVE partitions to read (default all three);
    ``options.sentiment``: a sentiment label given to every utterance, whose intent is then left
    out (virtual-assistant requests as plain, neutral statements beside another taxonomy).
    """
    languages = list(options.get("languages", list(MASSIVE_LOCALES)))
    partitions = set(options.get("partitions", list(MASSIVE_SPLITS)))
    sentiment = options.get("sentiment")
    train_languages = set(options.get("train_languages", languages))
    caps = {k: v for k, v in (options.get("train_per_intent") or {}).items() if v is not None}
    if not partitions <= set(MASSIVE_SPLITS):
        raise DataError(
            f"massive: options.partitions {sorted(partitions)}; choose among {list(MASSIVE_SPLITS)}"
        )
    unknown = sorted({*languages, *train_languages, *caps} - set(MASSIVE_LOCALES))
    if unknown:
        raise DataError(
            f"massive: unknown languages {unknown}; this copy has {sorted(MASSIVE_LOCALES)}"
        )
    for lang in languages:
        file = path / f"{MASSIVE_LOCALES[lang]}.jsonl"
        frame = load_table(file, "jsonl")
        _need_columns(file, frame.columns, ["id", "partition", "intent", "utt"])
        frame["line"] = np.arange(1, len(frame) + 1)
        unknown_parts = sorted(set(frame["partition"]) - set(MASSIVE_SPLITS))
        if unknown_parts:
            raise DataError(f"{file}: unknown partitions {unknown_parts}; expected train/dev/test")
        if lang not in train_languages:
            frame = frame[frame["partition"] == "test"]
        elif lang in caps:
            frame = _cap_train(frame, int(caps[lang]), seed=hash_seed(f"massive-{lang}"))
        frame = frame[frame["partition"].isin(partitions)]
        for row in frame.itertuples(index=False):
            yield RawRow(
                text=row.utt,
                intent=None if sentiment else row.intent,
                sentiment=sentiment,
                lang=lang,
                where=f"{file}:line {row.line}",
                id=f"massive-{lang}-{row.id}",
                pair_id=f"massive-{row.id}",
                split=MASSIVE_SPLITS[row.partition],
            )


def _cap_train(frame: Any, cap: int, seed: int) -> Any:
    """``frame`` with at most ``cap`` train rows per intent (a seeded draw; 0 keeps none) and
    every dev and test row."""
    train = frame[frame["partition"] == "train"]
    drawn = train.groupby("intent", group_keys=False).apply(
        lambda rows: rows.sample(n=min(cap, len(rows)), random_state=seed % 2**32)
    )
    return frame[(frame["partition"] != "train") | frame.index.isin(drawn.index)]


def _aligned(text_file: Path, label_file: Path) -> Iterator[tuple[str, str, str]]:
    texts, labels = read_lines(text_file), read_lines(label_file)
    if len(texts) != len(labels):
        raise DataError(f"{text_file} has {len(texts)} lines but {label_file} has {len(labels)}")
    for i, (text, label) in enumerate(zip(texts, labels, strict=True)):
        yield text, label.strip(), f"{text_file}:line {i + 1}"


def _need_columns(path: Path, have: Any, need: list[str]) -> None:
    missing = [c for c in need if c not in have]
    if missing:
        raise DataError(
            f"{path}: missing columns {missing} (has {list(have)}); is this the "
            "original file of that dataset?"
        )


ADAPTERS: dict[str, Callable[[Path, dict[str, Any]], Iterator[RawRow]]] = {
    "bitext": read_bitext,
    "airline": read_airline,
    "xed": read_xed,
    "youtube_spam": read_youtube_spam,
    "tweeteval": read_tweeteval,
    "fewshot": read_fewshot,
    "massive": read_massive,
    "absa": read_absa,
}
