"""The GPU kit's issue-24 phases, their arithmetic and their budget, without running them (tests/test_gpu_kit.py
runs every phase in its --smoke form): the rule for a new GPU default, the ImageNet projection, per-step caps,
the generator's steady step rate, the default run's fit in the device command, the README's second call."""

import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import gpu_gen  # noqa: E402
import gpu_kit  # noqa: E402
import gpu_project  # noqa: E402
import gpu_run  # noqa: E402
import gpu_variants  # noqa: E402



def test_variant_rule_keeps_eager_unless_a_faster_variant_matches_it():
    eager = {"s_per_image": 0.22, "fwd_diff_vs_fp32": 0.01, "latent_diff_vs_fp32": 20.0, "image_diff_vs_fp32_255": 40.0}
    close = dict(eager, fwd_diff_vs_fp32=0.015, latent_diff_vs_fp32=21.0, image_diff_vs_fp32_255=45.0)
    variants = {"eager": eager, "compile": dict(close, s_per_image=0.15),
                "bf16": dict(close, s_per_image=0.10, fwd_diff_vs_fp32=0.08),  # rounds 8x coarser: not eligible
                "channels_last": dict(close, s_per_image=0.215),  # 2% faster: not worth a new default
                "max-autotune": {"error": "cap reached"}}
    r = gpu_variants.recommend(variants)
    assert r["default"] == "compile" and r["speedup_vs_eager"] == pytest.approx(0.22 / 0.15)
    assert r["verdicts"]["bf16"].startswith("one forward vs fp32") and r["verdicts"]["max-autotune"] == "not measured"
    far = dict(close, s_per_image=0.1, image_diff_vs_fp32_255=62.0)  # > 1.25 x 40 + 1 grey level
    assert gpu_variants.recommend({"eager": eager, "compile": far})["default"] == "eager"
    assert gpu_variants.recommend({"compile": close})["default"] == "eager"


def test_imagenet_projection_from_this_run_and_earlier_runs(tmp_path):
    phases = {"variants": {"variants": {"eager": {"s_per_image": 0.2}, "compile": {"s_per_image": 0.1}},
                           "recommendation": {"default": "compile"}},
              "vae": {"variants": {"eager": {"best_images_per_s": 200.0}, "compile": {"best_images_per_s": 400.0}}},
              "labels": {"projection": {"labels_ipc10_h": 2.0, "labels_ipc50_h": 10.0, "student_ipc10_h": 4.0,
                                        "student_ipc50_h": 20.0}}}
    earlier = {"smoke": False, "started": "2026-11-26", "phases": {
        "environment": {"gpu": "NVIDIA H200"}, "encoding": {"loader_500x375": {"images_per_s": 1000.0}}}}
    (tmp_path / "gpu.json").write_text(json.dumps(earlier))
    (tmp_path / "gpu-2.json").write_text(json.dumps(dict(earlier, smoke=True)))  # never read
    values, sources = gpu_project.gather(phases, gpu_project.earlier_runs(tmp_path))
    assert sources["loader_images_per_s"] == "gpu.json (2026-11-26)" and sources["labels"] == "this run"
    p = gpu_project.project_imagenet(values)
    today, best = p["today_ipc10_gpus1"], p["best_ipc10_gpus8"]
    assert today["prototypes_h"] == pytest.approx(1_281_167 / 200 / 3600)
    assert today["synthesis_h"] == pytest.approx(10_000 * 0.2 / 3600)
    assert today["total_h"] == pytest.approx(today["prototypes_h"] + today["synthesis_h"] + 2.0 + 4.0)
    assert best["prototypes_h"] == pytest.approx(1_281_167 / 400 / 8 / 3600)  # the encoder, not the loader, bounds
    assert best["labels_h"] == pytest.approx(2.0 / 8) and best["student_h"] == 4.0  # one student: no DDP
    assert gpu_project.project_imagenet({})["missing"]


