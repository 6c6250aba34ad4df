"""Per-epoch training checkpoints: written atomically, read with ``torch.load(weights_only=True)``.

A checkpoint holds the student, the optimizer state, the next epoch and the metric history. The stream and the
per-epoch global seed are pure functions of (seed, epoch), so resuming from the last epoch reproduces an
uninterrupted run exactly on the same device.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import torch

from d4m.errors import ModelError
from d4m.runio import atomic_write_bytes

FORMAT = "d4m-train-checkpoint-1"


def save_training_state(path: Path, model, optimizer, next_epoch: int, history: list, info: dict) -> None:
    buf = io.BytesIO()
    torch.save({"format": FORMAT, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "next_epoch": int(next_epoch), "history": history, "info": info}, buf)
    atomic_write_bytes(Path(path), buf.getvalue())


def load_training_state(path: Path, model, optimizer, info: dict) -> tuple[int, list]:
    """Restore ``model`` and ``optimizer`` in place; return (next epoch, history). ``info`` must match the file."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
        raise ModelError(f"{path}: unreadable training checkpoint ({str(exc).splitlines()[0][:160]}); "
                         "delete it to start over") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ModelError(f"{path}: not a d4m training checkpoint; delete it to start over")
    kinds = {"info": dict, "model": dict, "optimizer": dict, "next_epoch": int, "history": list}
    wrong = [k for k, kind in kinds.items() if not isinstance(state.get(k), kind) or isinstance(state.get(k), bool)]
    wrong += [] if wrong or all(isinstance(h, dict) for h in state["history"]) else ["history"]
    if wrong:
        raise ModelError(f"{path}: training checkpoint without a valid {wrong[0]!r}; delete it to start over")
    for key, value in info.items():
        if state["info"].get(key) != value:
            raise ModelError(f"{path}: made with a different {key} ({state['info'].get(key)!r} vs {value!r}); "
                             "delete it or choose another --out")
    epochs = (info.get("recipe") or {}).get("epochs")
    if not 0 <= state["next_epoch"] <= (epochs if isinstance(epochs, int) else state["next_epoch"]):
        raise ModelError(f"{path}: next epoch {state['next_epoch']} is outside the run's 0 to {epochs} epochs; "
                         "delete it to start over")
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise ModelError(f"{path}: its weights do not fit the model ({str(exc).splitlines()[0][:160]}); "
                         "delete it to start over") from None
    return state["next_epoch"], list(state["history"])
