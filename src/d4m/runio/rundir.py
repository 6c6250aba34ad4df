"""The run directory: where each stage's outputs live, and the configuration guard for resuming."""

from __future__ import annotations

import json
import re
import shutil
import unicodedata
from pathlib import Path

import yaml

from d4m.config import DistillConfig, differing, dump
from d4m.errors import ConfigError, D4MError
from d4m.runio.atomic import atomic_write_text


def read_jsonl(path: Path) -> list[dict]:
    """The records of a JSON-lines file (manifest.jsonl, log.jsonl); [] when the file does not exist."""
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()

    config = property(lambda self: self.path / "config.yaml")
    prototypes = property(lambda self: self.path / "prototypes.safetensors")
    parts = property(lambda self: self.path / "work" / "prototypes")
    images = property(lambda self: self.path / "images")
    manifest = property(lambda self: self.path / "manifest.jsonl")
    log = property(lambda self: self.path / "log.jsonl")

    def rows(self) -> list[dict]:
        """The manifest's rows, one per image ([] before any image is written)."""
        return read_jsonl(self.manifest)

    def read_config(self) -> dict | None:
        if not self.config.is_file():
            return None
        try:
            return yaml.safe_load(self.config.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError:
            raise ConfigError(f"{self.config}: not valid YAML") from None

    def prepare(self, cfg: DistillConfig, keys: tuple[str, ...], force: bool, outputs: tuple[Path, ...]) -> None:
        """Create the run directory, or resume it when ``keys`` match; refuse a different config without --force.

        With ``force`` the stage's ``outputs`` are removed first (only those: other stages' files are kept).
        """
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise D4MError(f"--out {self.path}: cannot create run directory ({exc.strerror})") from None
        old = self.read_config()
        if old is not None:
            changed = differing(old, cfg, keys)
            if changed and not force:
                detail = ", ".join(f"{k}: {old.get(k)!r} -> {getattr(cfg, k)!r}" for k in changed[:3])
                raise ConfigError(f"{self.path} was made with another configuration ({detail}); "
                                  "use a new --out, or --force to overwrite")
            if changed:
                for p in outputs:
                    if p.is_dir():
                        shutil.rmtree(p)
                    elif p.exists():
                        p.unlink()
        atomic_write_text(self.config, dump(cfg))


def read_run(path: str | Path) -> tuple[RunDir, dict, list[dict]]:
    """(run, config dict, manifest rows) of an existing run with images; ConfigError naming --run otherwise."""
    run = RunDir(path)
    if not run.images.is_dir():
        raise ConfigError(f"--run {path}: no images/ folder (not a d4m run directory)")
    return run, run.read_config() or {}, run.rows()


_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


def safe_name(name: str, limit: int = 60) -> str:
    """A class name made safe as one path component: no separators, '..', control characters; bounded length."""
    text = unicodedata.normalize("NFKD", str(name)).encode("ascii", "ignore").decode()
    text = _UNSAFE.sub("_", text).strip("._-")
    text = re.sub(r"\.{2,}", ".", text)
    return text[:limit].rstrip("._-") or "class"


def class_folder(index: int, name: str, num_classes: int) -> str:
    """'007_horse': the index prefix keeps folders unique and sorted in class-index order."""
    width = max(3, len(str(max(num_classes - 1, 0))))
    return f"{index:0{width}d}_{safe_name(name)}"


def image_name(index: int, per_class: int) -> str:
    return f"{index:0{max(3, len(str(max(per_class - 1, 0))))}d}.png"