def test_a_capped_step_ends_alone_and_the_phase_goes_on(tmp_path):
    """capped(): its own cap raises CapReached and the phase's timer resumes; a nearer phase deadline wins."""
    import argparse
    import time

    args = argparse.Namespace(deadline_scale=0.02)  # 'environment': 0.3 s, 'projection': 0.2 s
    ctx = gpu_run.Context(args, tmp_path, tmp_path, tmp_path, "cpu", True)

    def phase(ctx, rec):
        try:
            with gpu_kit.capped(0.05, "step"):
                time.sleep(5)
        except gpu_kit.CapReached as exc:
            rec["capped"] = str(exc)
        rec["after"] = True
        time.sleep(5)  # the phase's own deadline still fires

    gpu_run.run_phase(ctx, "environment", phase)

    def nearer(ctx, rec):
        with gpu_kit.capped(60, "long step"):
            time.sleep(5)

    gpu_run.run_phase(ctx, "projection", nearer)
    saved = json.loads((tmp_path / "results.json").read_text())["phases"]
    env = saved["environment"]
    assert env["capped"] == "step: cap of 0 s reached" and env["after"] and env["status"] == "deadline"
    assert env["wall_s"] < 3 and saved["projection"]["status"] == "deadline"
    assert "projection: deadline" in saved["projection"]["error"]


def test_steady_generator_rate_leaves_the_first_steps_out():
    # rows every 50 steps; each row's rate counts from the start: 50 steps in 20 s (compile), then 10 steps/s
    history = [{"step": 50, "samples_per_s": 50 * 128 / 20}, {"step": 100, "samples_per_s": 100 * 128 / 25}]
    assert gpu_gen.steady_rate(history, 128) == pytest.approx(10.0)
    assert gpu_gen.steady_rate(history[:1], 128) is None


def test_default_run_fits_the_device_command():
    """The default phases' deadlines plus start-up fit the command's `timeout 580`, which fits the tool's 600 s."""
    total = sum(gpu_run.DEADLINES[p] for p in gpu_run.DEFAULT_PHASES.split(","))
    assert total + 30 <= 580 < gpu_kit.TIMEOUT_S and "timeout 580 " in gpu_kit.COMMAND
    assert set(gpu_run.ALL_PHASES.split(",")) == set(gpu_run.DEADLINES)


def test_readme_second_call_flags_are_valid():
    """The README's optional second device call: same command, flags gpu_run accepts, names it knows."""
    readme = (ROOT / "README.md").read_text()
    flags = re.search(r"`(--phases variants --variants\s+[^`]+)`", readme).group(1).split()
    args = gpu_run.parser().parse_args(["--kit", "k", "--out", "o", *flags])
    assert set(args.phases.split(",")) <= set(gpu_run.DEADLINES)
    assert set(args.variants.split(",")) <= set(gpu_variants.ORDER) and "eager" in args.variants.split(",")
    total = sum(gpu_run.DEADLINES[p] for p in args.phases.split(",")) * args.deadline_scale
    assert total + 30 <= 210  # what 3.5 minutes of device time hold


def test_gpu_default_build_is_backed_by_a_gpu_run():
    """d4m's GPU default synthesis build is eager, or the build a committed GPU run's variants phase recommended."""
    from d4m.synthesis.builds import EAGER, GPU_DEFAULT, UNetBuild, choose_build

    assert choose_build(False, "cpu") == EAGER and choose_build(True, "cpu") == UNetBuild("default")
    assert choose_build(False, "cuda:0", UNetBuild("reduce-overhead", True)) == UNetBuild("reduce-overhead", True)
    assert choose_build(True, "cuda", UNetBuild("max-autotune", True)) == UNetBuild("default", True)
    if GPU_DEFAULT == EAGER:
        return
    backed = [r for _, r in gpu_project.earlier_runs()
              if r["phases"].get("variants", {}).get("recommendation", {}).get("build")
              == {"compile": GPU_DEFAULT.compile, "channels_last": GPU_DEFAULT.channels_last}]
    assert backed, f"GPU_DEFAULT {GPU_DEFAULT} is not recommended by any bench/results/gpu*.json"
