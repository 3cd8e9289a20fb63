"""Crash-safe writes and code-free reads of torch files and text."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import pickle
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Iterator

import torch

from vitlab.errors import VitlabError

_UMASK = os.umask(0)
os.umask(_UMASK)


def _atomic_write(path: Path, write) -> None:
    """Write through ``write(fileobj)`` to a temporary file beside ``path``, fsync, then rename over ``path``.

    A crash or a full disk leaves the previous ``path`` untouched: the rename is the only step that replaces it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


@contextlib.contextmanager
def staged_folder(final: Path) -> Iterator[Path]:
    """A temporary folder beside ``final`` to write into; when the block ends without error it replaces ``final``
    (two renames; the previous folder is removed only afterwards), otherwise it is removed and ``final`` is left
    as it was."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}-", suffix=".staging"))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp makes 0700 folders; give the usual permissions
    old = final.with_name(f".{final.name}-old-{os.getpid()}.staging")
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def atomic_torch_save(obj: Any, path: Path) -> None:
    _atomic_write(path, lambda f: torch.save(obj, f))


def atomic_write_text(text: str, path: Path) -> None:
    _atomic_write(path, lambda f: f.write(text.encode()))


def atomic_write_bytes(data: bytes, path: Path) -> None:
    _atomic_write(path, lambda f: f.write(data))


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line with a single write, flushed to disk: a crash leaves at most a torn last line, which
    ``read_jsonl`` drops. A tail torn by an earlier crash is ended first, so the new line stays whole."""
    line = (json.dumps(record) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        size = os.fstat(fd).st_size
        if size:
            with open(path, "rb") as f:
                f.seek(size - 1)
                if f.read(1) != b"\n":
                    line = b"\n" + line
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines file; lines that are not a whole JSON object (a write torn by a crash) are
    left out with a warning naming the file and line."""
    records = []
    for n, line in enumerate(Path(path).read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if isinstance(record, dict):
            records.append(record)
        else:
            print(f"vitlab: {path}:{n}: left out a line that is not a whole JSON record (torn by a crash?)")
    return records


def csv_cell(value: Any) -> Any:
    """A text cell a spreadsheet shows as text: one starting with = + - @ (or a tab or carriage return) would be
    run as a formula when the CSV is opened (OWASP's CSV injection), so it gets a leading apostrophe."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def csv_text(rows: list[list[Any]]) -> str:
    """Rows as CSV text, every text cell made spreadsheet-safe (``csv_cell``)."""
    buf = io.StringIO()
    csv.writer(buf).writerows([[csv_cell(v) for v in row] for row in rows])
    return buf.getvalue()


def safe_torch_load(path: Path, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(weights_only=True)``: tensors and plain containers only, so a file cannot run code."""
    path = Path(path)
    if not path.is_file():
        raise VitlabError(f"{path}: file not found")
    if not zipfile.is_zipfile(path):
        # torch.save has written zip archives since torch 1.6; anything else is another kind of file or truncated.
        raise VitlabError(
            f"{path}: not a readable torch file, truncated or of another type (expected a torch.save archive)"
        )
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "unsupported content"
        raise VitlabError(f"{path}: refused to load: the file holds objects other than tensors ({first})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise VitlabError(f"{path}: not a readable torch file, truncated or corrupt ({reason})") from None
