"""The ImageNet-1K cost projections of the GPU run, from measured rates only.

``project`` (the "encoding" phase): prototypes + synthesis on 1 and 8 GPUs. ``project_imagenet`` (the
"projection" phase, last): prototypes + synthesis + soft labels + one student, for d4m as it runs today and with
the fastest variants measured, each input taken from this run's phases or, where this run did not measure it,
from an earlier GPU run's results (``bench/results/gpu*.json``, named in ``sources``). Nothing is ever filled in
from a CPU run: a missing input leaves its total out.
"""

from __future__ import annotations

import json
from pathlib import Path

IMAGENET_TRAIN, IMAGENET_CLASSES = 1_281_167, 1000
RESULTS = Path(__file__).resolve().parent / "results"

def project(enc: dict, syn: dict) -> dict:
    """Projected ImageNet-1K wall time (prototypes + synthesis) on 1 and 8 GPUs from the measured rates.

    Assumptions (stated in the output): loading overlaps encoding (DataLoader workers), so prototypes take
    images / min(encode rate, loader rate); 8 GPUs have 8x the cores (16 per GPU, as measured); k-means' cost is
    left out (one pass of additions over the latents, small beside encoding); synthesis splits evenly.
    """
    enc_rates = [v["images_per_s"] for k, v in enc.get("vae", {}).items() if k.startswith("encode") and "images_per_s" in v]
    loader = enc.get("loader_500x375", {}).get("images_per_s")
    best = syn.get("d4m", {}).get(str(syn.get("best_batch")), {})
    s_img = best.get("s_per_image")
    if not enc_rates or not loader or not s_img:
        return {"missing": "needs the encoding and synthesis measurements"}
    encode = max(enc_rates)
    out = {"assumptions": "loader overlaps encoding; 16 CPU cores per GPU; k-means left out; synthesis includes "
                          "the VAE decode; official synthesis rate for comparison",
           "encode_images_per_s": encode, "loader_images_per_s": loader, "synthesis_s_per_image": s_img}
    for gpus in (1, 8):
        proto = IMAGENET_TRAIN / (gpus * min(encode, loader))
        for ipc in (10, 50):
            synth = IMAGENET_CLASSES * ipc * s_img / gpus
            official = IMAGENET_CLASSES * ipc * syn.get("official", {}).get("s_per_image", float("nan")) / gpus
            out[f"ipc{ipc}_gpus{gpus}"] = {
                "prototypes_h": proto / 3600, "synthesis_h": synth / 3600, "total_h": (proto + synth) / 3600,
                "bottleneck_prototypes": "loader" if loader < encode else "vae-encode",
                "synthesis_official_pattern_h": official / 3600}
    return out


def summary_lines(rec: dict) -> list[str]:
    p = rec.get("projection", {})
    lines = [f"VAE encode best {p.get('encode_images_per_s', float('nan')):.1f} img/s at 512; loader "
             f"{p.get('loader_images_per_s', float('nan')):.1f} img/s (500x375 JPEG -> 512)"]
    for key in ("ipc10_gpus1", "ipc50_gpus1", "ipc10_gpus8", "ipc50_gpus8"):
        if key in p:
            v = p[key]
            lines.append(f"ImageNet {key}: {v['total_h']:.2f} h (prototypes {v['prototypes_h']:.2f} h, "
                         f"{v['bottleneck_prototypes']}-bound; synthesis {v['synthesis_h']:.2f} h)")
    return lines


def earlier_runs(folder: Path = RESULTS) -> list[tuple[str, dict]]:
    """Earlier GPU runs' results (never a smoke run's), oldest first."""
    runs = []
    for path in sorted(folder.glob("gpu*.json"), key=lambda p: (len(p.stem), p.stem)):
        r = json.loads(path.read_text())
        if not r.get("smoke") and (r.get("phases", {}).get("environment", {}).get("gpu")):
            runs.append((path.name, r))
    return runs


def _syn_rate(ph: dict) -> dict:
    """Seconds per image from one run's phases: eager (d4m today) and the recommended variant."""
    out = {}
    var = ph.get("variants", {}).get("variants", {})
    if "s_per_image" in var.get("eager", {}):
        out["today"] = var["eager"]["s_per_image"]
        best = ph["variants"].get("recommendation", {}).get("default", "eager")
        out["best"] = var.get(best, {}).get("s_per_image", out["today"])
    syn = ph.get("synthesis", {})
    if "today" not in out and syn.get("best_batch") is not None:
        s = syn.get("d4m", {}).get(str(syn["best_batch"]), {}).get("s_per_image")
        if s:
            out["today"] = out["best"] = s
    return out


