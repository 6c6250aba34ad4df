"""Storage: prototype files and stored soft labels, d4m vs the official formats; plus top-k's accuracy cost.

1. Prototypes: d4m's ``prototypes.safetensors`` (written by the real ``run_prototypes`` + ``assemble``, fp32 and
   fp16 options) vs the official float64 JSON of the same prototypes (``json.dump`` of the centres as Python
   floats). Shape: CIFAR-10 at the paper's 512x512 encode, IPC 10 -> [10, 10, 4, 64, 64]; both sizes are linear in
   the number of values, so the ratio holds at any scale.
2. Soft labels for the same stream (ImageNet-1K head: 1000 classes, IPC 10 = 10,000 images, batch 1024, a few
   epochs): d4m ``LabelStore`` (top-k fp16 values + int16 indices + the mean of the rest, one file per epoch; and
   its full-fp16 format) vs FKD/SRe2L-style storage: per epoch, per batch, one ``torch.save`` file holding the
   batch's fp16 logits of all classes plus the augmentation parameters FKD needs to replay them (crop boxes, flips,
   mix permutation, lambda, box). d4m does not store the augmentation parameters: it regenerates them from the
   seed (the crops/mix below are d4m's own stream functions, so the baseline stores the same parameters). The
   logits are random (storage size does not depend on their values).
3. Accuracy cost of top-k: ``d4m evaluate`` on CIFAR-10, 10 real training images per class as the "distilled"
   set, ResNet-20 teacher, ConvNet-W128 student, stored labels full fp16 vs --topk 3, same seed, tested on a fixed
   subset of the CIFAR-10 test JPEGs.

    python bench/storage.py [--quick | --smoke] [--skip-accuracy]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from common import mode_args, ratio_line, save_result  # noqa: E402

CIFAR = Path(os.environ.get("D4M_BENCH_CIFAR", "/work/shared/data/cifar10"))
RESNET20 = Path(os.environ.get("D4M_BENCH_RESNET20", "/work/shared/weights/cifar10-resnet/resnet20-12fca82f.th"))


# ---------------------------------------------------------------------------------------------- 1. prototypes
def write_d4m_prototypes(root: Path, classes: int, ipc: int, latent: tuple[int, int, int], points: int,
                         dtype: str) -> Path:
    """Run d4m's prototype stage (k-means on synthetic latents in place of the encoder) -> prototypes.safetensors."""
    from d4m.config import DistillConfig
    from d4m.parallel import Topology
    from d4m.prototypes import stage
    from d4m.runio.rundir import RunDir

    dim = latent[0] * latent[1] * latent[2]

    def latents(dataset, indices, codec, *, class_index, batch_size, **_):
        g = torch.Generator().manual_seed(class_index)
        centre = torch.randn(dim, generator=g)
        for start in range(0, len(indices), batch_size):
            b = min(batch_size, len(indices) - start)
            yield centre + 0.8 * torch.randn(b, dim, generator=g)

    names = [f"class{c}" for c in range(classes)]
    targets = [c for c in range(classes) for _ in range(points)]
    dataset = SimpleNamespace(classes=names, label_texts=names, targets=targets,
                              describe=lambda i: f"synthetic:{i}")  # what a class's fingerprint names
    codec = SimpleNamespace(latent_channels=latent[0], downsample=8, name="synthetic",
                            describe=lambda: {"codec": "synthetic", "latent_channels": latent[0], "downsample": 8})
    cfg = DistillConfig(ipc=ipc, size=latent[1] * 8, prototype_dtype=dtype, workers=0, data="synthetic")
    run = RunDir(root)
    run.parts.mkdir(parents=True, exist_ok=True)
    original = stage.class_latents
    stage.class_latents = latents
    try:
        stage.run_prototypes(cfg, run, dataset, codec, Topology())
    finally:
        stage.class_latents = original
    return run.prototypes


def official_json(path: Path, prototypes: torch.Tensor, classes: list[str]) -> Path:
    """The official layout: per class, its IPC centres as lists of float64 numbers, json.dump'ed."""
    flat = prototypes.double().reshape(prototypes.shape[0], prototypes.shape[1], -1)
    with open(path, "w") as fh:
        json.dump({name: flat[c].tolist() for c, name in enumerate(classes)}, fh)
    return path


