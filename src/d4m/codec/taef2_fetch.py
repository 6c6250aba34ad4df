"""TAEF2 by name: its two weight files, fetched once from their published source into torch's hub cache.

``--codec taef2`` (no folder) resolves here. The files are the ones madebyollin/taesd published (MIT) at one pinned
commit; each is checked against its SHA-256 before it is kept, as torchvision checks the weights it downloads. A
file already in the cache with the right hash is used as it is (no network). The folder form, ``taef2:DIR``, never
comes here.
"""

from __future__ import annotations

import os
from pathlib import Path

from d4m.errors import ModelError
from d4m.runio.atomic import sha256_file as sha256

REPOSITORY = "madebyollin/taesd"
COMMIT = "5cccb12dc72074a4be35680c3b108548a7c69978"
URL = "https://raw.githubusercontent.com/{repo}/{commit}/{name}"
# SHA-256 of the files as published at COMMIT
SHA256 = {
    "taef2_encoder.pth": "10a4e1021e89d7551eaf161352da8dbd0b1aa83872ae28b150c1df1ce2f147b6",
    "taef2_decoder.pth": "0a44a31e1ae59eb9dbf9359d24942fd3ef5928162c1800d97a28c61d51be0ab5",
}


def file_url(name: str) -> str:
    return URL.format(repo=REPOSITORY, commit=COMMIT, name=name)


def cache_dir() -> Path:
    """``<torch hub dir>/checkpoints/d4m-taef2-<commit>``: $TORCH_HOME/hub unless torch.hub.set_dir was called."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / f"d4m-taef2-{COMMIT[:7]}"


def _offline_hint() -> str:
    return (f"download taef2_encoder.pth and taef2_decoder.pth from github.com/{REPOSITORY} on a machine with "
            "internet and pass --codec taef2:DIR (the folder holding them)")


def fetch_taef2(progress: bool = True) -> Path:
    """The cache folder holding both TAEF2 files with their published hashes, downloading what is missing.

    A download that fails is one ``ModelError`` line naming the URL and the ``taef2:DIR`` way round it; a file
    whose hash differs is deleted and refused in one line."""
    import torch.hub

    folder = cache_dir()
    for name, expected in SHA256.items():
        path = folder / name
        if path.is_file() and sha256(path) == expected:
            continue
        folder.mkdir(parents=True, exist_ok=True)
        url = file_url(name)
        part = folder / f".{name}.{os.getpid()}.part"
        try:
            torch.hub.download_url_to_file(url, str(part), progress=progress)
        except Exception as exc:  # noqa: BLE001 - network errors come in many types; one line for all
            part.unlink(missing_ok=True)
            reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"--codec taef2: cannot download {url} ({reason}); offline, {_offline_hint()}") from None
        got = sha256(part) if part.is_file() else "no file"
        if got != expected:
            part.unlink(missing_ok=True)
            raise ModelError(f"--codec taef2: {url} has SHA-256 {got[:16]}..., expected {expected[:16]}...; the "
                             f"file was not kept (retry, or {_offline_hint()})")
        os.replace(part, path)
    return folder
