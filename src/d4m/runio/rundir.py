"""The run directory: where each stage's outputs live, and the configuration guard for resuming."""

from __future__ import annotations

import json
import os
import re
import shutil
import unicodedata
from pathlib import Path

import yaml

from d4m.config import DistillConfig, differing, dump
from d4m.errors import ConfigError, D4MError
from d4m.runio.atomic import atomic_write_text
from d4m.runio.textfiles import read_json, read_jsonl, read_text  # noqa: F401 (re-exported)


EXPORT_STARTED, EXPORT_DONE = ".d4m-export-started", ".d4m-export-done"  # an export's first and last writes
MARKER = ".d4m-run"  # written into every folder d4m creates: --force only ever deletes inside these
# what a marked folder is for: one kind is never reused as another (an export is not a run, a generator not samples)
KINDS = ("run", "export", "generator", "samples")
_KIND_LINE = re.compile(r"^kind: *([a-z]+) *$", re.M)


def _is_empty(path: Path) -> bool:
    return not path.exists() or (path.is_dir() and not any(path.iterdir()))


def marker_text(kind: str) -> str:
    return f"d4m {kind} folder: `--force` may delete d4m's outputs in here\nkind: {kind}\n"


def folder_kind(path: Path) -> str | None:
    """What d4m made ``path`` for ("run", "export", "generator", "samples"), or None when d4m did not make it.

    The marker names its kind; a marker from before kinds is a run's unless the folder holds an export
    (``state.json`` of ``datasets`` or DD-Ranking's ``images.pt``). Nothing else is a mark: not a config.yaml or
    d4m.json that looks like d4m's, not a marker that is a link."""
    marker = path / MARKER
    if marker.is_file() and not marker.is_symlink():
        try:
            found = _KIND_LINE.search(marker.read_text(encoding="utf-8", errors="replace")[:1000])
        except OSError:
            return None
        if found:
            return found.group(1) if found.group(1) in KINDS else None
        return "export" if (path / "state.json").is_file() or (path / "images.pt").is_file() else "run"
    return None


def _links(path: Path) -> list[Path]:
    """Symbolic links inside ``path`` that a write or a delete could follow out of it: every link to a folder,
    and links to files outside ``images/`` (image links, as ``d4m subset`` makes, are only read, or replaced)."""
    found = []
    for root, dirs, files in os.walk(path):  # never follows links
        here = Path(root)
        in_images = here.relative_to(path).parts[:1] == ("images",)
        for name in dirs + files:
            p = here / name
            if p.is_symlink() and (name in dirs or p.is_dir() or not in_images):
                found.append(p)
        if len(found) > 0:
            break
    return found


def enclosing_folder(path: Path) -> tuple[str, Path] | None:
    """(kind, folder) of the nearest d4m folder holding ``path``, or None."""
    here = Path(path).expanduser().absolute()
    for up in here.parents:
        kind = folder_kind(up) if up.is_dir() else None
        if kind is not None:
            return kind, up
    return None


