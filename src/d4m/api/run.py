"""``Run``: a run directory as a Python object (what every method writes: config.yaml, images/, manifest.jsonl, ...).

Nothing is loaded when a ``Run`` is made; each accessor reads its file when called, so a ``Run`` stays valid while
a stage is still writing into the directory.
"""

from __future__ import annotations

import json
from pathlib import Path

from d4m.errors import ConfigError
from d4m.runio.rundir import RunDir, read_jsonl


class Run:
    """A d4m run directory.

    Example::

        run = d4m.Run("runs/c10-ipc10")
        run.images              # Path of the ImageFolder of distilled images
        run.config["ipc"]       # the resolved configuration (config.yaml) as a dict
        run.manifest()[0]       # one row per image: file, class, prompt, seed, sha256, ...
        run.prototypes()["prototypes"].shape   # [classes, IPC, C, h, w] latents
    """

    def __init__(self, path: str | Path | Run):
        self.dir = RunDir(path.path if isinstance(path, Run) else path)

    def _opened(self) -> RunDir:
        """The run directory, checked to be one d4m made: a folder that is not a run is an error, not an empty run."""
        from d4m.runio.rundir import MARKER, folder_kind

        if not self.dir.path.is_dir():
            raise ConfigError(f"{self.dir.path}: no such run directory")
        kind = folder_kind(self.dir.path)
        if kind != "run":
            what = f"a d4m {kind} folder" if kind else f"a folder d4m did not make (no {MARKER} file)"
            raise ConfigError(f"{self.dir.path}: not a d4m run directory: {what}")
        return self.dir

    @property
    def path(self) -> Path:
        """The run directory."""
        return self.dir.path

    @property
    def images(self) -> Path:
        """The ImageFolder of the run's images (``images/000_airplane/000.png`` ...)."""
        return self.dir.images

    @property
    def config(self) -> dict:
        """The resolved configuration written in ``config.yaml`` ({} before any stage ran)."""
        return self._opened().read_config() or {}

    @property
    def classes(self) -> list[str]:
        """Class names in class-index order, from the prototypes' metadata or else the image folders."""
        if self._opened().prototypes.is_file():
            return list(self.prototype_metadata()["classes"])
        if not self.images.is_dir():
            raise ConfigError(f"{self.path}: neither prototypes.safetensors nor images/ (not a d4m run directory)")
        return [p.name.split("_", 1)[-1] for p in sorted(self.images.iterdir()) if p.is_dir()]

    def manifest(self) -> list[dict]:
        """The manifest rows, one per image ([] before the images are complete)."""
        return self._opened().rows()

    def log(self) -> list[dict]:
        """The stage log rows (``log.jsonl``): stage, wall time, images/s, peak memory."""
        return read_jsonl(self._opened().log)

    def image_files(self) -> list[Path]:
        """Every image file of the run, sorted (class-index order, then image index)."""
        return sorted(p for p in self._opened().images.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))

    def prototypes(self) -> dict:
        """The tensors of ``prototypes.safetensors``: ``prototypes`` [classes, IPC, C, h, w], ``counts``,
        ``inertia``, ``used``."""
        from d4m.prototypes.stage import load_prototypes

        return load_prototypes(self._opened().prototypes)[0]

    def prototype_metadata(self) -> dict:
        """The metadata stored with the prototypes: classes, label texts, codec, skipped source files."""
        from d4m.prototypes.stage import load_prototypes

        return load_prototypes(self.dir.prototypes)[1]

    def summaries(self) -> list[dict]:
        """Every evaluation summary under ``eval/`` (``summary.json`` of each student and recipe)."""
        return [json.loads(p.read_text(encoding="utf-8"))
                for p in sorted(self._opened().path.glob("eval/*/*/summary.json"))]

    def cards(self) -> list[dict]:
        """Every fair-evaluation card under ``eval/`` (``card.json``)."""
        return [json.loads(p.read_text(encoding="utf-8"))
                for p in sorted(self._opened().path.glob("eval/*/*/card.json"))]

    def __fspath__(self) -> str:
        return str(self.path)

    def __eq__(self, other) -> bool:
        return isinstance(other, Run) and self.path.resolve() == other.path.resolve()

    def __hash__(self) -> int:
        return hash(self.path.resolve())

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"


def as_path(run: str | Path | Run) -> Path:
    """The directory of a run given as a ``Run``, a path or a string."""
    return run.path if isinstance(run, Run) else Path(run).expanduser()
