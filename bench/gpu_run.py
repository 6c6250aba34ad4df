"""The prepared GPU run: one command, phases in order, each under its own deadline.

    python bench/gpu_run.py --kit .gpukit --out DIR [--work DIR] [--smoke] [--phases P,Q] [--deadline-scale F]

The default phases (issue 24: close the gap to the hardware): environment; variants (SD v1.5 synthesis eager /
channels_last / bf16 / torch.compile / CUDA graphs / max-autotune, each checked against eager, gpu_variants.py);
vae (the SD VAE encoder the same way, with profiler top kernels, gpu_encoder.py); labels (ResNet-18 relabel and
student at ImageNet shape through d4m's stream, gpu_labels.py); genspeed (generator optimiser steps per minute by
batch and compile mode, gpu_gen.py); projection (ImageNet-1K on 1 and 8 GPUs, gpu_project.py). The earlier runs'
phases (synthesis and encoding against the official pattern, gpu_sd.py; generator training and distillation,
gpu_gen.py) run when --phases names them.

Each phase appends its results to ``DIR/results.json`` (atomically) as it goes, so a run cut short still returns
what it measured. ``--smoke``: every phase with tiny shapes on the CPU through the same functions and dtypes
(float16 synthesis and encoding, channels_last, bf16 autocast training), CUDA-only variants skipped with the
reason recorded (the test suite runs it). README.md ("A prepared GPU run") says how to build the kit
(bench/gpu_prepare.py) and the exact device call.
"""
from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import platform
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE.parent))  # tests.tiny_models writes the offline CLIP tokenizer
from gpu_kit import PhaseDeadline  # noqa: E402

# phase deadlines in seconds (scaled by --deadline-scale). The default run (DEFAULT_PHASES, issue 24's) sums to
# 535 s, under the command's `timeout 580` with start-up; the earlier phases run when named in --phases
DEADLINES = {"environment": 15, "variants": 230, "vae": 80, "labels": 70, "genspeed": 130, "projection": 10,
             "synthesis": 110, "encoding": 55, "generator": 290, "distill": 40}
DEFAULT_PHASES = "environment,variants,vae,labels,genspeed,projection"
ALL_PHASES = DEFAULT_PHASES + ",synthesis,encoding,generator,distill"
REQUIRED = ("torch", "diffusers", "transformers", "accelerate", "safetensors", "PIL", "tqdm", "yaml")


@dataclass
class Context:
    args: argparse.Namespace
    out: Path
    work: Path
    kit: Path
    device: str
    smoke: bool
    results: dict = field(default_factory=dict)
    t0: float = field(default_factory=time.perf_counter)

    def save(self) -> None:
        """Write results.json atomically (a reader never sees half a file)."""
        tmp = self.out / ".results.json.tmp"
        tmp.write_text(json.dumps(self.results, indent=1, default=str) + "\n")
        os.replace(tmp, self.out / "results.json")

    def record(self, phase: str, rec: dict) -> None:
        self.results.setdefault("phases", {})[phase] = rec
        self.save()


def check_versions() -> dict:
    """Versions of what the run imports; one line and exit 2 if any is missing."""
    seen = {}
    for name in REQUIRED:
        try:
            mod = importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - any import failure is reported in one line
            raise SystemExit(f"gpu_run: cannot import {name} ({exc.__class__.__name__}: {exc}); "
                             "was the diffusers wheel installed into PYTHONPATH (see README, 'A prepared GPU run')?")
        seen[name] = getattr(mod, "__version__", "?")
        if name == "diffusers":  # from the carried wheel (/tmp/site) on the GPU machine
            seen["diffusers_path"] = str(Path(mod.__file__).parent)
    import d4m

    seen["d4m"] = getattr(d4m, "__version__", "?")
    seen["d4m_path"] = str(Path(d4m.__file__).parent)
    seen["python"] = platform.python_version()
    return seen


def phase_environment(ctx: Context, rec: dict) -> None:
    import torch
    import torch.nn.functional as F

    rec["torch_threads"], rec["cpu_count"] = torch.get_num_threads(), os.cpu_count()
    if ctx.device != "cuda":
        rec["gpu"] = None
        return
    p = torch.cuda.get_device_properties(0)
    rec.update(gpu=p.name, memory_gib=p.total_memory / 2**30, sm_count=p.multi_processor_count,
               capability=f"{p.major}.{p.minor}", cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
               bf16=torch.cuda.is_bf16_supported())
    from torch.nn.attention import SDPBackend, sdpa_kernel

    # SD v1.5's largest attention: 4096 tokens, 8 heads of 40 (64x64 latents, batch 2 for CFG)
    q = torch.randn(2, 8, 4096, 40, device="cuda", dtype=torch.float16)
    backends = {}
    for name in ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION", "MATH"):
        try:
            with sdpa_kernel(getattr(SDPBackend, name)):
                F.scaled_dot_product_attention(q, q, q)
                torch.cuda.synchronize()
                t = time.perf_counter()
                for _ in range(10):
                    F.scaled_dot_product_attention(q, q, q)
                torch.cuda.synchronize()
            backends[name] = {"ok": True, "ms": (time.perf_counter() - t) * 100}
        except Exception as exc:  # noqa: BLE001 - an unavailable backend is a finding, not a failure
            backends[name] = {"ok": False, "error": str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__}
    rec["sdpa"] = backends
    rec["sdpa_enabled"] = {"flash": torch.backends.cuda.flash_sdp_enabled(),
                           "mem_efficient": torch.backends.cuda.mem_efficient_sdp_enabled(),
                           "cudnn": torch.backends.cuda.cudnn_sdp_enabled()}


