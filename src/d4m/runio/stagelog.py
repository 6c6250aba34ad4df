"""Per-stage wall time, throughput and peak memory, appended to the run's log.jsonl."""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path

import torch


def _rss_peak_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def peak_memory() -> dict:
    """Peak resident memory of this process so far (and CUDA peak allocation when CUDA is in use)."""
    out = {"cpu_peak_rss_mb": round(_rss_peak_bytes() / 2**20, 1)}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda_peak_alloc_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


class StageTimer:
    """Context manager: times a stage and appends one JSON line to ``log_path`` on success.

    Set ``timer.items`` (images, latents, ...) inside the block to get a throughput figure.
    """

    def __init__(self, log_path: Path | None, stage: str, unit: str = "images", **extra):
        self.log_path = Path(log_path) if log_path is not None else None
        self.stage, self.unit, self.extra = stage, unit, extra
        self.items = 0
        self.record: dict = {}

    def __enter__(self) -> "StageTimer":
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.reset_peak_memory_stats()
        self._start = time.perf_counter()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            return
        wall = time.perf_counter() - self._start
        self.record = {
            "stage": self.stage,
            "wall_s": round(wall, 3),
            self.unit: self.items,
            f"{self.unit}_per_s": round(self.items / wall, 3) if wall > 0 else None,
            **peak_memory(),
            "pid": os.getpid(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **self.extra,
        }
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(self.record) + "\n")
