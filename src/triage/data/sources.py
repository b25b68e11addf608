"""Every kind of source a data config may name (``data.sources.<name>.kind``), in one registry:
``file`` (a user's CSV / JSONL / Parquet file or folder), ``hub`` (a Hugging Face hub dataset,
needs internet) and the public-set adapters of :mod:`triage.data.public`.

A new kind is one entry here; the config takes any kind this registry knows, and an unknown one
fails when the data is built, with the list of known kinds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from triage.data.public import ADAPTERS
from triage.data.readers import RawRow, has_data_files, read_file_source, read_hub_source
from triage.errors import DataError

#: a kind's reader: (source name, source config, project root, public-data root) -> rows, or
#: None where an optional source has nothing yet
SourceReader = Callable[[str, dict[str, Any], Path, Path], Iterator[RawRow] | None]


def resolve_path(path: str, root: Path) -> Path:
    """``path`` as given when absolute (``~`` expanded), else relative to ``root``."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else root / p


def _file(name: str, source: dict[str, Any], project_root: Path, _public: Path):
    path = resolve_path(source["path"], project_root)
    if source.get("optional") and not has_data_files(path):
        return None  # nothing yet (the report stays as without the source)
    return read_file_source(path, source["format"], source["columns"])


def _hub(name: str, source: dict[str, Any], _project: Path, _public: Path):
    return read_hub_source(source["path"], source["options"], source["columns"])


def _public(adapter: Callable[[Path, dict[str, Any]], Iterator[RawRow]]) -> SourceReader:
    def read(name: str, source: dict[str, Any], _project: Path, public_root: Path):
        path = resolve_path(source["path"], public_root)
        if not path.exists():
            raise DataError(
                f"data.sources.{name}: {path} not found. Public data is read from "
                f"paths.public_data ({public_root}); set TRIAGE_DATA_ROOT to the folder that "
                "holds the public datasets, or use data=authored."
            )
        return adapter(path, source["options"])

    return read


SOURCE_KINDS: dict[str, SourceReader] = {
    "file": _file,
    "hub": _hub,
    **{kind: _public(adapter) for kind, adapter in ADAPTERS.items()},
}


def read_source(
    name: str, source: dict[str, Any], project_root: Path, public_root: Path
) -> Iterator[RawRow] | None:
    """The rows of one configured source, by its kind; None where an optional source is empty."""
    kind = source["kind"]
    if kind not in SOURCE_KINDS:
        raise DataError(
            f"data.sources.{name}.kind={kind!r} is not a source kind; known: "
            f"{', '.join(SOURCE_KINDS)}"
        )
    return SOURCE_KINDS[kind](name, source, project_root, public_root)
