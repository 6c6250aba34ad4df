"""The generators that ship inside the d4m package, loadable by a short name wherever a model folder is taken.

Each sub-folder here is a ``d4m generator train`` output in its committable form (UNet, scheduler, ``d4m.json``
naming its codec and text encoder by name; no third-party weights): ``--model cifar10-taef2`` on the command line,
``model="cifar10-taef2"`` in Python. A local folder or hub id given as ``--model`` is used as it is; a short name
is looked up here only when no local path of that name exists. Run directories record the short name, so they stay
valid wherever d4m is installed.

(Not to be confused with ``d4m.generator``, the code that trains and samples generators.)
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent
# the model the embedded main job (preset cifar10-ipc10-cpu) uses: RESULTS.md 2.6, "run 4"
DEFAULT = "cifar10-taef2"


def names() -> list[str]:
    """Short names of the shipped generators."""
    return sorted(p.name for p in ROOT.iterdir() if p.is_dir() and (p / "d4m.json").is_file())


def path(name: str) -> Path | None:
    """The folder of shipped generator ``name``, or None."""
    folder = ROOT / str(name)
    return folder if "/" not in str(name) and (folder / "d4m.json").is_file() else None


def resolve_model(model: str) -> str:
    """``model`` itself, unless it is a shipped generator's short name and no local path of that name exists."""
    model = str(model)
    folder = path(model) if model and not Path(model).expanduser().exists() else None
    return str(folder) if folder is not None else model
