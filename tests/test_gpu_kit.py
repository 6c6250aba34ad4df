"""The prepared GPU run (bench/gpu_*.py): the kit, its size check, the exact device command, and every phase in
its tiny --smoke form on the CPU, run through that exact command (wheel install into a clean --target included).

Nothing is downloaded: the kit is built from ../shared with a hand-made wheel and a tiny text encoder.
"""

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import SHARED, shared_path
from tests.tiny_models import make_tiny_clip

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import gpu_kit  # noqa: E402
import gpu_prepare  # noqa: E402
import gpu_run  # noqa: E402
import gpu_sd  # noqa: E402
import gpu_variants  # noqa: E402


def make_wheel(folder: Path, name: str = "d4mkitprobe") -> Path:
    """A minimal valid pure-python wheel (what `pip install --no-index --target` accepts)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-0.1-py3-none-any.whl"
    files = {f"{name}/__init__.py": "__version__ = '0.1'\n",
             f"{name}-0.1.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n",
             f"{name}-0.1.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = "".join(f"{k},,\n" for k in files) + f"{name}-0.1.dist-info/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as z:
        for k, v in files.items():
            z.writestr(k, v)
        z.writestr(f"{name}-0.1.dist-info/RECORD", record)
    return folder


@pytest.fixture(scope="module")
def tiny_text(tmp_path_factory):
    return make_tiny_clip(tmp_path_factory.mktemp("kit-clip"))


def kit_repo(tmp: Path, tiny_text: Path, per_class: int) -> Path:
    """A checkout-like repo (git, .gpukit ignored, the code reachable by links) with a kit built in it."""
    shared_path("data", "cifar10", "train")
    repo = tmp / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / ".gitignore").write_text("/.gpukit/\n")
    for name in ("bench", "src", "tests"):
        (repo / name).symlink_to(ROOT / name)
    gpu_prepare.prepare(repo, SHARED, per_class=per_class, wheels_from=make_wheel(tmp / "wheels"),
                        imports=["d4mkitprobe"], text_encoder=str(tiny_text), max_tokens=16)
    return repo


# every phase, the projection last (it reads what the others measured, the JPEG loader's rate from 'encoding')
SMOKE_PHASES = [p for p in gpu_run.ALL_PHASES.split(",") if p != "projection"] + ["projection"]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory, tiny_text):
    """The exact device command, with --smoke added, run here: (repo, $OUT, work dir, completed process)."""
    tmp = tmp_path_factory.mktemp("gpu-kit")
    repo = kit_repo(tmp, tiny_text, per_class=6)
    out, work, bin_dir = tmp / "OUT", Path("/tmp/d4m-gpu"), tmp / "bin"
    out.mkdir()
    bin_dir.mkdir()
    shim = bin_dir / "python3"  # the GPU image's python3 is this interpreter here (a link would lose its venv)
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    shim.chmod(0o755)
    command = (gpu_kit.COMMAND.replace("bench/gpu_run.py", "bench/gpu_run.py --smoke --deadline-scale 10 --phases "
                                       + ",".join(SMOKE_PHASES))
               .replace("/tmp/site", str(tmp / "site")).replace("/tmp/d4m-gpu", str(tmp / "work")))
    env = dict(os.environ, OUT=str(out), PATH=f"{bin_dir}:{os.environ['PATH']}")
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(["bash", "-c", command], cwd=repo, env=env, capture_output=True, text=True, timeout=900)
    return repo, out, tmp / "work", proc


def test_smoke_runs_every_phase_through_the_device_command(smoke):
    repo, out, work, proc = smoke
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (out.parent / "site" / "d4mkitprobe" / "__init__.py").is_file()  # the carried wheels were installed
    results = json.loads((out / "results.json").read_text())
    assert results["smoke"] is True
    phases = results["phases"]
    assert list(phases) == SMOKE_PHASES
    assert {k: v["status"] for k, v in phases.items()} == dict.fromkeys(phases, "ok"), phases
    var = phases["variants"]["variants"]  # CUDA-only variants skipped with a reason, the rest measured
    assert set(var) == set(gpu_variants.ORDER)
    assert var["reduce-overhead"]["skipped"] == gpu_variants.NEEDS_CUDA["reduce-overhead"]
    assert var["max-autotune"]["skipped"] and var["compile"]["skipped"] == gpu_variants.SMOKE_COMPILE
    for name in ("eager", "channels_last", "bf16"):
        v = var[name]
        assert v["s_per_image"] > 0 and v["ratio_vs_official"] > 0 and v["dtype"].endswith(name == "bf16" and
                                                                                           "bfloat16" or "float16")
        assert v["latent_diff_vs_fp32"] <= v["latent_scale"] and 0 <= v["image_diff_vs_fp32_255"] <= 255
    assert var["eager"]["latent_diff_vs_eager"] == 0 and var["channels_last"]["layout"] == "channels_last"
    assert var["bf16"]["fwd_diff_vs_fp32"] > var["eager"]["fwd_diff_vs_fp32"]  # bf16 rounds coarser than fp16
    assert phases["variants"]["recommendation"]["default"] in var
    vae = phases["vae"]
    assert {"eager", "channels_last", "bf16"} <= {k for k, v in vae["variants"].items() if v.get("best_images_per_s")}
    assert vae["profile"]["contiguous"] and vae["profile"]["channels_last"][0]["self_ms"] >= 0
    lab = phases["labels"]
    for key in ("stream_cpu_images_per_s", "teacher_gpu_images_per_s", "student_gpu_images_per_s",
                "relabel_images_per_s", "train_images_per_s"):
        assert lab[key] > 0, key
    assert lab["projection"]["labels_ipc50_h"] == pytest.approx(5 * lab["projection"]["labels_ipc10_h"])
    runs = phases["genspeed"]["runs"]
    assert runs["batch128-no"]["steps"] == 4 and runs["batch128-no"]["steps_per_s"] > 0
    assert runs["batch128-default"]["skipped"] and phases["genspeed"]["best"] in ("batch128-no", "batch512-no")
    proj = phases["projection"]
    assert set(proj["sources"].values()) == {"this run"}  # a smoke run never reads earlier GPU results
    assert proj["projection"]["today_ipc10_gpus8"]["total_h"] > 0
    syn = phases["synthesis"]
    assert syn["max_abs_latent_diff"] < 1e-3 * syn["latent_scale"]  # d4m's denoise = the pipeline, same seeds
    assert syn["max_abs_latent_diff_b1"] < 1e-3 * syn["latent_scale"]  # one image per call
    assert syn["max_abs_latent_diff_fp32"] < 1e-4 * syn["latent_scale_fp32"]  # fp32 copies of the models
    assert syn["official"]["images_per_s"] > 0 and syn["ratio"] > 0
    assert "ipc50_gpus8" in phases["encoding"]["projection"]
    gen = phases["generator"]
    assert gen["train"]["steps"] == 4 and 0 <= gen["check"]["accuracy"] <= 100
    assert gen["export"]["largest_shard_mb"] <= 15 and gen["export"]["total_mb"] <= 48
    assert phases["distill"]["runs"]["s0.7"]["images"] == 20
    assert "--- summary" in (out / "log.txt").read_text()


def test_returned_files_fit_the_device_limits(smoke):
    _, out, _, _ = smoke
    files = [p for p in out.rglob("*") if p.is_file()]
    assert {"results.json", "log.txt", "samples.png", "distilled.tar", "generator.tar.part00"} <= {p.name for p in files}
    assert len(files) <= gpu_kit.OUT_MAX_FILES
    for p in files:
        assert p.stat().st_size <= gpu_kit.OUT_FILE_LIMIT
        assert len(p.relative_to(out).parts) <= 3 and re.fullmatch(r"[A-Za-z0-9._-]+", p.name)


@pytest.mark.parametrize("copy_encoder", [False, True])
def test_joined_generator_draws_what_the_kit_sampled(smoke, tmp_path, request, copy_encoder):
    """The returned UNet + the text encoder here = the model the GPU sampled from (same images, pixel for pixel),
    whether the folder names its encoder in d4m.json (the committable form) or holds a copy of it."""
    import gpu_join
    from d4m.generator.sample import sample_to_folder

    _, out, work, _ = smoke
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the smoke ran: the same reduction order, so the same pixels
    request.addfinalizer(lambda: torch.set_num_threads(threads))
    model = gpu_join.join(out, tmp_path / "gen", codec=f"taef2:{shared_path('weights', 'taef2')}",
                          copy_encoder=copy_encoder)
    assert (model / "text_encoder").is_dir() == (model / "tokenizer").is_dir() == copy_encoder
    sample_to_folder(str(model), None, 1, tmp_path / "s", steps=2, guidance=3.0, seed=0, device="cpu")
    mine, kit = sorted((tmp_path / "s").rglob("*.png")), sorted((work / "samples").rglob("*.png"))
    assert len(mine) == len(kit) == 10
    for a, b in zip(mine, kit):
        assert np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b))), (a, b)


def test_pack_round_trip_and_embeddings(tmp_path, tiny_text):
    from d4m.text_encoders import EmbeddingTable

    repo = kit_repo(tmp_path, tiny_text, per_class=3)
    kit = repo / gpu_kit.KIT
    dest, n = gpu_kit.unpack_images(kit / gpu_kit.PACK, tmp_path / "unpacked")
    assert n == 30
    for f in dest.rglob("*.jpg"):
        assert f.read_bytes() == (SHARED / "data" / "cifar10" / "train" / f.parent.name / f.name).read_bytes()
    table = EmbeddingTable.load(kit / gpu_kit.TEXT)
    assert table.prompts[-2:] == ["", gpu_kit.NEGATIVE] and "airplane" in table.prompts
    manifest = json.loads((kit / "kit.json").read_text())
    assert manifest["carry"] == gpu_kit.CARRY and "d4mkitprobe" in manifest["wheel_check"]
    travel = gpu_kit.travelling(repo)
    assert travel["fits"] and travel["carried"][".gpukit"] == gpu_kit.tree_bytes(kit)


def test_size_check_refuses_an_oversized_kit(tmp_path, tiny_text, monkeypatch, capsys):
    repo = kit_repo(tmp_path, tiny_text, per_class=1)
    monkeypatch.setattr(gpu_kit, "LIMIT", 2**20)  # the kit's weights alone are larger
    code = gpu_prepare.main(["--repo", str(repo), "--shared", str(SHARED), "--per-class", "2", "--wheels-from",
                             str(make_wheel(tmp_path / "w2")), "--check-import", "d4mkitprobe", "--text-encoder",
                             str(tiny_text), "--max-tokens", "16"])
    assert code == 1
    assert "exceeds the device tool's 64 MiB" in capsys.readouterr().err


def test_dry_run_of_the_device_call():
    """The exact call a GPU session makes: its arguments fit the tool, and the full-size kit fits 64 MiB."""
    gpu_kit.check_command()
    readme = (ROOT / "README.md").read_text()
    assert gpu_kit.COMMAND in readme and '`carry` `[".gpukit"]`' in readme  # the README gives the exact call
    assert "bench/gpu_run.py --kit .gpukit --out $OUT" in gpu_kit.COMMAND and "tee $OUT/log.txt" in gpu_kit.COMMAND
    assert gpu_kit.CARRY == [".gpukit"] and gpu_kit.TIMEOUT_S <= 600
    ignored = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", ".gpukit/x"])
    assert ignored.returncode == 0, ".gpukit/ must be git-ignored (it travels only as carry)"
    shared_path("data", "cifar10", "train")
    est = gpu_kit.estimate(ROOT, SHARED, per_class=3000)
    assert est["images"] == 30000 and est["fits"], est
    most = gpu_prepare.fit_per_class(ROOT, SHARED)  # what `gpu_prepare.py` packs by default
    # the shipped generator (src/d4m/generators/, 13 MB) and the tree travel too: they leave room for about 3,400
    # images per class (3,700 before the tree grew on 2026-12-03)
    assert most >= 3000 and gpu_kit.estimate(ROOT, SHARED, most)["total"] + 2**20 <= gpu_kit.LIMIT
    if most < 5000:  # and it is the most that fit with gpu_prepare's 2 MiB margin
        assert gpu_kit.estimate(ROOT, SHARED, most + 100)["total"] + 2 * 2**20 > gpu_kit.LIMIT


def test_projection_arithmetic():
    enc = {"vae": {"encode_channels_last_64": {"images_per_s": 200.0}}, "loader_500x375": {"images_per_s": 100.0}}
    syn = {"best_batch": 32, "d4m": {"32": {"s_per_image": 0.1}}, "official": {"s_per_image": 1.0}}
    p = gpu_sd.project(enc, syn)
    one = p["ipc10_gpus1"]
    assert one["prototypes_h"] == pytest.approx(1_281_167 / 100 / 3600)
    assert one["synthesis_h"] == pytest.approx(1000 * 10 * 0.1 / 3600)
    assert one["bottleneck_prototypes"] == "loader"
    assert p["ipc50_gpus8"]["synthesis_h"] == pytest.approx(1000 * 50 * 0.1 / 8 / 3600)
    assert "missing" in gpu_sd.project({}, syn)


def test_embedding_table_trains_the_same_model_as_its_encoder(tmp_path, tiny_text, cifar_subset):
    """run_train(text=EmbeddingTable) is the same training as with the encoder, minus the encoder's files."""
    from safetensors.torch import load_file

    from d4m.errors import ConfigError
    from d4m.generator.text import load_text_encoder
    from d4m.text_encoders import EmbeddingTable
    from d4m.generator.train import TrainConfig, run_train

    encoder = load_text_encoder(str(tiny_text), 16)
    table = EmbeddingTable.of(encoder, ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                                        "ship", "truck", ""])
    table.save(tmp_path / "t.safetensors")
    table = EmbeddingTable.load(tmp_path / "t.safetensors")
    with pytest.raises(ConfigError, match="not in the embedding table"):
        table.embed(["zebra"], "cpu")
    outs = {}
    for name, text in (("encoder", None), ("table", table)):
        cfg = TrainConfig(data=f"folder:{cifar_subset}", codec=f"taef2:{shared_path('weights', 'taef2')}",
                          out=str(tmp_path / name), size=32, text_encoder=str(tiny_text), max_tokens=16,
                          preset="tiny", max_steps=2, batch_size=8, max_per_class=2, device="cpu")
        outs[name] = Path(run_train(cfg, text=text))
    assert (outs["encoder"] / "text_encoder").is_dir() and not (outs["table"] / "text_encoder").exists()
    a, b = (load_file(next((outs[k] / "unet").glob("*.safetensors"))) for k in ("encoder", "table"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_phase_past_its_deadline_keeps_what_it_measured(tmp_path):
    """A phase cut off by its deadline is recorded with its partial results; the next phase still runs."""
    import argparse
    import time

    import gpu_run

    args = argparse.Namespace(deadline_scale=0.01)  # 1.5 s for 'environment'
    ctx = gpu_run.Context(args, tmp_path, tmp_path, tmp_path, "cpu", True)

    def slow(ctx, rec):
        rec["first"] = 1.0
        ctx.record("environment", rec)
        time.sleep(30)

    gpu_run.run_phase(ctx, "environment", slow)
    gpu_run.run_phase(ctx, "distill", lambda ctx, rec: rec.update(done=True))
    saved = json.loads((tmp_path / "results.json").read_text())["phases"]
    assert saved["environment"]["status"] == "deadline" and saved["environment"]["first"] == 1.0
    assert saved["environment"]["wall_s"] < 10 and saved["distill"] == {**saved["distill"], "status": "ok", "done": True}


def test_report_renders_the_new_phases(smoke):
    """BENCHMARKS.md's section 5 renders every new phase of a results file (the smoke's, relabelled as a GPU run
    here only to exercise the renderer), and marks them not measured while no GPU run has them."""
    import gpu_report

    _, out, _, _ = smoke
    r = json.loads((out / "results.json").read_text())
    assert gpu_report.render(r) == ["(the results file is from a --smoke run on a CPU: not GPU figures)"]
    text = "\n".join(gpu_report.render(dict(r, smoke=False)))
    assert "| eager | float16, contiguous |" in text and "| reduce-overhead | CUDA graphs need" in text
    assert "GPU default by the rule: **" in text and "- labels: ImageNet-1K, 300 epochs: labels IPC 10" in text
    assert "- projection: ImageNet-1K IPC 10 today:" in text and "VAE encoder top kernels, channels_last" in text
    assert gpu_report.render_runs([])[-len(gpu_report.NEXT):] == gpu_report.NEXT
    assert gpu_report.render_runs([dict(r, smoke=False)])[-1] != gpu_report.NEXT[-1]