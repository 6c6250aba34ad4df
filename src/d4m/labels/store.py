"""Stored soft labels: per epoch one safetensors file with the teacher's logits for the stream's batches.

Layout: ``<dir>/meta.json`` (teacher, stream recipe, seed, format, bytes used) and ``<dir>/epoch_XXXX.safetensors``
holding, in stream order, either ``logits`` (N x C, fp16 or fp32) or ``values`` (N x k fp16) + ``indices``
(N x k int16/int32) + ``rest`` (N fp16, the mean of the logits outside the top k). The crop/mix parameters are not
stored: they are regenerated from the seed, and each batch's parameter checksum is stored to prove it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tqdm import tqdm

from d4m.errors import ConfigError, ModelError
from d4m.labels.feed import StreamImages, iterate_epoch, num_batches
from d4m.runio import StageTimer, atomic_write_text
from d4m.runio.tensors import load_tensors, save_tensors

FORMATS = ("fp16", "fp32", "topk")


def encode(logits: torch.Tensor, fmt: str, k: int = 0) -> dict[str, torch.Tensor]:
    """Tensors to store for N x C float ``logits`` in format ``fmt``."""
    if fmt == "fp32":
        return {"logits": logits.float().contiguous()}
    if fmt == "fp16" or (fmt == "topk" and k >= logits.shape[1]):
        return {"logits": logits.half().contiguous()}
    if fmt != "topk" or k < 1:
        raise ConfigError(f"label format {fmt!r} with k={k}: expected fp16, fp32 or topk with k >= 1")
    values, indices = logits.float().topk(k, dim=1)
    rest = (logits.float().sum(1) - values.sum(1)) / (logits.shape[1] - k)
    index_dtype = torch.int16 if logits.shape[1] <= torch.iinfo(torch.int16).max else torch.int32
    return {"values": values.half().contiguous(), "indices": indices.to(index_dtype).contiguous(),
            "rest": rest.half().contiguous()}


def decode(tensors: dict[str, torch.Tensor], num_classes: int) -> torch.Tensor:
    """N x C float32 logits; for top-k, the classes outside the top k get the stored mean of their logits."""
    if "logits" in tensors:
        return tensors["logits"].float()
    values, indices, rest = tensors["values"].float(), tensors["indices"].long(), tensors["rest"].float()
    out = rest[:, None].expand(-1, num_classes).clone()
    return out.scatter_(1, indices, values)


class LabelStore:
    """One labelled stream: a folder of per-epoch label files plus meta.json."""

    def __init__(self, root: Path):
        self.root = Path(root)

    @property
    def meta_path(self) -> Path:
        return self.root / "meta.json"

    def epoch_path(self, epoch: int) -> Path:
        return self.root / f"epoch_{epoch:04d}.safetensors"

    def has_epoch(self, epoch: int) -> bool:
        return self.epoch_path(epoch).is_file()

    def meta(self) -> dict:
        if not self.meta_path.is_file():
            raise ConfigError(f"{self.root}: no stored labels there (run `d4m relabel` first)")
        return json.loads(self.meta_path.read_text())

    def bytes_used(self) -> int:
        return sum(p.stat().st_size for p in self.root.glob("epoch_*.safetensors"))

    def start(self, meta: dict) -> None:
        """Write meta.json, or check that an existing one describes the same stream (resume)."""
        if self.meta_path.is_file():
            old = self.meta()
            for key in ("teacher", "stream", "format", "k", "num_images", "num_classes"):
                if old.get(key) != meta.get(key):
                    raise ConfigError(f"{self.root}: existing labels differ in {key!r} ({old.get(key)!r} vs "
                                      f"{meta.get(key)!r}); pass another --name or delete that folder")
            meta = {**old, **{k: v for k, v in meta.items() if k not in old}}
        atomic_write_text(self.meta_path, json.dumps(meta, indent=2) + "\n")

    def write_epoch(self, epoch: int, logits: torch.Tensor, checksums: list[str], fmt: str, k: int) -> None:
        info = {"epoch": epoch, "format": fmt, "k": k, "checksums": checksums}
        save_tensors(self.epoch_path(epoch), encode(logits, fmt, k), info)

    def read_epoch(self, epoch: int, num_classes: int) -> tuple[torch.Tensor, list[str]]:
        path = self.epoch_path(epoch)
        if not path.is_file():
            raise ConfigError(f"{path}: missing (stored labels cover fewer epochs; rerun `d4m relabel`)")
        tensors, info = load_tensors(path)
        return decode(tensors, num_classes), info["checksums"]


def relabel(data: StreamImages, teacher, store: LabelStore, epochs: int, fmt: str = "fp16", k: int = 0,
            device: str = "cpu", workers: int = 0, log_path: Path | None = None, extra_meta: dict | None = None,
            topo=None) -> dict:
    """Store the teacher's logits for epochs 0..epochs-1 of the stream; epochs already on disk are skipped.

    Under several processes (``topo``, see d4m.parallel) the epochs are shared out; each epoch file depends only
    on (stream seed, epoch), so the files are the same whatever the number of processes.
    """
    from d4m.parallel import Topology

    topo = topo or Topology()
    if fmt not in FORMATS:
        raise ConfigError(f"--label-format {fmt!r}: expected one of {', '.join(FORMATS)}")
    meta = {"teacher": teacher.spec, "teacher_arch": teacher.arch, "stream": data.spec.to_dict(), "format": fmt,
            "k": int(k), "num_images": len(data), "num_classes": teacher.num_outputs, **(extra_meta or {})}
    if topo.is_main:
        store.start(meta)
    topo.barrier()
    todo = [e for e in topo.mine(list(range(epochs))) if not store.has_epoch(e)]
    teacher.to(device)
    with StageTimer(log_path, "relabel", unit="image_epochs", epochs=len(todo), labels=str(store.root)) as timer:
        for epoch in tqdm(todo, desc="relabel", unit="epoch", disable=not todo):
            parts, sums = [], []
            for batch in iterate_epoch(data, epoch, workers):
                parts.append(teacher(batch.images.to(device)).cpu())
                sums.append(batch.checksum)
            store.write_epoch(epoch, torch.cat(parts), sums, fmt, k)
            timer.items += len(data)
    topo.barrier()
    done = sorted(int(p.stem.split("_")[1]) for p in store.root.glob("epoch_*.safetensors"))
    used = store.bytes_used()
    final = {**store.meta(), "epochs_stored": len(done), "bytes": used,
             "bytes_per_image_epoch": round(used / max(1, len(done) * len(data)), 2)}
    if topo.is_main:
        atomic_write_text(store.meta_path, json.dumps(final, indent=2) + "\n")
    topo.barrier()
    return final


class StoredLabels:
    """Label source replaying a LabelStore: checks each batch's parameter checksum against the stored one."""

    def __init__(self, store: LabelStore, num_classes: int, batches_per_epoch: int):
        self.store, self.num_classes, self.per_epoch = store, num_classes, batches_per_epoch
        self.batch_size = int(store.meta()["stream"]["batch_size"])
        self._epoch, self._logits, self._sums, self._offsets = None, None, None, None

    def __call__(self, epoch: int, batch) -> torch.Tensor:
        if self._epoch != epoch:
            self._logits, self._sums = self.store.read_epoch(epoch, self.num_classes)
            self._epoch, self._offsets = epoch, {}
            if len(self._sums) != self.per_epoch:
                raise ModelError(f"{self.store.epoch_path(epoch)}: {len(self._sums)} batches stored, the stream "
                                 f"has {self.per_epoch} (different images or batch size?)")
        if self._sums[batch.number] != batch.checksum:
            raise ModelError(f"{self.store.epoch_path(epoch)}: batch {batch.number} was stored for other crops/mix "
                             "(images, seed or recipe changed since `d4m relabel`)")
        start = batch.number * self.batch_size
        return self._logits[start:start + len(batch.indices)]


class OnlineLabels:
    """Label source running the teacher on the very batch the student sees."""

    def __init__(self, teacher, device: str = "cpu"):
        self.teacher = teacher.to(device)
        self.device = device

    def __call__(self, epoch: int, batch) -> torch.Tensor:
        return self.teacher(batch.images.to(self.device))