def bench_prototypes(tmp: Path, args) -> dict:
    from safetensors.torch import load_file

    classes, ipc, latent, points = (10, 10, (4, 64, 64), 100) if not args.smoke else (2, 2, (4, 8, 8), 4)
    out = {"shape": [classes, ipc, *latent]}
    d4m32 = write_d4m_prototypes(tmp / "run32", classes, ipc, latent, points, "float32")
    d4m16 = write_d4m_prototypes(tmp / "run16", classes, ipc, latent, points, "float16")
    protos = load_file(d4m32)["prototypes"]
    js = official_json(tmp / "prototypes.json", protos, [f"class{c}" for c in range(classes)])
    out["json_bytes"], out["fp32_bytes"], out["fp16_bytes"] = (p.stat().st_size for p in (js, d4m32, d4m16))
    out["fp32_ratio"] = out["json_bytes"] / out["fp32_bytes"]
    out["fp16_ratio"] = out["json_bytes"] / out["fp16_bytes"]
    # round trip: the fp32 file holds the JSON's numbers exactly (JSON float64 repr of float32 values)
    back = torch.tensor(list(json.loads(js.read_text()).values()), dtype=torch.float64)
    out["fp32_exact"] = bool(torch.equal(back.float().reshape(protos.shape), protos))
    half = load_file(d4m16)["prototypes"].float()
    out["fp16_max_rel_err"] = float(((half - protos).abs() / protos.abs().clamp_min(1e-3)).max())
    print(f"prototypes {out['shape']}: official JSON {out['json_bytes']:,} B, d4m fp32 {out['fp32_bytes']:,} B, "
          f"d4m fp16 {out['fp16_bytes']:,} B (fp16 max relative error {out['fp16_max_rel_err']:.1e})")
    print(ratio_line("prototypes size JSON / d4m fp32", out["fp32_ratio"], ">= 8x", out["fp32_ratio"] >= 8))
    print(ratio_line("prototypes size JSON / d4m fp16", out["fp16_ratio"], ">= 8x", out["fp16_ratio"] >= 8))
    return out


# -------------------------------------------------------------------------------------------- 2. soft labels
def stream_params(n: int, batch: int, epoch: int, size: int = 224):
    """The epoch's batches with d4m's crop/flip/CutMix parameters (what FKD stores beside its labels)."""
    from d4m.labels.stream import crop_params, epoch_batches, mix_params, params_checksum

    out = []
    for k, idx in enumerate(epoch_batches(n, batch, 0, epoch)):
        crops = [crop_params(size, size, 0, epoch, int(i)) for i in idx]
        mix = mix_params(len(idx), size, size, 0, epoch, k)
        out.append((idx, crops, mix, params_checksum(idx.tolist(), crops, mix)))
    return out


def bench_labels(tmp: Path, args) -> dict:
    from d4m.labels.store import LabelStore

    n, classes, epochs, batch = (10_000, 1000, 3, 1024) if not args.quick else (10_000, 1000, 2, 1024)
    if args.smoke:
        n, classes, epochs, batch = 300, 100, 1, 128
    ks = (3, 10) if not args.smoke else (3,)
    g = torch.Generator().manual_seed(0)
    fkd = tmp / "fkd"
    stores = {f"top{k}": LabelStore(tmp / f"d4m_top{k}") for k in ks}
    stores["fp16"] = LabelStore(tmp / "d4m_fp16")
    for s in stores.values():
        s.root.mkdir(parents=True)
    t_fkd = t_d4m = 0.0
    for epoch in range(epochs):
        params = stream_params(n, batch, epoch)
        logits = 2.0 * torch.randn(n, classes, generator=g)
        t0 = time.perf_counter()
        folder = fkd / f"epoch_{epoch}"
        folder.mkdir(parents=True)
        start = 0
        for k, (idx, crops, mix, _) in enumerate(params):
            part = logits[start:start + len(idx)]
            start += len(idx)
            torch.save({"coords": torch.tensor([c[:4] for c in crops], dtype=torch.float32),
                        "flip": torch.tensor([bool(c[4]) for c in crops]),
                        "mix_index": torch.tensor(mix.perm, dtype=torch.int64), "mix_lam": mix.lam,
                        "mix_bbox": list(mix.box), "soft_label": part.half()}, folder / f"batch_{k}.tar")
        t1 = time.perf_counter()
        sums = [p[3] for p in params]
        for name, store in stores.items():
            fmt, k = ("fp16", 0) if name == "fp16" else ("topk", int(name[3:]))
            store.write_epoch(epoch, logits, sums, fmt, k)
        t_fkd += t1 - t0
        t_d4m += time.perf_counter() - t1
    fkd_bytes = sum(p.stat().st_size for p in fkd.rglob("*.tar"))
    labels_only = n * epochs * classes * 2
    out = {"images": n, "classes": classes, "epochs": epochs, "batch": batch, "fkd_bytes": fkd_bytes,
           "fkd_files": len(list(fkd.rglob("*.tar"))), "fkd_per_image_epoch": fkd_bytes / (n * epochs),
           "fp16_logits_only_per_image_epoch": labels_only / (n * epochs)}
    for name, store in stores.items():
        b = store.bytes_used()
        out[f"{name}_bytes"], out[f"{name}_per_image_epoch"] = b, b / (n * epochs)
        out[f"{name}_ratio"] = fkd_bytes / b
    print(f"soft labels, {n} images x {classes} classes x {epochs} epochs: FKD-style {fkd_bytes:,} B in "
          f"{out['fkd_files']} files ({out['fkd_per_image_epoch']:.1f} B/image-epoch); d4m "
          + ", ".join(f"{name} {out[name + '_bytes']:,} B ({out[name + '_per_image_epoch']:.1f} B/image-epoch)"
                      for name in stores))
    for name in stores:
        target = ">= 20x" if name.startswith("top") else "(full fp16: no target)"
        print(ratio_line(f"soft labels size FKD / d4m {name}", out[f"{name}_ratio"], target,
                         out[f"{name}_ratio"] >= 20 if name.startswith("top") else None))
    return out


