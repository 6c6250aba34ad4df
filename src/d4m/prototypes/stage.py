"""Stage 1 orchestration: per class, stream the codec latents into k-means; write prototypes.safetensors.

Each class is a unit of work: its result goes to ``work/prototypes/class_XXXXX.safetensors`` (atomic), so a
killed run resumes at the next class and several processes split the classes between them. The main process
then gathers the parts into ``prototypes.safetensors``: [classes, IPC, C, H, W] plus cluster sizes and inertia.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field

import torch
from safetensors import safe_open
from tqdm.auto import tqdm

from d4m.codec.base import Codec
from d4m.config import DistillConfig
from d4m.data.datasets import LabeledImages
from d4m.errors import DataError
from d4m.parallel import Topology
from d4m.prototypes.encode import EncodePool, class_latents, rebatch
from d4m.prototypes.kmeans import OnlineKMeans, kmeans_plus_plus, lloyd_accumulate, lloyd_update
from d4m.runio.rundir import RunDir
from d4m.runio.tensors import load_tensors, save_tensors
from d4m.seeding import cpu_generator

log = logging.getLogger(__name__)
CACHE_BYTES = 1 << 30  # full mode keeps a class's latents in memory up to this size, else re-encodes each pass


@dataclass
class ClassResult:
    centres: torch.Tensor  # [k, d]
    counts: torch.Tensor  # [k]
    inertia: float
    used: int
    skipped: list[str] = field(default_factory=list)


def class_indices(dataset: LabeledImages, cfg: DistillConfig) -> list[list[int]]:
    """Per class, the dataset indices to cluster, in the seeded order the stream visits them."""
    per_class: list[list[int]] = [[] for _ in dataset.classes]
    for i, t in enumerate(dataset.targets):
        per_class[t].append(i)
    out = []
    for c, idx in enumerate(per_class):
        if len(idx) < cfg.ipc and not cfg.allow_short:
            raise DataError(f"class {c} {dataset.classes[c]!r} has {len(idx)} images, fewer than --ipc {cfg.ipc} "
                            "(use --allow-short to reuse its images)")
        if not idx:
            raise DataError(f"class {c} {dataset.classes[c]!r} has no images")
        order = torch.randperm(len(idx), generator=cpu_generator(cfg.seed, "order", c)).tolist()
        idx = [idx[j] for j in order]
        if cfg.max_per_class:
            idx = idx[: cfg.max_per_class]
        out.append(idx)
    return out


def cluster_class(dataset: LabeledImages, indices: list[int], codec: Codec, cfg: DistillConfig, c: int,
                  cache_bytes: int = CACHE_BYTES, pool: EncodePool | None = None, encoded=None) -> ClassResult:
    """``encoded``: a ``d4m.prototypes.cache.EncodedLatents`` (a generator's latents) to take them from."""
    skipped: list[str] = []
    k = min(cfg.ipc, len(indices))
    known = encoded.rows(indices) if encoded is not None else None

    def stream():
        if known is not None:  # the same latents an encode would give, in the same order
            return iter(known.split(cfg.encode_batch_size))
        return class_latents(dataset, indices, codec, class_index=c, seed=cfg.seed, size=cfg.size,
                             batch_size=cfg.encode_batch_size, workers=cfg.workers, strict=cfg.strict,
                             skipped=skipped if not skipped_done else [], pool=pool)

    skipped_done = False
    gen = cpu_generator(cfg.seed, "kmeans", c)
    if cfg.kmeans == "online":
        km = OnlineKMeans(k, gen, reassign_ratio=cfg.km_reassign or 0.0, batch_size=cfg.km_expand * cfg.ipc)
        first = True
        for batch in rebatch(stream(), cfg.km_expand * cfg.ipc):
            if first and batch.shape[0] < k:
                raise DataError(f"class {c} {dataset.classes[c]!r}: only {batch.shape[0]} readable images for "
                                f"{k} prototypes")
            km.partial_fit(batch)
            first = False
        if km.centres is None:
            raise DataError(f"class {c} {dataset.classes[c]!r}: no readable images")
        return ClassResult(km.centres, km.counts, km.streaming_inertia, km.seen, skipped)

    # full: k-means++ on a seeded sample, then streaming Lloyd iterations until the inertia stops improving
    dim_bytes = None
    cache: list[torch.Tensor] | None = []
    sample: list[torch.Tensor] = []
    want = min(len(indices), max(1024, 10 * cfg.ipc))
    held = 0
    for batch in stream():
        dim_bytes = batch.shape[1] * 4
        if held < want:
            sample.append(batch[: want - held])
            held += sample[-1].shape[0]
        if cache is not None:
            cache.append(batch)
            if len(cache) * batch.shape[0] * dim_bytes > cache_bytes:
                cache = None
    skipped_done = True
    if not sample:
        raise DataError(f"class {c} {dataset.classes[c]!r}: no readable images")
    pts = torch.cat(sample)
    if pts.shape[0] < k:
        raise DataError(f"class {c} {dataset.classes[c]!r}: only {pts.shape[0]} readable images for {k} prototypes")
    centres = kmeans_plus_plus(pts, k, gen)
    del sample, pts
    prev = None
    for _ in range(cfg.kmeans_iters):
        sums = torch.zeros(centres.shape, dtype=torch.float64, device=centres.device)
        counts = torch.zeros(k, dtype=torch.float64, device=centres.device)
        total = sum(lloyd_accumulate(b, centres, sums, counts) for b in (cache if cache is not None else stream()))
        if prev is not None and prev - total <= cfg.kmeans_tol * total:
            inertia_now = total
            break
        prev = inertia_now = total
        centres = lloyd_update(centres, sums, counts)
    used = int(counts.sum())
    return ClassResult(centres, counts, inertia_now, used, skipped)


def _part_path(run: RunDir, c: int):
    return run.parts / f"class_{c:05d}.safetensors"


def source_fingerprint(dataset: LabeledImages, indices: list[int]) -> str:
    """A hash of what a class's prototypes are made from: each image's location, and for files their size and
    modification time (a stat, no read), so a changed, replaced, added or removed image changes it."""
    h = hashlib.sha256()
    for i in indices:
        where = dataset.describe(i)
        try:
            st = os.stat(where)
            stamp = f"{st.st_size}:{st.st_mtime_ns}"
        except (OSError, ValueError):
            stamp = ""
        h.update(f"{where}\t{stamp}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def changed_sources(run: RunDir, dataset: LabeledImages, per_class: list[list[int]]) -> list[int]:
    """Classes whose finished prototypes were made from other images than the dataset now lists (read only)."""
    changed = []
    for c, indices in enumerate(per_class):
        path = _part_path(run, c)
        if path.is_file():
            try:
                with safe_open(path, "pt") as fh:
                    recorded = json.loads((fh.metadata() or {}).get("d4m", "{}")).get("source")
            except Exception:  # noqa: BLE001 - a damaged part is redone like a missing one
                recorded = None
            if recorded is not None and recorded != source_fingerprint(dataset, indices):
                changed.append(c)
    return changed


def run_prototypes(cfg: DistillConfig, run: RunDir, dataset: LabeledImages, codec: Codec, topo: Topology,
                   timer=None, encoded=None) -> None:
    per_class = class_indices(dataset, cfg)
    latent_shape = (codec.latent_channels, cfg.size // codec.downsample, cfg.size // codec.downsample)
    todo = [c for c in topo.mine(list(range(len(per_class)))) if not _part_path(run, c).is_file()]
    pool = EncodePool(dataset, cfg.size, cfg.encode_batch_size, cfg.workers) if todo else None  # one for all classes
    for c in tqdm(todo, desc=f"prototypes (rank {topo.rank})" if topo.world > 1 else "prototypes", unit="class"):
        res = cluster_class(dataset, per_class[c], codec, cfg, c, pool=pool, encoded=encoded)
        centres = res.centres.float().reshape(-1, *latent_shape)
        counts = res.counts.to(torch.int64)
        if centres.shape[0] < cfg.ipc:  # --allow-short: reuse the class's prototypes cyclically
            reps = [j % centres.shape[0] for j in range(cfg.ipc)]
            centres, counts = centres[reps], torch.where(torch.arange(cfg.ipc) < len(res.counts), counts[reps], 0)
        meta = {"inertia": res.inertia, "used": res.used, "skipped": res.skipped,
                "source": source_fingerprint(dataset, per_class[c])}
        save_tensors(_part_path(run, c), {"centres": centres, "counts": counts}, meta)
        if timer is not None:
            timer.items += res.used
    topo.barrier()
    if topo.is_main:
        assemble(cfg, run, dataset, codec, per_class)
    topo.barrier()


def assemble(cfg: DistillConfig, run: RunDir, dataset: LabeledImages, codec: Codec, per_class) -> None:
    centres, counts, inertia, used, skipped = [], [], [], [], []
    for c in range(len(per_class)):
        part, meta = load_tensors(_part_path(run, c))
        centres.append(part["centres"])
        counts.append(part["counts"])
        inertia.append(float(meta["inertia"]))
        used.append(int(meta["used"]))
        skipped.append(meta["skipped"])
    dtype = torch.float16 if cfg.prototype_dtype == "float16" else torch.float32
    tensors = {"prototypes": torch.stack(centres).to(dtype).contiguous(), "counts": torch.stack(counts),
               "inertia": torch.tensor(inertia, dtype=torch.float64), "used": torch.tensor(used)}
    metadata = {"format": "d4m.prototypes/1", "classes": dataset.classes, "label_texts": dataset.label_texts,
                "codec": codec.describe(), "kmeans": cfg.kmeans, "ipc": cfg.ipc, "size": cfg.size, "seed": cfg.seed,
                "data": str(cfg.data), "skipped": skipped}
    save_tensors(run.prototypes, tensors, metadata)
    log.info("wrote %s: %s", run.prototypes, tuple(tensors["prototypes"].shape))


def load_prototypes(path) -> tuple[dict, dict]:
    """(tensors, metadata) of a prototypes.safetensors file."""
    if not path.is_file():
        raise DataError(f"{path}: no prototypes (run `d4m prototypes` first)")
    tensors, meta = load_tensors(path)
    protos = tensors.get("prototypes")
    n = protos.shape[0] if protos is not None and protos.dim() == 5 else None
    for key in ("classes", "label_texts"):
        value = meta.get(key)
        if n is None or not isinstance(value, list) or len(value) != n or not all(isinstance(v, str) for v in value):
            raise DataError(f"{path}: not a d4m prototypes file (needs a [classes, IPC, C, H, W] 'prototypes' "
                            f"tensor and {key!r} naming each class); rerun `d4m prototypes`")
    return tensors, meta
