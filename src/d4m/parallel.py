"""Process topology: one process by default; several under ``torchrun`` or ``accelerate launch``.

Work is split by unit (a class, a batch of images) with ``mine(units)``; every unit's result depends only on the
seed and the unit, so any number of processes writes the same bytes as one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence, TypeVar

T = TypeVar("T")


@dataclass
class Topology:
    rank: int = 0
    world: int = 1
    _state: object = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def mine(self, units: Sequence[T]) -> list[T]:
        return [u for i, u in enumerate(units) if i % self.world == self.rank]

    def barrier(self) -> None:
        if self.world > 1:
            self._state.wait_for_everyone()


def topology(device: str = "cpu") -> Topology:
    """The process group started by the launcher, or a single process when none is launched."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Topology()
    import torch
    from accelerate import PartialState

    on_gpu = str(device).startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    state = PartialState(cpu=not on_gpu)
    return Topology(state.process_index, state.num_processes, state)


def resolve_device(device: str, topo: Topology | None = None) -> str:
    """'auto' -> this process's CUDA device (by LOCAL_RANK) when there is one, else 'cpu'; a CUDA device asked for
    on a machine without CUDA is an error naming the flag."""
    import torch

    from d4m.errors import ConfigError

    if device != "auto":
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"--device {device}: CUDA is not available on this machine")
        return device
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        return f"cuda:{local % torch.cuda.device_count()}"
    return "cpu"
