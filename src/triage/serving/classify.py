"""``triage classify``: classify a JSONL or CSV file of messages with an exported bundle.

Reads ``classify.input`` (UTF-8 JSONL: one JSON object per line; or CSV with a header row) and
the bundle ``classify.bundle``; writes ``classify.output`` (default
``<input stem>.predictions.jsonl`` beside the input; CSV when the name ends in ``.csv``): one row
per classified message, in input order, with the input ``line``, ``id`` (from ``id_column``, or
null), ``text`` and the runtime's prediction (intent, sentiment, probabilities, decision, action,
priority, reason, lang, model_version). The file is read and classified in streaming batches
(memory stays flat on large files) behind a progress bar, and the output appears only when every
row is done (written to a temporary file, then renamed).

Needs only the serving install (no torch, no pandas).
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from tqdm import tqdm

from triage.config import Config
from triage.errors import TriageError
from triage.io import atomic_text
from triage.serving.record import PREDICTION_FIELDS, Prediction
from triage.serving.rollout import RolloutState, apply
from triage.serving.runtime import Runtime

log = logging.getLogger(__name__)

FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv"}
# CSV output columns: where the message came from, then the prediction; the per-label
# probabilities go in last, as JSON objects
JSON_COLUMNS = ("intent_probs", "sentiment_probs")
CSV_COLUMNS = (
    "line",
    "id",
    "text",
    "lang",
    *(name for name in PREDICTION_FIELDS if name not in JSON_COLUMNS),
    "model_version",
    *JSON_COLUMNS,
)


class InputError(TriageError, ValueError):
    """A problem with the input file; the message names the file, line or column."""


@dataclass
class Message:
    """One input row."""

    line: int  # 1-based line of the file where the row starts (CSV: the header is line 1)
    text: str
    id: str | None
    lang: str | None


def input_format(path: Path, fmt: str | None) -> str:
    """``jsonl`` or ``csv``: ``fmt`` if given, else from the file suffix."""
    fmt = fmt or FORMATS.get(path.suffix.lower())
    if fmt not in ("jsonl", "csv"):
        raise InputError(
            f"{path}: unknown format; set classify.format=jsonl or csv, or name the file "
            f"{' / '.join(FORMATS)}"
        )
    return fmt


def _open(path: Path) -> IO[str]:
    if not path.is_file():
        raise InputError(f"{path}: file not found (set classify.input to a JSONL or CSV file)")
    # utf-8-sig: spreadsheet exports often start with a byte-order mark
    return path.open(encoding="utf-8-sig", newline="")


def _field(value: Any, name: str, where: str) -> str | None:
    """A column's value as a string (numbers become text, null/empty None)."""
    if value is None or value == "":
        return None
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return str(value)
    raise InputError(f"{where}: {name!r} must be a string, got {type(value).__name__}")


def read_messages(
    path: Path,
    fmt: str,
    text_column: str,
    id_column: str | None = None,
    lang_column: str | None = None,
) -> Iterator[Message]:
    """The messages of a JSONL or CSV file, one at a time.

    A message with an empty text is yielded with ``text == ""``; the caller decides.

    Raises:
        InputError: the file is missing or not UTF-8, a line is not a JSON object, or a
            named column is absent (the message names it and lists the columns found).
    """
    columns = [c for c in (text_column, id_column, lang_column) if c]
    with _open(path) as f:
        try:
            if fmt == "csv":
                yield from _read_csv(path, f, columns, text_column, id_column, lang_column)
            else:
                yield from _read_jsonl(path, f, columns, text_column, id_column, lang_column)
        except UnicodeDecodeError:
            raise _not_utf8(path) from None


def _not_utf8(path: Path) -> InputError:
    """The error for a file that is not UTF-8, naming the line of the first bad byte."""
    raw = path.read_bytes()
    try:
        raw.decode("utf-8")
        line = "?"
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
    return InputError(
        f"{path}:{line}: not UTF-8; re-save the file as UTF-8 "
        "(for example: iconv -f cp1252 -t utf-8 in > out)"
    )


def _missing_columns(path: Path, where: str, wanted: list[str], found: list[str]) -> InputError:
    missing = [c for c in wanted if c not in found]
    return InputError(
        f"{path}{where}: column(s) {missing} not found; columns found: {found}. Set "
        "classify.text_column (and id_column / lang_column) to the file's names"
    )


def _read_csv(path, f, columns, text_column, id_column, lang_column) -> Iterator[Message]:
    reader = csv.DictReader(f)
    found = list(reader.fieldnames or [])
    if not found:
        raise InputError(f"{path}: empty file (a CSV needs a header row)")
    if any(c not in found for c in columns):
        raise _missing_columns(path, " (header)", columns, found)
    start = reader.line_num + 1
    for row in reader:
        where = f"{path}:{start}"
        yield Message(
            line=start,
            text=row[text_column] or "",
            id=_field(row.get(id_column), id_column, where) if id_column else None,
            lang=_field(row.get(lang_column), lang_column, where) if lang_column else None,
        )
        start = reader.line_num + 1


