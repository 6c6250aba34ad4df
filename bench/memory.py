"""Peak memory of the prototype stage at 1x, 2x and 4x the dataset size: it should stay flat.

Each run is ``d4m.find_prototypes(...)`` (what ``d4m prototypes`` calls) in a fresh subprocess (so the peaks are
independent); the peak RSS is that child's ``ru_maxrss`` from ``os.wait4``. Data: CIFAR-10 training JPEGs, N images
per class symlinked into an ImageFolder under a temporary directory (``folder:`` data), encoded at ``--size`` with a
random-weight SD-shaped VAE (the codec's weights do not change the memory pattern) and clustered per class.

The baseline is the 1x run; the ratio is peak(4x) / peak(1x). For scale, the line "all latents" says how much the
latents of the whole dataset would take if they were held in memory at once. ``--kmeans full`` is also measured
(not in --quick): its Lloyd passes cache a class's latents (up to 1 GiB per class) instead of re-encoding them.

    python bench/memory.py [--quick | --smoke]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import make_sd_model, mode_args, ratio_line, save_result  # noqa: E402

CIFAR = Path(os.environ.get("D4M_BENCH_CIFAR", "/work/shared/data/cifar10"))
CHILD = "import json, sys, torch; torch.set_num_threads(1); import d4m; d4m.find_prototypes(**json.loads(sys.argv[1]))"


def link_subset(src: Path, dst: Path, per_class: int, classes: int) -> None:
    for cls in sorted(p for p in src.iterdir() if p.is_dir())[:classes]:
        (dst / cls.name).mkdir(parents=True)
        for f in sorted(cls.iterdir())[:per_class]:
            (dst / cls.name / f.name).symlink_to(f)


def peak_rss(settings: dict, log: Path, in_process: bool = False) -> tuple[int, float]:
    """(peak RSS in bytes, seconds) of one ``d4m.find_prototypes(**settings)`` in a child process.

    ``in_process`` (smoke mode only: checks the plumbing fast): run it here and return this process's peak so far.
    """
    t0 = time.perf_counter()
    if in_process:
        import resource

        import d4m

        d4m.find_prototypes(**settings)
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, time.perf_counter() - t0
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(settings)], stdout=fh,
                                stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"d4m.find_prototypes({settings}) failed ({proc.returncode}); see {log}:\n"
                         f"{log.read_text()[-2000:]}")
    return usage.ru_maxrss * 1024, time.perf_counter() - t0  # Linux: kilobytes


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode_args(p)
    p.add_argument("--size", type=int, help="encode resolution (default 128: 4x16x16 latents)")
    args = p.parse_args(argv)
    if not (CIFAR / "train").is_dir():
        raise SystemExit(f"memory: {CIFAR}/train not found (set D4M_BENCH_CIFAR)")
    base, classes, size, ipc = (50, 10, 128, 10)
    if args.quick:
        base, classes = 25, 10
    if args.smoke:
        base, classes, size, ipc = 4, 2, 16, 2
    size = args.size or size
    modes = ["online"] if args.quick or args.smoke else ["online", "full"]
    res = {"classes": classes, "size": size, "ipc": ipc, "runs": []}
    with tempfile.TemporaryDirectory(prefix="d4m-bench-mem-") as tmp:
        tmp = Path(tmp)
        model = make_sd_model(tmp / "sd", widths=(8, 16, 16, 16), cross_dim=16, text_layers=1, text_ffn=32,
                              vae_widths=(16, 32, 32, 32))
        for scale in (1, 2, 4):
            link_subset(CIFAR / "train", tmp / f"data{scale}", base * scale, classes)
        latent_bytes = 4 * (size // 8) ** 2 * 4
        for mode in modes:
            peaks = {}
            for scale in (1, 2, 4):
                n = base * scale
                settings = {"data": f"folder:{tmp / f'data{scale}'}", "model": str(model),
                            "out": str(tmp / f"run_{mode}_{scale}"), "ipc": ipc, "size": size, "kmeans": mode,
                            "workers": 0, "device": "cpu", "dtype": "float32"}
                rss, secs = peak_rss(settings, tmp / f"log_{mode}_{scale}.txt", in_process=args.smoke)
                peaks[scale] = rss
                run = {"mode": mode, "scale": scale, "per_class": n, "images": n * classes, "peak_rss_bytes": rss,
                       "seconds": secs, "all_latents_bytes": n * classes * latent_bytes}
                res["runs"].append(run)
                print(f"{mode} {scale}x ({n} images/class, {n * classes} images): peak RSS {rss / 2**20:.1f} MiB "
                      f"({secs:.0f} s); all latents would be {run['all_latents_bytes'] / 2**20:.1f} MiB")
            r2, r4 = peaks[2] / peaks[1], peaks[4] / peaks[1]
            res[f"{mode}_ratio_2x"], res[f"{mode}_ratio_4x"] = r2, r4
            target = "<= 1.05x (flat)" if mode == "online" else "(cache by design)"
            print(ratio_line(f"memory {mode} peak RSS 2x/1x", r2, target, r2 <= 1.05 if mode == "online" else None))
            print(ratio_line(f"memory {mode} peak RSS 4x/1x", r4, target, r4 <= 1.05 if mode == "online" else None))
    if not args.smoke:
        save_result("memory_quick" if args.quick else "memory", res)
    return res


if __name__ == "__main__":
    main()
