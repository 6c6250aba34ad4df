"""`d4m distill / prototypes / synthesize` on CIFAR-10 images with a tiny random SD-shaped model: exit codes, one-line
errors, resume guards (the outputs themselves are checked through the API in test_api.py)."""

import json

import pytest
from PIL import Image
from safetensors.torch import load_file

from d4m.cli.main import main
from tests.conftest import shared_path


def _pngs(run):
    return sorted((run / "images").rglob("*.png"))


def test_other_config_is_refused_without_force(tmp_path, tiny_sd, cifar_subset, capsys):
    run = tmp_path / "run"
    base = ["distill", "--data", f"folder:{cifar_subset}", "--ipc", "1", "--model", str(tiny_sd), "--size", "64",
            "--steps", "10", "--out", str(run), "--workers", "0", "--max-per-class", "4"]
    assert main(base) == 0
    first = sorted(p.read_bytes() for p in _pngs(run))
    assert main(base[:-2] + ["--max-per-class", "4", "--strength", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "another configuration" in err and "strength" in err
    assert sorted(p.read_bytes() for p in _pngs(run)) == first  # nothing lost
    assert main(base + ["--strength", "0.5", "--force"]) == 0
    assert sorted(p.read_bytes() for p in _pngs(run)) != first


def test_decode_with_taef2_no_generator(tmp_path, cifar_subset):
    taef2 = shared_path("weights", "taef2")
    run = tmp_path / "run"
    rc = main(["distill", "--data", f"folder:{cifar_subset}", "--ipc", "2", "--codec", f"taef2:{taef2}",
               "--generator", "none", "--size", "64", "--out", str(run), "--workers", "0"])
    assert rc == 0
    pngs = _pngs(run)
    assert len(pngs) == 20 and {Image.open(p).size for p in pngs} == {(32, 32)}
    protos = load_file(run / "prototypes.safetensors")["prototypes"]
    assert protos.shape == (10, 2, 32, 8, 8)
    rows = [json.loads(line) for line in (run / "manifest.jsonl").read_text().splitlines()]
    assert rows[0]["generator"] == "none" and rows[0]["model"] is None


def test_codec_channel_mismatch_is_refused(tmp_path, tiny_sd, cifar_subset, capsys):
    taef2 = shared_path("weights", "taef2")
    rc = main(["distill", "--data", f"folder:{cifar_subset}", "--ipc", "1", "--codec", f"taef2:{taef2}",
               "--model", str(tiny_sd), "--size", "64", "--out", str(tmp_path / "r"), "--workers", "0",
               "--max-per-class", "2"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "32 latent channels" in err and "takes 4" in err


@pytest.mark.parametrize("flag,value", [("--strength", "0"), ("--strength", "1.5"), ("--ipc", "0"),
                                        ("--guidance", "-1"), ("--steps", "0")])
def test_bad_flags_name_the_flag(tmp_path, cifar_subset, capsys, flag, value):
    args = ["distill", "--data", f"folder:{cifar_subset}", "--out", str(tmp_path / "r"), flag, value]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and flag in err
    assert not (tmp_path / "r").exists()


def test_preset_and_config_file(tmp_path, capsys):
    from d4m.config import preset_names, resolve

    assert {"cifar10-ipc10", "cifar10-ipc50", "cifar100-ipc10", "cifar100-ipc50", "tiny-imagenet-ipc50",
            "tiny-imagenet-ipc100", "imagenet-ipc10", "imagenet-ipc50", "imagenet-ipc100",
            "imagenet-ipc200"} <= set(preset_names())
    cfg = resolve({"preset": "imagenet-ipc10", "data": "imagenet:/x"})
    assert (cfg.ipc, cfg.km_expand, cfg.strength, cfg.guidance, cfg.steps, cfg.size) == (10, 1, 0.7, 8.0, 50, 512)
    assert cfg.model == "stable-diffusion-v1-5/stable-diffusion-v1-5"
    path = tmp_path / "c.yaml"
    path.write_text("preset: cifar10-ipc50\nstrength: 0.5\n")
    cfg = resolve({"guidance": 2.0}, str(path))
    assert (cfg.ipc, cfg.strength, cfg.guidance) == (50, 0.5, 2.0)
    path.write_text("strenght: 0.5\n")
    assert main(["distill", "--config", str(path), "--data", "folder:/x", "--out", str(tmp_path / "r")]) == 2
    assert "'strenght'" in capsys.readouterr().err
    path.write_text("ipc: ten\n")
    assert main(["distill", "--config", str(path), "--data", "folder:/x", "--out", str(tmp_path / "r")]) == 2
    assert "'ipc'" in capsys.readouterr().err


def test_more_images_than_prototypes_reuse_them_with_other_seeds(tmp_path, tiny_sd, cifar_subset):
    run = tmp_path / "run"
    assert main(["prototypes", "--data", f"folder:{cifar_subset}", "--ipc", "2", "--model", str(tiny_sd), "--size",
                 "64", "--out", str(run), "--workers", "0", "--max-per-class", "6"]) == 0
    assert main(["synthesize", "--run", str(run), "--ipc", "5", "--steps", "4", "--batch-size", "10"]) == 0
    rows = [json.loads(line) for line in (run / "manifest.jsonl").read_text().splitlines()]
    assert len(rows) == 50 and len(_pngs(run)) == 50
    assert [r["prototype_index"] for r in rows[:5]] == [0, 1, 0, 1, 0]
    assert len({r["seed"] for r in rows}) == 50 and len({r["sha256"] for r in rows}) == 50


def test_synthesize_into_new_out_keeps_the_source_run(tmp_path, tiny_sd, cifar_subset):
    """One set of prototypes feeds several syntheses (e.g. strength 0.5 and 0.7) without touching the source run."""
    run = tmp_path / "protos"
    assert main(["prototypes", "--data", f"folder:{cifar_subset}", "--ipc", "1", "--model", str(tiny_sd), "--size",
                 "64", "--out", str(run), "--workers", "0", "--max-per-class", "4"]) == 0
    source_config = (run / "config.yaml").read_bytes()
    for strength in ("0.5", "0.7"):
        out = tmp_path / f"s{strength}"
        assert main(["synthesize", "--run", str(run), "--out", str(out), "--strength", strength, "--steps", "10"]) == 0
        assert len(_pngs(out)) == 10
        assert (out / "prototypes.safetensors").read_bytes() == (run / "prototypes.safetensors").read_bytes()
        assert f"strength: {strength}" in (out / "config.yaml").read_text()
    assert (run / "config.yaml").read_bytes() == source_config and not (run / "images").exists()
    # 10 steps: strength 0.5 denoises 5 of them, 0.7 denoises 7 (with 4 steps both would round to 2)
    a, b = (sorted(p.read_bytes() for p in _pngs(tmp_path / f"s{s}")) for s in ("0.5", "0.7"))
    assert a != b
    # resuming the same out is allowed; another strength there is refused like any other config change
    assert main(["synthesize", "--run", str(run), "--out", str(tmp_path / "s0.5"), "--strength", "0.5",
                 "--steps", "10"]) == 0
    assert main(["synthesize", "--run", str(run), "--out", str(tmp_path / "s0.5"), "--strength", "0.6",
                 "--steps", "10"]) == 2


def test_synthesize_refuses_denoising_flags_on_a_decode_run(tmp_path, cifar_subset, tiny_sd, capsys):
    """A decode run (generator none) given --model/--strength must not silently decode again."""
    taef2 = shared_path("weights", "taef2")
    run = tmp_path / "dec"
    assert main(["distill", "--data", f"folder:{cifar_subset}", "--ipc", "1", "--codec", f"taef2:{taef2}",
                 "--generator", "none", "--size", "32", "--out", str(run), "--workers", "0",
                 "--max-per-class", "4"]) == 0
    out = tmp_path / "s07"
    assert main(["synthesize", "--run", str(run), "--out", str(out), "--model", str(tiny_sd), "--strength",
                 "0.7"]) == 2
    assert "--generator model" in capsys.readouterr().err and not out.exists()
    assert main(["synthesize", "--run", str(run), "--out", str(out), "--init", "noise", "--generator", "none"]) == 2
    assert "--init noise" in capsys.readouterr().err
    # a decode run whose codec is the model's VAE may be pointed at another copy of that model
    vae_run = tmp_path / "vae-dec"
    assert main(["distill", "--data", f"folder:{cifar_subset}", "--ipc", "1", "--model", str(tiny_sd), "--generator",
                 "none", "--size", "32", "--out", str(vae_run), "--workers", "0", "--max-per-class", "4"]) == 0
    assert main(["synthesize", "--run", str(vae_run), "--model", str(tiny_sd)]) == 0
