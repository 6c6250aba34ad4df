"""``d4m subset`` (D4M-G): an ImageNet-1K run restricted to the 200 Tiny-ImageNet classes, as a new run folder.

Class folders are matched to wnids by a wnid in the folder name (``NNN_n01443537``), a ``wnid`` key in the
manifest, or, for a 1000-class run, the ImageNet index order (sorted wnids). The new run's folders are
``NNN_<wnid>`` in Tiny-ImageNet index order (sorted wnids), holding symlinks (or copies) of the images; its
manifest keeps each image's entry with ``class_index`` remapped and ``source_class_index`` added.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from tqdm import tqdm

from d4m.data import DataSpec
from d4m.data.classnames import imagenet_table
from d4m.errors import ConfigError, DataError
from d4m.runio import StageTimer, atomic_write_text
from d4m.runio.rundir import RunDir

_WNID = re.compile(r"n\d{8}")


def read_wnids(source: str) -> list[str]:
    """Sorted wnids from ``tiny-imagenet:ROOT`` (its wnids.txt) or a text file of wnids."""
    path = DataSpec.parse(source).root / "wnids.txt" if source.startswith("tiny-imagenet:") else Path(source)
    path = path.expanduser()
    if not path.is_file():
        raise ConfigError(f"--classes {source!r}: {path} not found (give tiny-imagenet:ROOT or a wnids file)")
    wnids = sorted(set(_WNID.findall(path.read_text())))
    if not wnids:
        raise ConfigError(f"--classes {source!r}: no wnids in {path}")
    return wnids


def folder_wnids(run: Path, folders: list[Path], manifest: list[dict]) -> list[str]:
    by_index = {int(m["class_index"]): m["wnid"] for m in manifest if "wnid" in m and "class_index" in m}
    table = [row[0] for row in imagenet_table()]
    out = []
    for i, folder in enumerate(folders):
        hit = _WNID.search(folder.name)
        if hit:
            out.append(hit.group(0))
        elif i in by_index:
            out.append(by_index[i])
        elif len(folders) == len(table):
            out.append(table[i])
        else:
            raise DataError(f"{folder}: cannot tell its ImageNet wnid (no wnid in the name or manifest, and the "
                            f"run has {len(folders)} classes, not 1000)")
    return out


def make_subset(run: Path, wnid_source: str, out: Path, copy: bool = False) -> dict:
    run, out = Path(run), Path(out)
    images = run / "images"
    if not images.is_dir():
        raise ConfigError(f"--run {run}: no images/ folder (not a d4m run)")
    if (out / "images").exists():
        raise ConfigError(f"--out {out}: already has images/; choose a new folder")
    RunDir(out).claim("--out")  # a non-empty folder d4m did not make is refused
    folders = sorted(p for p in images.iterdir() if p.is_dir() and not p.name.startswith("."))
    manifest = RunDir(run).rows()
    wnids = folder_wnids(run, folders, manifest)
    where = {w: i for i, w in enumerate(wnids)}
    wanted = read_wnids(wnid_source)
    missing = [w for w in wanted if w not in where]
    if missing:
        raise DataError(f"--run {run}: has no class folder for wnid {missing[0]} ({len(missing)} of {len(wanted)} "
                        "missing)")
    remap = {where[w]: new for new, w in enumerate(wanted)}
    n_files = 0
    with StageTimer(out / "log.jsonl", "subset", unit="images", source=str(run)) as timer:
        for old, new in tqdm(sorted(remap.items(), key=lambda kv: kv[1]), desc="subset", unit="class"):
            src = folders[old]
            dst = out / "images" / f"{new:03d}_{wanted[new]}"
            dst.mkdir(parents=True, exist_ok=True)
            for f in sorted(p for p in src.iterdir() if p.is_file()):
                if copy:
                    shutil.copy2(f, dst / f.name)
                else:
                    os.symlink(os.path.relpath(f.resolve(), dst), dst / f.name)
                n_files += 1
        timer.items = n_files
        lines = [json.dumps({**m, "source_class_index": int(m["class_index"]),
                             "class_index": remap[int(m["class_index"])]})
                 for m in manifest if int(m.get("class_index", -1)) in remap]
        atomic_write_text(out / "manifest.jsonl", "".join(line + "\n" for line in lines))
        info = {"source_run": str(run.resolve()), "classes": wanted, "num_classes": len(wanted),
                "num_images": n_files, "mode": "copy" if copy else "symlink", "wnid_source": wnid_source}
        atomic_write_text(out / "subset.json", json.dumps(info, indent=2) + "\n")
        if (run / "config.yaml").is_file():
            shutil.copy2(run / "config.yaml", out / "config.yaml")
    return info
