"""Files written whole or not at all."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write; when the block ends without error it is
    renamed into place, otherwise deleted: a crash leaves the old file or the new one, never
    half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: Path, write: Any) -> None:
    """Write a file through ``write(tmp_path)`` (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        write(tmp)


@contextmanager
def atomic_text(path: Path) -> Iterator[IO[str]]:
    """A text file (UTF-8) to stream into, that replaces ``path`` only when the block ends
    without error (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8", newline="") as f:
        yield f


@contextmanager
def atomic_folder(out_dir: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``out_dir`` to fill; when the block ends without error it
    replaces ``out_dir`` (the old one is removed), otherwise it is deleted. Readers see the old
    folder or the new one, never half of one."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        yield tmp
        tmp.chmod(0o755)  # mkdtemp makes it private
        old = None
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
            out_dir.replace(old / out_dir.name)
        tmp.replace(out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_json(path: Path, obj: Any) -> None:
    write_atomic(
        path,
        lambda p: p.write_text(
            json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        ),
    )


def sha256_file(path: Path) -> str:
    """The SHA-256 of a file's bytes, hex, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
