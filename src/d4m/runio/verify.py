"""Check that a run directory's images are exactly what its manifest says, before a stage reads them.

``evaluate``, ``relabel``, ``report``, ``export`` and ``stm`` read a run's ``images/``; a run with a missing image,
no manifest, a file or folder the manifest does not name, or a file whose bytes differ from the sha256 recorded
when d4m wrote it, would give numbers about images that are not the run's. ``verify_run`` refuses such a run with
one line naming the first problem (``allow_incomplete``: warn instead, for inspection).
"""

from __future__ import annotations

import logging
from pathlib import Path, PurePosixPath

from d4m.errors import D4MError
from d4m.runio.atomic import sha256_file
from d4m.runio.rundir import MARKER, RunDir, folder_kind

log = logging.getLogger(__name__)


def run_problems(run: RunDir, check_hashes: bool = True) -> list[str]:
    """Every way ``run``'s images/ differs from its manifest.jsonl, one phrase each ([] when they agree)."""
    if not run.images.is_dir():
        return ["no images/ folder"]
    if not run.manifest.is_file():
        return ["no manifest.jsonl (a run that did not finish, or a folder d4m did not write)"]
    rows = run.rows()
    if not rows:
        return ["manifest.jsonl names no images"]
    problems = []
    named: dict[str, str | None] = {}
    for n, row in enumerate(rows, 1):
        file = row.get("file")
        if not isinstance(file, str) or PurePosixPath(file).parts[:1] != ("images",) or ".." in file.split("/"):
            problems.append(f"manifest line {n} names no file under images/")
            continue
        named[file] = row.get("sha256") if isinstance(row.get("sha256"), str) else None
    folders = {str(PurePosixPath(f).parent) for f in named}
    on_disk = {p.relative_to(run.path).as_posix() for p in run.images.rglob("*") if p.is_file() or p.is_symlink()}
    dirs = {p.relative_to(run.path).as_posix() for p in run.images.rglob("*") if p.is_dir()}
    missing = sorted(set(named) - on_disk)
    if missing:
        problems.append(f"{len(missing)} of {len(named)} images in the manifest are missing (first: {missing[0]})")
    for d in sorted(dirs - folders):
        if not any(f.startswith(d + "/") for f in folders):
            problems.append(f"folder {d}/ is not named by the manifest")
    extra = sorted(f for f in on_disk - set(named) if str(PurePosixPath(f).parent) in folders
                   or not any(f.startswith(d + "/") for d in dirs - folders))
    if extra:
        problems.append(f"{len(extra)} files under images/ are not in the manifest (first: {extra[0]})")
    if check_hashes:
        for file, digest in named.items():
            if file in on_disk and digest is None:
                problems.append(f"{file}: the manifest records no sha256")
                break
            if file in on_disk and sha256_file(run.path / file) != digest:
                problems.append(f"{file}: its bytes differ from the sha256 in the manifest (changed after d4m "
                                "wrote it)")
                break
    return problems


def verify_run(path: str | Path, allow_incomplete: bool = False, flag: str = "--run") -> RunDir:
    """The run at ``path`` after checking it; a D4MError naming the first problem (or, ``allow_incomplete``, a
    warning per problem)."""
    run = RunDir(path)
    if not run.path.is_dir():
        raise D4MError(f"{flag} {run.path}: no such run directory")
    kind = folder_kind(run.path)
    if kind != "run":  # a stage reading a run also writes into it (eval/, labels/, report/): never a foreign folder
        what = f"a d4m {kind} folder" if kind else f"a folder d4m did not make (no {MARKER} file)"
        raise D4MError(f"{flag} {run.path}: not a d4m run directory: {what}")
    run.check_links(f"{flag} {run.path}")
    problems = run_problems(run)
    if problems and not allow_incomplete:
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise D4MError(f"{flag} {run.path}: {problems[0]}{more}; refusing to use it "
                       "(--allow-incomplete uses it anyway, for inspection)")
    for p in problems:
        log.warning("%s %s: %s (used anyway: --allow-incomplete)", flag, run.path, p)
    return run


def read_run(path: str | Path, allow_incomplete: bool = False) -> tuple[RunDir, dict, list[dict]]:
    """(run, config dict, manifest rows) of a finished run whose images/ match its manifest; a one-line error
    naming --run and the first problem otherwise (``allow_incomplete``: a warning)."""
    run = verify_run(path, allow_incomplete)
    return run, run.read_config() or {}, run.rows() if run.manifest.is_file() else []
