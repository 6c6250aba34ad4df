"""Table 4 and the strength x guidance grid with a d4m-trained generator, on CIFAR-10 (issue 13).

    python experiments/generator_ablation.py [--generator DIR] [--shared ../shared] [--out runs/ablation-c10]
        [--strengths 0.3 0.5 0.7 0.9] [--guidance 1 2 4 8] [--seeds 3] [--epochs 150] [--jobs 2]
        [--phase base|grid|table|all] [--cards all|best] [--smoke]

One set of D4M prototypes (online k-means on the TAEF2 latents of 1,000 seeded training images per class, IPC 10,
as in ``cifar10_offline.py``) feeds every synthesis. Students: ConvNet-W128, recipe ``locked``, ResNet-20 soft
labels, last-epoch top-1 on the 10,000 test JPEGs.

- ``base`` (needs no generator): the prototypes, and ``decode`` (prototypes decoded as they are) with its card; the
  card trains the random-real baseline (same seeded subset, same soft labels) once into the shared cache.
- ``grid``: D4M at every strength x guidance, one seed each.
- ``table``: the grid cell with the best seed-0 top-1 fixes the guidance G (picked on the test set: say so when
  quoting it); then D4M at strength 0.5 and 0.7 and at the best cell's strength, and ``noise-init`` (the generator
  from pure noise, Table 4's "w/o prototypes"), all at guidance G, with ``--seeds`` seeds and the card
  (``--cards best``: the card for the best cell only, saving 3 x seeds students per other row).

Every step is a resumable d4m command (a grid cell's seed 0 is reused by the table's seeds), so rerunning continues.
Writes ``<out>/results.json`` and ``<out>/results.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cifar10_offline import Runner, assets, ms  # noqa: E402  (the same resumable command runner and table cell)

from d4m.generators import path as shipped  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_GENERATOR = shipped("cifar10-taef2")  # shipped inside d4m, trained on a lent H200 (RESULTS.md 2.6)


def cell(strength: float, guidance: float) -> str:
    return f"d4m-s{strength:g}-g{guidance:g}"


def summary(out: Path, name: str, recipe: str = "locked") -> dict | None:
    path = out / name / "eval" / "convnet-w128" / recipe / "summary.json"
    return json.loads(path.read_text()) if path.is_file() else None


def card(out: Path, name: str) -> dict | None:
    path = out / name / "eval" / "convnet-w128" / "locked" / "card.json"
    return json.loads(path.read_text()) if path.is_file() else None


def best_cell(out: Path, a) -> tuple[float, float]:
    scores = {(s, g): summary(out, cell(s, g)) for s in a.strengths for g in a.guidance}
    missing = [cell(*k) for k, v in scores.items() if v is None]
    if missing:
        raise SystemExit(f"the grid is not finished ({', '.join(missing)}): run --phase grid first")
    return max(scores, key=lambda k: scores[k]["last_epoch_top1"]["mean"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--generator", default=str(DEFAULT_GENERATOR) if DEFAULT_GENERATOR else None,
                    help="a `d4m generator train` output (needed for grid and table; default: the one that ships, "
                         "cifar10-taef2 inside the d4m package)")
    ap.add_argument("--shared", default=str(ROOT.parent / "shared"))
    ap.add_argument("--out", default=str(ROOT / "runs" / "ablation-c10"))
    ap.add_argument("--strengths", type=float, nargs="+", default=[0.3, 0.5, 0.7, 0.9])
    ap.add_argument("--guidance", type=float, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=150)
    ap.add_argument("--per-class", type=int, default=1000, help="training images per class encoded for k-means")
    ap.add_argument("--steps", type=int, default=50, help="scheduler steps for strength 1 (the model's own sampler)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--cards", choices=("best", "all"), default="all",
                    help="table rows that get a card (hard labels, 3 x seeds more students): the best cell or all")
    ap.add_argument("--phase", choices=("base", "grid", "table", "all"), default="all")
    ap.add_argument("--smoke", action="store_true", help="tiny scale: 2 epochs, 20 images per class, 200 val images")
    a = ap.parse_args()
    train, test, teacher, codec = assets(a.shared)
    if a.smoke:
        a.epochs, a.per_class, a.seeds = 2, 20, min(a.seeds, 2)
    if a.phase != "base" and not a.generator:
        ap.error("--generator is needed for the grid and the table")
    out = Path(a.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    run = Runner(out, a.jobs)
    protos = out / "decode"
    val = ["--val", f"folder:{test}"] + (["--val-limit", "200"] if a.smoke else [])

    def evaluate(name: str, seeds: int, with_card: bool) -> None:
        args = ["evaluate", "--run", str(out / name), "--teacher", teacher, "--student", "convnet-w128", "--recipe",
                "locked", "--epochs", str(a.epochs), "--seeds", str(seeds), "--eval-every", str(a.epochs), *val]
        run(f"eval-{name}-{seeds}{'-card' if with_card else ''}", args + (["--card"] if with_card else []))

    def synthesize(name: str, *extra: str) -> None:
        run(f"synth-{name}", ["synthesize", "--run", str(protos), "--out", str(out / name), "--generator", "model",
                              "--model", str(Path(a.generator).resolve()), "--codec", codec, "--negative-prompt", "",
                              "--steps", str(a.steps), "--device", "cpu", "--seed", "0", "--workers", "0", *extra])

    def pooled(jobs: list) -> None:
        with ThreadPoolExecutor(a.jobs) as pool:
            for f in [pool.submit(j) for j in jobs]:
                f.result()

    if a.phase in ("base", "all"):
        run("decode", ["distill", "--data", f"folder:{train}", "--codec", codec, "--generator", "none", "--size",
                       "64", "--ipc", "10", "--kmeans", "online", "--max-per-class", str(a.per_class), "--out",
                       str(protos), "--workers", "0"])
        evaluate("decode", a.seeds, True)
    if a.phase in ("grid", "all"):
        cells = [(s, g) for g in a.guidance for s in a.strengths]
        pooled([lambda s=s, g=g: (synthesize(cell(s, g), "--strength", str(s), "--guidance", str(g)),
                                  evaluate(cell(s, g), 1, False)) for s, g in cells])
    if a.phase in ("table", "all"):
        s_best, g_best = best_cell(out, a)
        print(f"best grid cell (seed 0, test top-1): strength {s_best:g}, guidance {g_best:g}", flush=True)
        noise = f"noise-init-g{g_best:g}"
        rows = sorted({cell(0.5, g_best), cell(0.7, g_best), cell(s_best, g_best)})
        pooled([lambda: synthesize(noise, "--init", "noise", "--guidance", str(g_best))])
        pooled([lambda n=n: evaluate(n, a.seeds, False) for n in [*rows, noise]])
        carded = [*rows, noise] if a.cards == "all" else [cell(s_best, g_best)]
        pooled([lambda n=n: evaluate(n, a.seeds, True) for n in carded])
    write_results(out, a)
    return 0


def write_results(out: Path, a) -> None:
    grid = {cell(s, g): summary(out, cell(s, g)) for s in a.strengths for g in a.guidance}
    lines = ["| strength \\ guidance | " + " | ".join(f"{g:g}" for g in a.guidance) + " |",
             "|---|" + "---|" * len(a.guidance)]
    for s in a.strengths:
        cells = []
        for g in a.guidance:
            got = grid[cell(s, g)]
            per = got and next((p for p in got["per_seed"] if p["seed"] == 0), None)
            cells.append(f"{per['last_top1']:.2f}" if per else "-")
        lines.append(f"| {s:g} | " + " | ".join(cells) + " |")
    rows = {}
    for d in sorted(out.iterdir()):
        if d.is_dir() and (d / "eval").is_dir() and (summary(out, d.name) or {}).get("seeds", 0) > 1:
            c = card(out, d.name) or {}
            rows[d.name] = {"top1": summary(out, d.name)["last_epoch_top1"], "card": c}
    lines += ["", "| images (IPC 10) | student top-1, locked, seeds | card: random real | card: hard labels | IOR |",
              "|---|---|---|---|---|"]
    for name, r in rows.items():
        c = r["card"]
        lines.append(f"| {name} | {ms(r['top1'])} | {ms(c.get('random'))} | {ms(c.get('hard'))} | "
                     f"{c.get('IOR', '-')} |")
    (out / "results.json").write_text(json.dumps({"grid": grid, "table": rows}, indent=2) + "\n")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
