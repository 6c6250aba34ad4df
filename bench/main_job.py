"""Speed of the embedded main job (``d4m distill --preset cifar10-ipc10-cpu``) on this CPU, and where the time goes.

    python bench/main_job.py [--images 1000] [--threads 1] [--shared ../shared] [--smoke]

The README's main job, run for real on a seeded-order subset of ../shared's CIFAR-10 training JPEGs (``--images``,
split evenly over the classes; TAEF2 from a private torch hub cache seeded with ../shared's checksummed files, so
nothing is downloaded), timed per stage from the run's own log. Beside it, each part alone: reading and resizing the
JPEGs, the TAEF2 encoder, one UNet step with guidance, the decoder. The encoder's images/s is compared with what
its FLOPs (counted with ``torch.utils.flop_counter``) allow at this machine's measured fp32 matmul rate. The 2-thread
speed-up of the encoder is measured too (meaningless on a loaded machine), and the whole job (50,000 images, 100
synthesised) projected for 2 cores as twice the 1-thread rates (ideal scaling), with the encoder's FLOP floor.
Times are process CPU seconds at 1 thread (the minimum over repeats for the parts), which other jobs on a shared
machine inflate much less than wall time; the stage wall times are recorded too. Writes
``bench/results/main_job.json`` (``--smoke``: a tiny run, nothing written).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, ratio_line, save_result  # noqa: E402

PRESET = "cifar10-ipc10-cpu"
FULL_IMAGES = 50_000


def matmul_gflops(n: int = 1024, reps: int = 5) -> float:
    """The best fp32 GFLOP/s of an n x n matmul at the current thread count."""
    a, b = torch.rand(n, n), torch.rand(n, n)
    a @ b
    best = min(_seconds(lambda: a @ b) for _ in range(reps))
    return 2 * n**3 / best / 1e9


def _seconds(fn) -> float:
    """CPU seconds of the process (with 1 thread: the time on an unshared core, whatever else the machine runs)."""
    t = time.process_time()
    fn()
    return time.process_time() - t


def _wall(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def flops(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def subset(train: Path, per_class: int, out: Path) -> Path:
    for cls in sorted(p.name for p in train.iterdir() if p.is_dir()):
        (out / cls).mkdir(parents=True)
        for f in sorted((train / cls).iterdir())[:per_class]:
            (out / cls / f.name).symlink_to(f)
    return out


def seed_hub(weights: Path, home: Path) -> None:
    """TORCH_HOME with the TAEF2 files where ``--codec taef2`` looks (checked by their SHA-256 on use)."""
    os.environ["TORCH_HOME"] = str(home)
    torch.hub._hub_dir = None  # follow TORCH_HOME
    from d4m.codec.taef2_fetch import SHA256, cache_dir

    cache_dir().mkdir(parents=True, exist_ok=True)
    for name in SHA256:
        shutil.copyfile(weights / name, cache_dir() / name)


def load_seconds_per_image(folder: Path, size: int, limit: int) -> float:
    """Reading a JPEG, RGB, squashing to size x size, to a tensor: what the prototype stage's loader does."""
    from PIL import Image
    import torchvision.transforms.functional as TF

    files = sorted(folder.rglob("*.jpg"))[:limit]
    t = time.process_time()
    for f in files:
        with Image.open(f) as im:
            TF.to_tensor(im.convert("RGB").resize((size, size), Image.BICUBIC))
    return (time.process_time() - t) / len(files)


