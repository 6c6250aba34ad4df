"""Candidates checked by the teacher (``--candidates M --candidate-teacher SPEC [--diversity L]``).

Synthesis draws M candidates per image into ``RUN/candidates/`` (candidate 0 is the image a plain run draws, from
the same seed; candidate k > 0 from the seed (seed, class, index, "candidate", k)), journalled like images, so a
killed run resumes and a multi-process run shares the work. The main process then scores every candidate PNG as
written (the teacher sees what a student will see), keeps one per image with ``guidance.select_candidates``, copies
its bytes into ``RUN/images/`` and writes every candidate's scores to ``RUN/candidates.jsonl``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import torch
from PIL import Image

from d4m.errors import D4MError
from d4m.runio.atomic import atomic_write_bytes, atomic_write_text
from d4m.runio.rundir import RunDir
from d4m.synthesis.guidance import select_candidates

CANDIDATES = "candidates"
SCORES = "candidates.jsonl"


def candidate_jobs(jobs: list, m: int) -> list:
    """Every image job repeated for candidates 0..m-1, with its path under candidates/ (image-major order)."""
    out = []
    for job in jobs:
        stem = job.path[len("images/"):-len(".png")]
        out += [dataclasses.replace(job, candidate=k, path=f"{CANDIDATES}/{stem}-c{k}.png") for k in range(m)]
    return out


def seed_parts(job) -> tuple:
    """The parts of ``derive_seed(seed, "synthesis", ...)`` for a job: candidate 0 draws the plain image."""
    return (job.cls, job.index) if job.candidate <= 0 else (job.cls, job.index, "candidate", job.candidate)


def load_teacher_for(spec: str, classes: list[str], device):
    """The scoring teacher, its classes checked against the run's (before any image is drawn)."""
    from d4m.models import load_teacher

    return load_teacher(spec, classes=classes, data="the distilled classes").to(device)


def _read_checked(run: RunDir, rel: str, written: dict[str, str]) -> bytes:
    data = (run.path / rel).read_bytes() if (run.path / rel).is_file() else None
    if data is None or hashlib.sha256(data).hexdigest() != written.get(rel):
        raise D4MError(f"{run.path / rel}: missing or changed since synthesis wrote it; rerun the same command "
                       "with --force to draw the candidates again")
    return data


@torch.no_grad()
def score(teacher, images: list[bytes], cls: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(teacher probability of ``cls``, penultimate features) for PNG bytes, as the images will be read."""
    from io import BytesIO

    from d4m.methods.features import teacher_features

    arrays = [np.asarray(Image.open(BytesIO(b)).convert("RGB"), dtype=np.float32) / 255.0 for b in images]
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).to(device)
    probs = torch.softmax(teacher(x), dim=1)[:, cls].cpu()
    return probs, teacher_features(teacher, x).cpu()


def choose(run: RunDir, jobs: list, m: int, diversity: float, teacher, device, rank: int = 0) -> dict[str, dict]:
    """Keep one candidate per image (main process): images/ and candidates.jsonl written; per image path, what
    the manifest records about its choice."""
    written = run.written()
    rows, picked = [], {}
    by_class: dict[int, list] = {}
    for job in jobs:
        by_class.setdefault(job.cls, []).append(job)
    for cls, cjobs in sorted(by_class.items()):
        cands = candidate_jobs(cjobs, m)
        data = [_read_checked(run, c.path, written) for c in cands]
        probs, feats = score(teacher, data, cls, device)
        chosen, table = select_candidates(probs.view(len(cjobs), m), feats.view(len(cjobs), m, -1), diversity)
        done = []
        for j, job in enumerate(cjobs):
            k = chosen[j]
            blob = data[j * m + k]
            digest = hashlib.sha256(blob).hexdigest()
            target = run.path / job.path  # a missing, truncated or changed image is written again
            if not target.is_file() or written.get(job.path) != digest or \
                    hashlib.sha256(target.read_bytes()).hexdigest() != digest:
                atomic_write_bytes(run.path / job.path, blob)
                done.append((job.path, digest))
            picked[job.path] = {"candidate": k, "candidates": m, "teacher_prob": table[j][k]["prob"],
                                "candidate_score": table[j][k]["score"]}
            rows += [{"file": c.path, "image": job.path, "class_index": cls, "candidate": c.candidate,
                      "kept": c.candidate == k, **table[j][c.candidate]} for c in cands[j * m:(j + 1) * m]]
        if done:
            run.record_images(done, rank)
    atomic_write_text(run.path / SCORES, "".join(json.dumps(r) + "\n" for r in rows))
    return picked