def _read_jsonl(path, f, columns, text_column, id_column, lang_column) -> Iterator[Message]:
    for number, raw in enumerate(f, start=1):
        if not raw.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InputError(f"{where}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise InputError(f"{where}: expected a JSON object per line, got {type(row).__name__}")
        if text_column not in row:  # id and language may be absent from a row: null
            raise _missing_columns(path, f":{number}", [text_column], list(row))
        yield Message(
            line=number,
            text=_field(row[text_column], text_column, where) or "",
            id=_field(row.get(id_column), id_column, where) if id_column else None,
            lang=_field(row.get(lang_column), lang_column, where) if lang_column else None,
        )


def count_rows(path: Path, fmt: str) -> int:
    """How many records the file holds (for the progress bar; a quick pass without parsing
    JSON)."""
    with _open(path) as f:
        try:
            if fmt == "csv":
                return max(0, sum(1 for _ in csv.reader(f)) - 1)
            return sum(1 for line in f if line.strip())
        except UnicodeDecodeError:
            raise _not_utf8(path) from None


def output_row(message: Message, prediction: Prediction) -> dict[str, Any]:
    """One output record: where the message came from and what the runtime said."""
    return {"line": message.line, "id": message.id, "text": message.text, **prediction.to_dict()}


class _Writer:
    """Writes output rows as JSONL or CSV."""

    def __init__(self, f: IO[str], fmt: str) -> None:
        self.f, self.fmt = f, fmt
        self.csv = csv.DictWriter(f, fieldnames=CSV_COLUMNS) if fmt == "csv" else None
        if self.csv is not None:
            self.csv.writeheader()

    def write(self, row: dict[str, Any]) -> None:
        if self.csv is None:
            self.f.write(json.dumps(row, ensure_ascii=False) + "\n")
            return
        flat = dict(row)
        for key in JSON_COLUMNS:
            flat[key] = None if row[key] is None else json.dumps(row[key])
        self.csv.writerow(flat)


def classify_file(
    runtime: Runtime,
    path: Path,
    out: Path,
    *,
    fmt: str | None = None,
    text_column: str = "text",
    id_column: str | None = None,
    lang_column: str | None = None,
    drop_empty: bool = False,
    batch_size: int = 64,
) -> dict[str, int]:
    """Classify every message of ``path`` into ``out``, streaming.

    Returns:
        ``{"classified": n, "dropped": m}``.

    Raises:
        InputError: bad input (see :func:`read_messages`), or an empty text when
            ``drop_empty`` is false (the message names the line).
    """
    path, out = Path(path), Path(out)
    fmt = input_format(path, fmt)
    out_fmt = "csv" if out.suffix.lower() == ".csv" else "jsonl"
    total = count_rows(path, fmt)
    counts = {"classified": 0, "dropped": 0}
    dropped_lines: list[int] = []
    # a chunk of several onnxruntime batches: the runtime sorts it by length, so longer chunks
    # pad less; the memory held is a few hundred messages whatever the file's size
    chunk_size = batch_size * 8
    with (
        atomic_text(out) as f,
        tqdm(total=total, unit="msg", desc=f"classify {path.name}", disable=None) as bar,
    ):
        writer = _Writer(f, out_fmt)
        chunk: list[Message] = []
        # the bundle's pilot list (routing.automation.enabled), as the service starts with
        pilot = RolloutState(pilot=runtime.routing.automation_enabled)
        review = str(runtime.routing.not_confident.action)

        def flush() -> None:
            predictions = runtime.classify(
                [m.text for m in chunk], [m.lang for m in chunk], batch_size=batch_size
            )
            predictions = [apply(pilot, p, review) for p in predictions]
            for message, prediction in zip(chunk, predictions, strict=True):
                writer.write(output_row(message, prediction))
            counts["classified"] += len(chunk)
            bar.update(len(chunk))
            chunk.clear()

        for message in read_messages(path, fmt, text_column, id_column, lang_column):
            if not message.text.strip():
                if not drop_empty:
                    raise InputError(
                        f"{path}:{message.line}: empty text in column {text_column!r}; fix the "
                        "row, or set classify.on_empty=drop to skip such rows"
                    )
                counts["dropped"] += 1
                dropped_lines.append(message.line)
                bar.update(1)
                continue
            chunk.append(message)
            if len(chunk) >= chunk_size:
                flush()
        if chunk:
            flush()
    if dropped_lines:
        log.warning(
            "dropped %d message(s) with an empty text, at lines %s%s",
            len(dropped_lines),
            dropped_lines[:10],
            " ..." if len(dropped_lines) > 10 else "",
        )
    return counts


def run(cfg: Config) -> Path:
    """``triage classify``: classify ``cfg.classify.input`` into ``cfg.classify.output``."""
    ccfg = cfg.classify
    if not ccfg.input:
        raise InputError("no input file: run `triage classify classify.input=messages.jsonl`")
    path = Path(ccfg.input)
    out = Path(ccfg.output) if ccfg.output else path.with_name(f"{path.stem}.predictions.jsonl")
    if out.resolve() == path.resolve():
        raise InputError(f"classify.output is the input file {path}; choose another name")
    # fail on a bad format or column before loading the model
    next(
        read_messages(
            path,
            input_format(path, ccfg.format),
            ccfg.text_column,
            ccfg.id_column,
            ccfg.lang_column,
        ),
        None,
    )
    runtime = Runtime.load(ccfg.bundle, threads=ccfg.threads)
    log.info("bundle %s (model %s)", ccfg.bundle, runtime.model_version)
    counts = classify_file(
        runtime,
        path,
        out,
        fmt=ccfg.format,
        text_column=ccfg.text_column,
        id_column=ccfg.id_column,
        lang_column=ccfg.lang_column,
        drop_empty=str(ccfg.on_empty) == "drop",
        batch_size=ccfg.batch_size,
    )
    log.info("classified %d message(s) into %s", counts["classified"], out)
    return out