@torch.no_grad()
def parts(codec, gen, cfg, images: torch.Tensor, reps: int) -> dict:
    """Seconds per image of the encoder, of one guided UNet step, of the decoder, and their FLOPs."""
    b = images.shape[0]
    enc = min(_seconds(lambda: codec.encode(images)) for _ in range(reps)) / b
    z = codec.encode(images[:8])
    zin = torch.cat([z, z])  # guidance: conditional and unconditional halves
    emb = torch.zeros(zin.shape[0], gen.tokenizer.model_max_length, gen.unet.config.cross_attention_dim)
    t = torch.tensor(500)
    gen.unet(zin, t, encoder_hidden_states=emb)
    step = min(_seconds(lambda: gen.unet(zin, t, encoder_hidden_states=emb)) for _ in range(reps)) / 8
    codec.decode(z)
    dec = min(_seconds(lambda: codec.decode(z)) for _ in range(reps)) / 8
    return {"encode_s": enc, "unet_step_s": step, "decode_s": dec,
            "encode_flops": flops(lambda: codec.encode(images[:1])),
            "unet_step_flops": flops(lambda: gen.unet(zin[:1].repeat(2, 1, 1, 1), t, encoder_hidden_states=emb[:2])),
            "decode_flops": flops(lambda: codec.decode(z[:1]))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1000, help="training images encoded (split over the classes)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--shared", default=str(ROOT.parent / "shared"))
    ap.add_argument("--smoke", action="store_true", help="tiny run for the test suite (numbers meaningless)")
    a = ap.parse_args(argv)
    import d4m
    from d4m.codec import build_codec
    from d4m.config import resolve
    from d4m.synthesis.generator import load_generator

    shared = Path(a.shared)
    train, weights = shared / "data/cifar10/train", shared / "weights/taef2"
    if not train.is_dir() or not weights.is_dir():
        raise SystemExit(f"main_job: needs CIFAR-10 JPEGs and TAEF2 weights under {shared} (--shared)")
    images, reps = (30, 1) if a.smoke else (a.images, 5)
    extra = {"steps": 2, "ipc": 2} if a.smoke else {}
    torch.set_num_threads(a.threads)
    work = Path(tempfile.mkdtemp(prefix="d4m-main-job-"))
    hub_before = (os.environ.get("TORCH_HOME"), torch.hub._hub_dir)
    try:
        seed_hub(weights, work / "torch-home")
        folder = subset(train, images // 10, work / "data")
        cfg = resolve({"preset": PRESET, **extra})
        # 1. the machine and the parts alone
        gflops = matmul_gflops(256 if a.smoke else 1024)
        codec, gen = build_codec(cfg.codec), load_generator(cfg.model)
        from PIL import Image
        import torchvision.transforms.functional as TF

        batch = torch.stack([TF.to_tensor(Image.open(f).convert("RGB").resize((cfg.size, cfg.size), Image.BICUBIC))
                             for f in sorted(folder.rglob("*.jpg"))[: 8 if a.smoke else 32]])
        alone = parts(codec, gen, cfg, batch, reps)
        alone["load_s"] = load_seconds_per_image(folder, cfg.size, min(images, 500))
        torch.set_num_threads(2)
        enc_2t = min(_wall(lambda: codec.encode(batch)) for _ in range(reps)) / batch.shape[0]
        torch.set_num_threads(a.threads)
        # 2. the main job itself, its stage log and the expected time it printed
        said = []
        handler = logging.Handler()
        handler.emit = lambda rec: said.append((time.process_time(), rec.getMessage()))
        logging.getLogger("d4m").addHandler(handler)
        logging.getLogger("d4m").setLevel(logging.INFO)
        t0, c0 = time.perf_counter(), time.process_time()
        run = d4m.distill(f"folder:{folder}", preset=PRESET, out=work / "run", workers=0, **extra)
        wall = time.perf_counter() - t0
        logging.getLogger("d4m").removeHandler(handler)
        stages = {r["stage"]: r for r in run.log()}
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if hub_before[0] is None:
            os.environ.pop("TORCH_HOME", None)
        else:
            os.environ["TORCH_HOME"] = hub_before[0]
        torch.hub._hub_dir = hub_before[1]
    k = int(cfg.steps * cfg.strength)
    n_synth = 10 * cfg.ipc
    cpu_at = {m.split(":")[0]: c for c, m in said if m.startswith(("prototypes:", "synthesis:"))}
    proto_cpu, synth_cpu = cpu_at["prototypes"] - c0, cpu_at["synthesis"] - cpu_at["prototypes"]
    proto_s, synth_s = stages["prototypes"]["wall_s"], stages["synthesis"]["wall_s"]
    bound = gflops * 1e9 / alone["encode_flops"]  # images/s if the encoder ran at the matmul rate
    speedup = alone["encode_s"] / enc_2t  # CPU s at 1 thread / wall s at 2: on a loaded machine it says little
    # 2 cores projected as twice one core (ideal scaling: the optimistic end), and the FLOP floor at the matmul rate
    project = {"prototypes_s": FULL_IMAGES * proto_cpu / images / 2, "synthesis_s": synth_cpu / 2,
               "scaling": "ideal: 2 cores = 2 x the 1-thread CPU-time rates measured here",
               "encoder_flop_floor_s": FULL_IMAGES * alone["encode_flops"] / (2 * gflops * 1e9)}
    project["total_s"] = project["prototypes_s"] + project["synthesis_s"]
    record = {
        "settings": {"preset": PRESET, "images": images, "synthesised": n_synth, "threads": a.threads,
                     "denoising_steps": k, "size": cfg.size, "guidance": cfg.guidance},
        "load_avg": os.getloadavg()[0], "matmul_gflops": gflops, "parts": alone, "encode_2_threads_s": enc_2t,
        "stages": {"prototypes": {"wall_s": proto_s, "cpu_s": proto_cpu, "images_per_s": images / proto_s,
                                  "images_per_cpu_s": images / proto_cpu},
                   "synthesis": {"wall_s": synth_s, "cpu_s": synth_cpu, "images_per_s": n_synth / synth_s,
                                 "images_per_cpu_s": n_synth / synth_cpu},
                   "distill_wall_s": wall, "distill_cpu_s": time.process_time() - c0},
        "expected": next((m for _, m in said if m.startswith("expected time")), None),
        "encoder_flop_bound_images_per_s": bound, "encoder_images_per_s": 1 / alone["encode_s"],
        "encoder_share_of_bound": (1 / alone["encode_s"]) / bound, "two_thread_speedup_measured": speedup,
        "projection_2_cores_50k": project,
    }
    print(json.dumps(record, indent=1))
    print(ratio_line("encoder images/s vs its FLOP bound at the matmul rate", record["encoder_share_of_bound"],
                     "report", None))
    print(ratio_line("prototype stage vs encoder alone (CPU time)", (images / proto_cpu) * alone["encode_s"],
                     "report", None))
    print(ratio_line("projected 50,000-image main job on 2 cores, minutes", project["total_s"] / 60, "<= 15",
                     project["total_s"] <= 900, unit=" min"))
    if not a.smoke:
        print(f"wrote {save_result('main_job', record)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