def run_phase(ctx: Context, name: str, fn) -> None:
    """Run one phase under its deadline; whatever it recorded is saved, finished or not."""
    limit = DEADLINES[name] * ctx.args.deadline_scale
    if name == "synthesis" and getattr(ctx.args, "compile", False):
        limit += 150  # torch.compile of the SD UNet takes minutes: --compile is for a run with device time to spare
    rec: dict = {"status": "running", "deadline_s": limit}
    ctx.record(name, rec)

    def expire(signum, frame):
        raise PhaseDeadline(f"{name}: deadline of {limit:.0f} s reached")

    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, limit)
    t = time.perf_counter()
    print(f"=== phase {name} (deadline {limit:.0f} s)", flush=True)
    try:
        fn(ctx, rec)
        rec["status"] = "ok"
    except PhaseDeadline as exc:
        rec["status"] = "deadline"
        rec["error"] = str(exc)
    except Exception as exc:  # noqa: BLE001 - one phase failing must not cost the others
        rec["status"] = "error"
        rec["error"] = f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:400]
        traceback.print_exc()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    rec["wall_s"] = round(time.perf_counter() - t, 2)
    ctx.record(name, rec)
    gc.collect()  # a phase cut short leaves its models to the collector; give the next phase the whole GPU
    if ctx.device == "cuda":
        import torch

        torch.cuda.empty_cache()
    print(f"=== phase {name}: {rec['status']} in {rec['wall_s']:.1f} s"
          + (f" ({rec['error']})" if rec.get("error") else ""), flush=True)


def summary(results: dict) -> list[str]:
    """The short table printed last (the device tool returns the end of the output)."""
    ph = results.get("phases", {})
    lines = [f"{k}: {v.get('status')} {v.get('wall_s', '?')} s" for k, v in ph.items()]
    for key in ph:
        for line in ph[key].get("summary", []):
            lines.append(f"{key}: {line}")
    return lines


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kit", type=Path, required=True, help="the folder gpu_prepare.py built (.gpukit)")
    p.add_argument("--out", type=Path, required=True, help="results.json, samples.png and the archives go here")
    p.add_argument("--work", type=Path, help="scratch folder (default: OUT/../gpu-work)")
    p.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU, same dtypes (the test suite runs it)")
    p.add_argument("--smoke-compile", action="store_true",
                   help="--smoke: also run the torch.compile variants (dynamo's eager backend; minutes on a CPU)")
    p.add_argument("--compile", action="store_true",
                   help="also time d4m's synthesis with torch.compile (adds up to 150 s to phase 2)")
    p.add_argument("--deadline-scale", type=float, default=1.0, help="multiply every phase deadline")
    p.add_argument("--preset", help="generator UNet preset (default: d4m generator train's default)")
    p.add_argument("--train-batch", type=int, help="generator batch (default 128 on the GPU, 16 smoke)")
    p.add_argument("--gen-compile", help="generator phase: d4m generator train's --compile mode (default no)")
    p.add_argument("--variants", help="variants phase: which of them, comma-separated (default: all, in order)")
    p.add_argument("--phases", default=DEFAULT_PHASES, help=f"comma-separated, in order; all: {ALL_PHASES}")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    versions = check_versions()
    import torch

    if not args.smoke and not torch.cuda.is_available():
        raise SystemExit("gpu_run: no CUDA device visible to torch; use --smoke on a CPU")
    for name in ("kit.json", "text.safetensors"):
        if not (args.kit / name).is_file():
            raise SystemExit(f"gpu_run: --kit {args.kit}: {name} missing (run bench/gpu_prepare.py first)")
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.work or args.out.parent / "gpu-work"
    work.mkdir(parents=True, exist_ok=True)
    ctx = Context(args, args.out, work, args.kit, "cpu" if args.smoke else "cuda", args.smoke)
    ctx.results = {"versions": versions, "argv": sys.argv[1:], "smoke": args.smoke,
                   "kit": json.loads((args.kit / "kit.json").read_text()).get("pack"),
                   "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if k != "d4m_path"), flush=True)
    if args.smoke:
        torch.set_num_threads(1)  # tiny shapes: more threads only spin on a shared CPU
    import gpu_encoder
    import gpu_gen
    import gpu_labels
    import gpu_project
    import gpu_sd
    import gpu_variants

    phases = {"environment": phase_environment, "variants": gpu_variants.phase_variants, "vae": gpu_encoder.phase_vae,
              "labels": gpu_labels.phase_labels, "genspeed": gpu_gen.phase_genspeed,
              "projection": gpu_project.phase_projection, "synthesis": gpu_sd.phase_synthesis,
              "encoding": gpu_sd.phase_encoding, "generator": gpu_gen.phase_generator,
              "distill": gpu_gen.phase_distill}
    unknown = [n for n in args.phases.split(",") if n not in phases]
    if unknown:
        raise SystemExit(f"gpu_run: --phases: unknown phase(s) {', '.join(unknown)} (known: {ALL_PHASES})")
    bad = [v for v in (args.variants or "").split(",") if v and v not in gpu_variants.ORDER]
    if bad:
        raise SystemExit(f"gpu_run: --variants: unknown {', '.join(bad)} (known: {','.join(gpu_variants.ORDER)})")
    for name in args.phases.split(","):
        run_phase(ctx, name, phases[name])
    ctx.results["total_s"] = round(time.perf_counter() - ctx.t0, 1)
    ctx.save()
    print("\n".join(["--- summary"] + summary(ctx.results) + [f"total {ctx.results['total_s']} s"]), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
