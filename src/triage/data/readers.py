"""Readers for user files and hub datasets: each yields :class:`RawRow` records."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from triage.errors import DataError
from triage.schema import SCHEMA

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}


@dataclass
class RawRow:
    """A row as a source gives it, before cleaning and label mapping.

    Labels are the source's own names (a list where the source is multi-label); ``where`` says
    where the row came from (``file:line``) for error messages and the report.
    """

    text: Any
    where: str
    intent: Any = None
    sentiment: Any = None
    lang: str | None = None
    id: str | None = None
    channel: str | None = None
    created_at: str | None = None
    pair_id: str | None = None  # shared by the translations of one message
    split: str | None = None  # a fixed split (an original benchmark test set); None: ours to draw


# --------------------------------------------------------------------------------------------
# Reading files


def check_utf8(path: Path) -> None:
    """Raise :class:`DataError` naming the line of the first byte that is not UTF-8."""
    raw = path.read_bytes()
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(
            f"{path}: not UTF-8 (line {line}, byte {exc.start}: {exc.reason}). "
            "Re-save the file as UTF-8 (for example: iconv -f cp1252 -t utf-8 in > out)."
        ) from None


def load_table(path: Path, fmt: str | None = None, **csv_options: Any) -> pd.DataFrame:
    """Read a CSV, JSONL or Parquet file with ``datasets`` into a DataFrame of strings.

    Args:
        path: the file.
        fmt: ``csv``, ``jsonl`` or ``parquet``; None infers it from the suffix.
        **csv_options: passed to the CSV reader (``sep``, ``column_names``, ``quoting``...).

    Raises:
        DataError: missing file, unknown format, not UTF-8, unparsable or empty.
    """
    import datasets

    if not path.is_file():
        raise DataError(
            f"{path}: file not found. Check the source's `path` (relative paths "
            "resolve against the project folder, or paths.public_data for public sets)."
        )
    fmt = fmt or FORMATS.get(path.suffix.lower())
    if fmt not in ("csv", "jsonl", "parquet"):
        raise DataError(
            f"{path}: unknown format; set the source's `format` to csv, jsonl or "
            "parquet, or use one of the suffixes " + ", ".join(FORMATS)
        )
    if fmt != "parquet":
        check_utf8(path)
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty")
    builder = {"csv": "csv", "jsonl": "json", "parquet": "parquet"}[fmt]
    datasets.disable_progress_bars()
    try:
        table = datasets.load_dataset(builder, data_files=str(path), split="train", **csv_options)
    except Exception as exc:  # datasets wraps pyarrow/pandas errors in many types
        raise DataError(f"{path}: cannot be read as {fmt}: {exc}") from exc
    frame = table.to_pandas()
    # ids and labels may be read as numbers; the schema is text
    return frame.astype(object).where(frame.notna(), None)


def read_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file, read with ``datasets``' text builder."""
    import datasets

    if not path.is_file():
        raise DataError(f"{path}: file not found")
    check_utf8(path)
    datasets.disable_progress_bars()
    return datasets.load_dataset("text", data_files=str(path), split="train")["text"]


def read_file_source(path: Path, fmt: str | None, columns: dict[str, str]) -> Iterator[RawRow]:
    """Rows of a user file (or of every data file in a folder) with columns mapped to the schema.

    Args:
        path: a file, or a folder whose ``*.csv``/``*.jsonl``/``*.parquet`` files are read in
            name order.
        fmt: the format, or None to infer it per file from the suffix.
        columns: schema field -> the file's column name; fields not named use their own name.
    """
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in FORMATS)
        if not files:
            raise DataError(f"{path}: folder has no {', '.join(FORMATS)} files")
    else:
        files = [path]
    unknown = set(columns) - set(SCHEMA)
    if unknown:
        raise DataError(
            f"columns maps unknown schema fields {sorted(unknown)}; the fields are {list(SCHEMA)}"
        )
    for file in files:
        frame = load_table(file, fmt)
        names = {name: columns.get(name, name) for name in SCHEMA}
        if names["text"] not in frame.columns:
            raise DataError(
                f"{file}: no text column {names['text']!r}; the file has columns "
                f"{list(frame.columns)}. Map it with the source's `columns: {{text: <column>}}`."
            )
        for name in set(columns) - {"text"}:
            if columns[name] not in frame.columns:
                raise DataError(
                    f"{file}: column {columns[name]!r} (mapped to {name}) not found; "
                    f"the file has columns {list(frame.columns)}"
                )
        present = {name: col for name, col in names.items() if col in frame.columns}
        # line numbers: CSV has a header line, JSONL does not, Parquet has rows
        offset = {"csv": 2, "jsonl": 1}.get(fmt or FORMATS.get(file.suffix.lower(), ""), 0)
        label = "line" if offset else "row"
        for i, row in enumerate(frame[list(present.values())].itertuples(index=False)):
            values = dict(zip(present, row, strict=True))
            yield RawRow(
                text=values["text"],
                where=f"{file}:{label} {i + offset}",
                intent=values.get("intent"),
                sentiment=values.get("sentiment"),
                lang=opt_str(values.get("lang")),
                id=opt_str(values.get("id")),
                channel=opt_str(values.get("channel")),
                created_at=opt_str(values.get("created_at")),
                pair_id=opt_str(values.get("pair_id")),
            )


def has_data_files(path: Path) -> bool:
    """Whether ``path`` is a data file, or a folder with at least one (by suffix)."""
    if path.is_dir():
        return any(p.suffix.lower() in FORMATS for p in path.iterdir())
    return path.is_file()


def read_hub_source(
    name: str, options: dict[str, Any], columns: dict[str, str]
) -> Iterator[RawRow]:
    """Rows of a Hugging Face hub dataset (needs internet). ``options``: ``config``, ``split``."""
    import datasets

    split = options.get("split", "train")
    try:
        table = datasets.load_dataset(name, options.get("config"), split=split)
    except Exception as exc:
        raise DataError(
            f"hub dataset {name!r} cannot be loaded ({exc}). Hub datasets need "
            "internet; offline, export it to a local file and use kind: file."
        ) from exc
    text_col = columns.get("text", "text")
    if text_col not in table.column_names:
        raise DataError(
            f"hub dataset {name!r}: no text column {text_col!r}; it has "
            f"{table.column_names}. Map it with `columns: {{text: <column>}}`."
        )
    for i, row in enumerate(table):
        values = {f: row.get(columns.get(f, f)) for f in SCHEMA}
        yield RawRow(
            text=row[text_col],
            where=f"{name}[{split}]:{i}",
            intent=values["intent"],
            sentiment=values["sentiment"],
            lang=opt_str(values["lang"]),
            id=opt_str(values["id"]),
            pair_id=opt_str(values["pair_id"]),
        )


def opt_str(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = str(value).strip()
    return text or None
