"""What the prepared GPU run shares between this machine and the GPU machine: the kit's layout, the packed image
file, the size of what travels, and the exact device command.

The kit is one git-ignored folder at the repository root (``.gpukit/``), carried to the GPU machine by name:

    .gpukit/wheels/*.whl             diffusers (the GPU image has none), installed there with --no-deps
    .gpukit/cifar10-train.safetensors  a seeded CIFAR-10 subset: JPEG bytes + offsets + labels, one file
    .gpukit/weights/taef2/           TAEF2 encoder/decoder (the generator's codec)
    .gpukit/weights/resnet20.th      the CIFAR-10 ResNet-20 (classifier check)
    .gpukit/text.safetensors         the label-text embeddings (MiniLM, computed here: the encoder never travels)
    .gpukit/kit.json                 what was packed, with sizes and sha256 sums
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
KIT = ".gpukit"
LIMIT = 64 * 2**20  # the device tool's limit on the working tree that travels
OUT_FILE_LIMIT = 16 * 2**20  # each file that comes back from $OUT
OUT_MAX_FILES = 8
PACK = "cifar10-train.safetensors"
TEXT = "text.safetensors"
TAEF2 = "weights/taef2"
RESNET20 = "weights/resnet20.th"
NEGATIVE = "cartoon, anime, painting"
PYTHON_TAG = "3.12"  # the GPU image's python3 (KINDS.md: Python 3.12.3, torch 2.11, no diffusers)
PIP_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
                 "manylinux1_x86_64")
WHEELS = ("diffusers==0.42.1",)  # its other needs (hub >= 1.32, safetensors >= 0.8, ...) are on the GPU image
WHEEL_BYTES = 6_355_908  # diffusers-0.42.1-py3-none-any.whl as downloaded (for estimates made without it)
TIMEOUT_S = 600
# The device tool's `run` arguments. The command installs the carried wheels into /tmp/site, makes d4m importable
# from the checkout's src/, and keeps the whole log in $OUT even when the run is cut short.
COMMAND = (
    "set -o pipefail; python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade "
    "--target /tmp/site .gpukit/wheels/*.whl && export PYTHONPATH=/tmp/site:$PWD/src:$PWD || exit 1; "
    "export PYTHONUNBUFFERED=1 TQDM_MININTERVAL=10; nvidia-smi --query-gpu=name,memory.total,driver_version "
    "--format=csv,noheader; timeout 580 python3 bench/gpu_run.py --kit .gpukit --out $OUT --work /tmp/d4m-gpu "
    "2>&1 | tee $OUT/log.txt"
)
CARRY = [KIT]


class PhaseDeadline(Exception):
    """A phase's wall-clock deadline was reached (gpu_run.run_phase's SIGALRM)."""


class CapReached(PhaseDeadline):
    """One step's own cap inside a phase (``capped``) was reached; the phase goes on."""


@contextmanager
def capped(seconds: float, what: str):
    """Run the block under its own deadline inside the phase's (SIGALRM). The cap raises CapReached (catch it to
    go on with the next step); the phase's deadline, if nearer, raises its PhaseDeadline as usual. On leaving,
    the phase's timer resumes with what it had left. Main thread only."""
    outer, _ = signal.getitimer(signal.ITIMER_REAL)
    handler = signal.getsignal(signal.SIGALRM)
    mine = outer <= 0 or seconds < outer

    def expire(signum, frame):
        raise CapReached(f"{what}: cap of {seconds:.0f} s reached")

    if mine:
        signal.signal(signal.SIGALRM, expire)
    t = time.perf_counter()
    signal.setitimer(signal.ITIMER_REAL, seconds if mine else outer)
    phase_over = False
    try:
        yield
    except CapReached:
        raise
    except PhaseDeadline:
        phase_over = True
        raise
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, handler)
        if outer > 0 and not phase_over:  # the phase's deadline, less the time spent here
            signal.setitimer(signal.ITIMER_REAL, max(outer - (time.perf_counter() - t), 1e-3))


def pip_download_args(dest: Path, specs=WHEELS) -> list[str]:
    """The device README's wheel download for the GPU machine's Python and platform."""
    args = ["-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", PYTHON_TAG,
            "--implementation", "cp"]
    for p in PIP_PLATFORMS:
        args += ["--platform", p]
    return args + ["-d", str(dest), *specs]


# --- the packed image file ---------------------------------------------------------------------------------------

