"""Write every file under a temporary name in the same folder, then rename it into place.

A reader (a later stage, a resumed run) therefore sees either the complete file or none; a failed write
(disk full, permission, kill) removes its temporary file and leaves any earlier file untouched.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path
from typing import Callable

from d4m.errors import D4MError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_MODE = 0o666 & ~_umask()  # what open() would give a new file (mkstemp alone gives 0600)


def _atomic_write(path: Path, write: Callable[[io.BufferedWriter], None]) -> None:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise D4MError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _MODE)
        os.replace(tmp, path)
    except OSError as exc:
        _remove_quietly(tmp)
        raise D4MError(f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        _remove_quietly(tmp)
        raise


def _remove_quietly(tmp: str) -> None:
    try:
        os.unlink(tmp)
    except OSError:
        pass


def atomic_write_bytes(path: Path, data: bytes) -> None:
    _atomic_write(path, lambda fh: fh.write(data))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_torch_save(path: Path, obj) -> None:
    """``torch.save(obj, path)``, atomically."""
    import torch

    _atomic_write(path, lambda fh: torch.save(obj, fh))


def atomic_save_png(path: Path, image, **options) -> str:
    """Save a PIL image as PNG atomically (``options``: PIL's, e.g. ``pnginfo``); return the sha256 of the bytes."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", **options)
    data = buf.getvalue()
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