class RunDir:
    def __init__(self, path: str | Path, kind: str = "run"):
        if not isinstance(path, (str, os.PathLike)):
            raise ConfigError(f"expected a folder path, got {type(path).__name__} {path!r}")
        self.path = Path(path).expanduser()
        self.kind = kind

    config = property(lambda self: self.path / "config.yaml")
    prototypes = property(lambda self: self.path / "prototypes.safetensors")
    parts = property(lambda self: self.path / "work" / "prototypes")
    journal = property(lambda self: self.path / "work" / "synthesis")
    images = property(lambda self: self.path / "images")
    manifest = property(lambda self: self.path / "manifest.jsonl")
    log = property(lambda self: self.path / "log.jsonl")
    marker = property(lambda self: self.path / MARKER)

    @property
    def synthesis_outputs(self) -> tuple[Path, ...]:
        """The images and everything made from them: new images (or prototypes) make all of these stale."""
        return (self.images, self.manifest, self.journal, self.path / "candidates", self.path / "candidates.jsonl",
                self.path / "labels", self.path / "eval", self.path / "report")

    def rows(self) -> list[dict]:
        """The manifest's rows, one per image ([] before any image is written)."""
        return read_jsonl(self.manifest)

    def read_config(self) -> dict | None:
        if not self.config.is_file():
            return None
        try:
            data = yaml.safe_load(read_text(self.config, "config.yaml")) or {}
        except yaml.YAMLError:
            raise ConfigError(f"{self.config}: not valid YAML") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{self.config}: expected a mapping of keys to values")
        return data

    def made_by_d4m(self) -> bool:
        """The folder carries d4m's mark for this kind (see ``folder_kind``)."""
        return folder_kind(self.path) == self.kind

    def check_owner(self, flag: str = "--out") -> None:
        """Refuse a folder d4m did not make for this kind (whatever the flags): d4m writes only into a new or empty
        folder or its own folder of the same kind, never through a link inside it, never inside another kind."""
        where = f"{flag} {self.path}"
        if self.path.exists() and not self.path.is_dir():
            raise D4MError(f"{where}: exists and is not a directory")
        parent = self.path
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir():
            raise D4MError(f"{where}: cannot create a folder ({parent} is not a directory)")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise D4MError(f"{where}: cannot create a folder ({parent} is not writable)")
        kind = folder_kind(self.path) if self.path.is_dir() else None
        if kind is not None and kind != self.kind:
            article = "an" if self.kind[0] in "aeiou" else "a"
            raise D4MError(f"{where}: this is a d4m {kind} folder, not {article} {self.kind} folder; d4m never "
                           "reuses one kind of folder as another, so choose another")
        if kind is None and not _is_empty(self.path):
            hint = ""
            if self.kind == "run" and (self.path / "config.yaml").is_file():
                hint = (f" (a run made by d4m before its marks: check it is yours, then mark it with `printf "
                        f"'kind: run\\n' > {self.marker}`)")
            raise D4MError(f"{where}: this folder was not made by d4m (no {MARKER} file) and is not "
                           f"empty; d4m writes only into a new or empty folder or its own, so choose another{hint}")
        self._check_ancestors(where)
        self.check_links(where)

    def check_links(self, where: str) -> None:
        """Refuse a folder holding a link that a write or delete could follow out of it (see ``_links``)."""
        links = _links(self.path) if self.path.is_dir() else []
        if links:
            raise D4MError(f"{where}: {links[0]} is a symbolic link; d4m never writes or deletes through a link "
                           "inside its folders (remove it, or choose another folder)")

    def _check_ancestors(self, where: str) -> None:
        """A d4m folder inside another: only a run inside a run (``d4m sweep``), and never in its ``images/``."""
        found = enclosing_folder(self.path)
        if found is not None:
            kind, up = found
            inner = self.path.expanduser().absolute().relative_to(up).parts
            if kind != "run" or self.kind != "run" or inner[0] in ("images", "work", "labels", "eval", "report"):
                raise D4MError(f"{where}: lies inside the d4m {kind} folder {up}; choose a folder outside it")

    def claim(self, flag: str = "--out") -> None:
        """Create the folder (or adopt d4m's own of this kind), writing the marker; see ``check_owner``."""
        self.check_owner(flag)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise D4MError(f"{flag} {self.path}: cannot create the folder ({exc.strerror})") from None
        if not self.marker.is_file() or _KIND_LINE.search(self.marker.read_text(errors="replace")) is None:
            atomic_write_text(self.marker, marker_text(self.kind))

    def claim_output(self, flag: str, force: bool) -> None:
        """An output folder (an export): a foreign folder is refused whatever the flags; d4m's own finished export
        only with ``force``; d4m's own interrupted one (``EXPORT_STARTED`` without ``EXPORT_DONE``) is redone, as a
        rerun repairs."""
        self.check_owner(flag)
        started, done = self.path / EXPORT_STARTED, self.path / EXPORT_DONE
        interrupted = started.is_file() and not done.exists()
        held = self.path.is_dir() and any(p.name != MARKER for p in self.path.iterdir())
        if held and not interrupted and not force:
            raise ConfigError(f"{flag} {self.path}: holds an earlier export; choose a new folder or give --force "
                              "to replace it")
        self.claim(flag)
        if done.is_file() or done.is_symlink():
            done.unlink()  # from here until finish_output, a kill leaves the export marked as interrupted
        atomic_write_text(started, "an export began here; without .d4m-export-done beside it, it did not finish\n")

    def finish_output(self) -> None:
        """Mark an export folder complete (its last write)."""
        atomic_write_text(self.path / EXPORT_DONE, "complete\n")

    def check(self, cfg: DistillConfig, keys: tuple[str, ...], force: bool) -> list[str]:
        """The keys whose values differ from the folder's config.yaml; refuse a foreign folder, or a different
        configuration without ``force``. Reads only: safe to call before any work."""
        self.check_owner()
        old = self.read_config()
        if old is None:
            return []
        changed = differing(old, cfg, keys)
        if changed and not force:
            detail = ", ".join(f"{k}: {old.get(k)!r} -> {getattr(cfg, k)!r}" for k in changed[:3])
            raise ConfigError(f"{self.path} was made with another configuration ({detail}); "
                              "use a new --out, or --force to overwrite")
        return changed

    def prepare(self, cfg: DistillConfig, keys: tuple[str, ...], force: bool, outputs: tuple[Path, ...]) -> None:
        """Create the run directory, or resume it when ``keys`` match; refuse a different config without --force.

        With ``force`` the stage's ``outputs`` are removed first (only those: other stages' files are kept).
        """
        changed = self.check(cfg, keys, force)
        self.claim()
        if changed:
            for p in outputs:
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
                elif p.exists() or p.is_symlink():
                    p.unlink()
        atomic_write_text(self.config, dump(cfg))

    def record_images(self, rows: list[tuple[str, str]], rank: int = 0) -> None:
        """Append (file, sha256 of the bytes written) to this process's journal, after the files are in place."""
        path = self.journal / f"rank{rank}-{os.getpid()}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as fh:
            fh.write("".join(json.dumps({"file": f, "sha256": h}) + "\n" for f, h in rows))
            fh.flush()
            os.fsync(fh.fileno())

    def written(self) -> dict[str, str]:
        """file -> sha256 of every image a synthesis recorded (a line cut by a kill is ignored: that image is redone)."""
        out: dict[str, str] = {}
        if self.journal.is_dir():
            for path in sorted(self.journal.glob("*.jsonl")):
                for row in read_jsonl(path, strict=False):
                    if isinstance(row.get("file"), str) and isinstance(row.get("sha256"), str):
                        out[row["file"]] = row["sha256"]
        if not out and self.manifest.is_file():  # a run finished before journals existed: its manifest records it
            out = {r["file"]: r["sha256"] for r in self.rows() if "file" in r and "sha256" in r}
        return out


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