def _enc_rate(ph: dict) -> dict:
    out = {}
    var = ph.get("vae", {}).get("variants", {})
    if "best_images_per_s" in var.get("eager", {}):
        out["today"] = var["eager"]["best_images_per_s"]
        out["best"] = max(v.get("best_images_per_s", 0) for v in var.values())
    enc = ph.get("encoding", {}).get("vae", {})
    old = [v["images_per_s"] for k, v in enc.items() if k.startswith("encode_contiguous") and "images_per_s" in v]
    if "today" not in out and old:
        out["today"] = out["best"] = max(old)
    return out


def _loader_rate(ph: dict) -> dict:
    r = ph.get("encoding", {}).get("loader_500x375", {}).get("images_per_s")
    return {"today": r, "best": r} if r else {}


def _labels(ph: dict) -> dict:
    p = ph.get("labels", {}).get("projection", {})
    return {"today": p, "best": p} if "labels_ipc10_h" in p else {}


def gather(phases: dict, earlier: list[tuple[str, dict]]) -> tuple[dict, dict]:
    """Each input from this run, else the latest earlier run that measured it: (values, sources)."""
    values, sources = {}, {}
    for key, fn in (("synthesis_s_per_image", _syn_rate), ("encode_images_per_s", _enc_rate),
                    ("loader_images_per_s", _loader_rate), ("labels", _labels)):
        got = fn(phases)
        if got:
            values[key], sources[key] = got, "this run"
            continue
        for name, r in reversed(earlier):
            got = fn(r.get("phases", {}))
            if got:
                values[key], sources[key] = got, f"{name} ({r.get('started', '?')})"
                break
    return values, sources


def project_imagenet(values: dict) -> dict:
    """ImageNet-1K IPC 10 / 50 hours on 1 and 8 GPUs, for 'today' and 'best', from ``gather``'s values.

    Stages run one after another. 8 GPUs: prototypes, synthesis and labels split 8 ways (classes / epochs are
    shared out by d4m's topology, 16 CPU cores per GPU); one student does not (d4m trains one student per
    process, no DDP), so it stays at its one-GPU time. k-means is left out (one pass of additions per class).
    """
    out = {}
    need = ("synthesis_s_per_image", "encode_images_per_s", "loader_images_per_s", "labels")
    missing = [k for k in need if k not in values]
    if missing:
        return {"missing": missing}
    for case in ("today", "best"):
        enc, loader = values["encode_images_per_s"][case], values["loader_images_per_s"][case]
        s_img, lab = values["synthesis_s_per_image"][case], values["labels"][case]
        for gpus in (1, 8):
            for ipc in (10, 50):
                parts = {"prototypes_h": IMAGENET_TRAIN / min(enc, loader) / gpus / 3600,
                         "synthesis_h": IMAGENET_CLASSES * ipc * s_img / gpus / 3600,
                         "labels_h": lab[f"labels_ipc{ipc}_h"] / gpus,
                         "student_h": lab.get(f"student_ipc{ipc}_h", float("nan"))}
                out[f"{case}_ipc{ipc}_gpus{gpus}"] = dict(parts, total_h=sum(parts.values()))
    return out


def phase_projection(ctx, rec: dict) -> None:
    earlier = [] if ctx.smoke else earlier_runs()  # a CPU smoke never mixes with GPU figures
    values, sources = gather(ctx.results.get("phases", {}), earlier)
    rec["inputs"], rec["sources"] = values, sources
    rec["projection"] = project_imagenet(values)
    p = rec["projection"]
    if "missing" in p:
        rec["summary"] = [f"ImageNet-1K projection: not computed, missing {', '.join(p['missing'])}"]
        return
    rec["summary"] = [f"ImageNet-1K IPC {ipc} {case}: {p[f'{case}_ipc{ipc}_gpus1']['total_h']:.2f} h on 1 GPU, "
                      f"{p[f'{case}_ipc{ipc}_gpus8']['total_h']:.2f} h on 8 (target IPC 10 <= 3 h on 8)"
                      for case in ("today", "best") for ipc in (10, 50)]
