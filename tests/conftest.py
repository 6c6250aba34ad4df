import os
from pathlib import Path

import pytest
import torch

from tests.tiny_models import make_tiny_sd

torch.set_num_threads(2)
SHARED = Path(os.environ.get("D4M_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))


def shared_path(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not available (set D4M_SHARED)")
    return path


def run_outputs(run: Path) -> dict:
    """Bytes of every output of a run that a later stage or a user trusts: images, prototypes, manifest."""
    files = {p.relative_to(run).as_posix(): p.read_bytes() for p in (run / "images").rglob("*.png")}
    for name in ("prototypes.safetensors", "manifest.jsonl"):
        files[name] = (run / name).read_bytes()
    return files


@pytest.fixture(scope="session", autouse=True)
def private_d4m_cache(tmp_path_factory):
    """d4m's shared caches (the card's random baseline) go to a temporary folder, never to ~/.cache."""
    before = os.environ.get("D4M_CACHE")
    os.environ["D4M_CACHE"] = str(tmp_path_factory.mktemp("d4m-cache"))
    yield
    if before is None:
        os.environ.pop("D4M_CACHE", None)
    else:
        os.environ["D4M_CACHE"] = before


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory) -> Path:
    return make_tiny_sd(tmp_path_factory.mktemp("tiny-sd"))


@pytest.fixture(scope="session")
def cifar_subset(tmp_path_factory) -> Path:
    """10 CIFAR-10 classes x 20 training JPEGs (the first 20 files of each class), as an ImageFolder."""
    src = shared_path("data", "cifar10", "train")
    dst = tmp_path_factory.mktemp("cifar10-subset")
    for cls in sorted(p.name for p in src.iterdir()):
        (dst / cls).mkdir()
        for f in sorted((src / cls).iterdir())[:20]:
            (dst / cls / f.name).symlink_to(f)
    return dst