def pack_images(files: list[Path], labels: list[int], classes: list[str], meta: dict) -> dict:
    """Tensors + metadata of one safetensors file holding every JPEG's bytes (no pickle, one file to carry)."""
    blobs = [Path(f).read_bytes() for f in files]
    offsets = torch.zeros(len(blobs) + 1, dtype=torch.int64)
    offsets[1:] = torch.cumsum(torch.tensor([len(b) for b in blobs], dtype=torch.int64), 0)
    data = torch.frombuffer(bytearray(b"".join(blobs)), dtype=torch.uint8) if blobs else torch.zeros(0, dtype=torch.uint8)
    names = [f"{Path(f).parent.name}/{Path(f).name}" for f in files]
    return {"tensors": {"bytes": data, "offsets": offsets, "labels": torch.tensor(labels, dtype=torch.int64)},
            "metadata": {"classes": json.dumps(classes), "names": json.dumps(names), **{k: str(v) for k, v in meta.items()}}}


def unpack_images(pack: Path, dest: Path, per_class: int | None = None) -> tuple[Path, int]:
    """Write the packed JPEGs as an ImageFolder (``dest/<class>/<name>``), at most ``per_class`` per class (the
    first ones in the pack's seeded order); returns (dest, images written)."""
    from safetensors import safe_open

    with safe_open(str(pack), "pt") as fh:
        meta = fh.metadata()
        data, offsets, labels = (fh.get_tensor(k) for k in ("bytes", "offsets", "labels"))
    classes, names = json.loads(meta["classes"]), json.loads(meta["names"])
    raw = data.numpy().tobytes()
    seen = [0] * len(classes)
    written = 0
    for i, (name, c) in enumerate(zip(names, labels.tolist())):
        if per_class is not None and seen[c] >= per_class:
            continue
        seen[c] += 1
        path = Path(dest) / classes[c] / Path(name).name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(raw[int(offsets[i]) : int(offsets[i + 1])])
        written += 1
    return Path(dest), written


# --- what travels ------------------------------------------------------------------------------------------------

def _git_files(repo: Path, *args: str) -> list[Path]:
    out = subprocess.run(["git", "-C", str(repo), "ls-files", "-z", *args], capture_output=True, check=True).stdout
    return [repo / p for p in out.decode().split("\0") if p]


def tree_bytes(path: Path) -> int:
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def travelling(repo: Path, carry: list[str] = CARRY) -> dict:
    """Bytes the device tool sends: tracked files, untracked files git does not ignore, and the carried paths."""
    repo = Path(repo)
    tracked = sum(p.stat().st_size for p in _git_files(repo) if p.is_file() and not p.is_symlink())
    untracked = sum(p.stat().st_size for p in _git_files(repo, "--others", "--exclude-standard") if p.is_file())
    carried = {c: tree_bytes(repo / c) if (repo / c).exists() else 0 for c in carry}
    total = tracked + untracked + sum(carried.values())
    return {"tracked": tracked, "untracked": untracked, "carried": carried, "total": total, "limit": LIMIT,
            "fits": total <= LIMIT}


def check_command(command: str = COMMAND, carry: list[str] = CARRY) -> None:
    """The device tool's own limits on a run call's arguments."""
    if len(command) > 2000:
        raise ValueError(f"device command is {len(command)} characters (limit 2000)")
    if len(carry) > 8 or any(len(c) > 200 for c in carry):
        raise ValueError("carry: at most 8 paths of at most 200 characters")


def estimate(repo: Path, shared: Path, per_class: int, seed: int = 0) -> dict:
    """What a kit of ``per_class`` images would weigh, without building it (the test suite's dry run)."""
    from gpu_prepare import choose_files

    files, _, _ = choose_files(Path(shared) / "data" / "cifar10" / "train", per_class, seed)
    weights = sum(p.stat().st_size for p in (Path(shared) / "weights" / "taef2").glob("taef2_*.pth"))
    weights += sum(p.stat().st_size for p in (Path(shared) / "weights" / "cifar10-resnet").glob("resnet20-*.th"))
    images = sum(f.stat().st_size for f in files) + 16 * len(files)  # + offsets, labels
    base = travelling(repo, [])
    total = base["total"] + images + weights + WHEEL_BYTES + 2 * 2**20  # + names, embeddings, kit.json
    return {"images": len(files), "total": total, "fits": total <= LIMIT}