# ---------------------------------------------------------------------------------------------- 3. accuracy
def link_subset(src: Path, dst: Path, per_class: int) -> None:
    for cls in sorted(p for p in src.iterdir() if p.is_dir()):
        (dst / cls.name).mkdir(parents=True)
        for f in sorted(cls.iterdir())[:per_class]:
            (dst / cls.name / f.name).symlink_to(f)


def bench_accuracy(tmp: Path, args) -> dict:
    import d4m

    epochs, val_per_class = (30, 200) if not args.quick else (10, 100)
    if not (CIFAR / "train").is_dir() or not RESNET20.is_file():
        print(f"accuracy: skipped ({CIFAR} or {RESNET20} missing)")
        return {"skipped": True}
    link_subset(CIFAR / "train", tmp / "images", 10)
    link_subset(CIFAR / "test", tmp / "val", val_per_class)
    seeds = 1 if args.smoke or args.quick else 2
    out = {"epochs": epochs, "seeds": seeds, "train_images": 100, "val_images": 10 * val_per_class}
    for name, topk in (("full", 0), ("top3", 3)):
        t0 = time.perf_counter()
        s = d4m.evaluate_run(images=tmp / "images", teacher=f"cifar-resnet20:{RESNET20}", val=f"folder:{tmp / 'val'}",
                             size=32, epochs=epochs, device="cpu", labels="stored", seeds=seeds, eval_every=epochs,
                             out=tmp / f"eval_{name}", topk=topk)
        out[f"{name}_top1"] = s["last_epoch_top1"]["mean"]
        out[f"{name}_per_seed"] = s["per_seed"]
        out[f"{name}_label_store"] = s["label_store"]
        print(f"accuracy {name}: top-1 {out[name + '_top1']} % over {seeds} seed(s), labels {s['label_store']} "
              f"({time.perf_counter() - t0:.0f} s)")
    if isinstance(out.get("full_top1"), (int, float)) and isinstance(out.get("top3_top1"), (int, float)):
        out["top1_delta"] = out["top3_top1"] - out["full_top1"]
        print(ratio_line("top-1 change top-3 vs full (points)", out["top1_delta"], "small", None, unit=" pt"))
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode_args(p)
    p.add_argument("--skip-accuracy", action="store_true", help="sizes only (no training)")
    args = p.parse_args(argv)
    res = {}
    with tempfile.TemporaryDirectory(prefix="d4m-bench-storage-") as tmp:
        tmp = Path(tmp)
        res["prototypes"] = bench_prototypes(tmp / "protos", args)
        res["labels"] = bench_labels(tmp / "labels", args)
        if not args.skip_accuracy and not args.smoke:  # smoke: sizes only (training is what --quick is for)
            res["accuracy"] = bench_accuracy(tmp / "acc", args)
    if not args.smoke:
        save_result("storage_quick" if args.quick else "storage", res)
    return res


if __name__ == "__main__":
    main()
