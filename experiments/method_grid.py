"""One PNG comparing runs: for each run a panel of the first N images per class (one row per class).

    python experiments/method_grid.py OUT.png RUN [RUN ...] [--per-class 5]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageDraw

import d4m


def panel(run: Path, per_class: int, tile: int) -> Image.Image:
    rows = d4m.Run(run).manifest()
    classes = sorted({r["class_index"] for r in rows})
    img = Image.new("RGB", (per_class * (tile + 1) + 1, len(classes) * (tile + 1) + 13), "white")
    ImageDraw.Draw(img).text((2, 0), run.name.removesuffix("-ipc10"), fill="black")
    for i, c in enumerate(classes):
        for j, r in enumerate([r for r in rows if r["class_index"] == c][:per_class]):
            tile_img = Image.open(run / r["file"]).convert("RGB").resize((tile, tile), Image.BICUBIC)
            img.paste(tile_img, (1 + j * (tile + 1), 13 + i * (tile + 1)))
    return img


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--per-class", type=int, default=5)
    ap.add_argument("--tile", type=int, default=32)
    a = ap.parse_args()
    panels = [panel(Path(r), a.per_class, a.tile) for r in a.runs]
    out = Image.new("RGB", (sum(p.width for p in panels) + 6 * (len(panels) - 1), max(p.height for p in panels)),
                    "white")
    x = 0
    for p in panels:
        out.paste(p, (x, 0))
        x += p.width + 6
    out.save(a.out, quality=90) if a.out.lower().endswith((".jpg", ".jpeg")) else out.save(a.out, optimize=True)
    print(f"{a.out}: {out.width} x {out.height}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
