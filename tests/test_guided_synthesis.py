"""Guided synthesis (issue 21): mode guidance and candidates checked by the teacher, as math and end to end."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from d4m.cli.main import main
from d4m.synthesis.guidance import (mode_guidance_steps, output_for_clean, predicted_clean, pull_toward_mode,
                                    select_candidates)
from tests.conftest import shared_path


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction", "sample"])
def test_clean_latent_algebra_round_trips(prediction):
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    a = 0.3
    xt = a ** 0.5 * x0 + (1 - a) ** 0.5 * eps
    out = {"epsilon": eps, "v_prediction": a ** 0.5 * eps - (1 - a) ** 0.5 * x0, "sample": x0}[prediction]
    assert torch.allclose(predicted_clean(out, xt, a, prediction), x0, atol=1e-5)
    assert torch.allclose(output_for_clean(x0, xt, a, prediction), out, atol=1e-5)
    mode = torch.randn(2, 4, 8, 8, generator=g)
    assert torch.allclose(pull_toward_mode(out, xt, a, mode, 0.0, prediction), out, atol=1e-5)
    pulled = pull_toward_mode(out, xt, a, mode, 0.25, prediction)
    assert torch.allclose(predicted_clean(pulled, xt, a, prediction), x0 + 0.25 * (mode - x0), atol=1e-5)


def test_guided_steps_are_the_first_fraction():
    assert [mode_guidance_steps(35, s) for s in (0.0, 0.5, 1.0, 2.0)] == [0, 18, 35, 35]


def test_candidates_by_probability_then_diversity():
    probs = torch.tensor([[0.2, 0.9, 0.5], [0.8, 0.7, 0.1]])
    feats = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], [[1.0, 0.1], [0.0, 1.0], [-1.0, 0.0]]])
    chosen, table = select_candidates(probs, feats, 0.0)
    assert chosen == [1, 0] and table[0][1] == {"prob": 0.9, "distance": 0.0, "score": 0.9}
    chosen, table = select_candidates(probs, feats, 0.5)  # image 1: candidate 1 is 1.0 away from the kept one
    assert chosen == [1, 1] and table[1][1]["distance"] == pytest.approx(1.0)
    chosen, _ = select_candidates(probs, feats, 10.0)  # far enough wins over any probability
    assert chosen == [1, 2]
    assert select_candidates(torch.ones(1, 3), torch.ones(1, 3, 2), 1.0)[0] == [0]  # ties: the lowest index
    with pytest.raises(ValueError):
        select_candidates(probs, feats[:, :2], 0.0)


def _pixels(path):
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


@pytest.fixture(scope="module")
def protos(tmp_path_factory, tiny_sd, cifar_subset):
    run = tmp_path_factory.mktemp("guided") / "decode"
    assert main(["distill", "--data", f"folder:{cifar_subset}", "--ipc", "2", "--model", str(tiny_sd), "--size", "32",
                 "--generator", "none", "--out", str(run), "--workers", "0", "--max-per-class", "4"]) == 0
    return run


def _synth(src, out, *extra):
    return main(["synthesize", "--run", str(src), "--out", str(out), "--steps", "8", "--batch-size", "7",
                 "--scheduler", "ddim", "--guidance", "2", "--generator", "model", *extra])


class _FakeUNet:
    """Any deterministic model output: mode guidance must override it where it says it does."""

    def __call__(self, x, t, encoder_hidden_states=None, return_dict=False):
        return (torch.sin(3 * x + float(t) / 100),)


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_full_mode_guidance_lands_on_the_mode(prediction):
    """Pulled all the way for every DDIM step (final alpha 1), the sample is the mode itself, from any noise."""
    from diffusers import DDIMScheduler

    from d4m.synthesis.img2img import denoise

    sched = DDIMScheduler(set_alpha_to_one=True, clip_sample=False, prediction_type=prediction)
    modes = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    gens = [torch.Generator().manual_seed(k) for k in range(2)]
    cond = torch.zeros(2, 3, 16)
    kwargs = dict(strength=1.0, steps=10, guidance=1.0, generators=gens, from_noise=True, modes=modes)
    out = denoise(_FakeUNet(), sched, modes, cond, None, mode_scale=1.0, mode_stop=1.0, **kwargs)
    assert torch.allclose(out, modes, atol=1e-4)
    gens = [torch.Generator().manual_seed(k) for k in range(2)]
    half = denoise(_FakeUNet(), sched, modes, cond, None, mode_scale=1.0, mode_stop=0.5, **{**kwargs, "generators": gens})
    assert (half - modes).abs().max() > 1e-2  # only the first half is guided


def test_mode_guidance_draws_toward_the_prototypes(tmp_path, protos):
    assert _synth(protos, tmp_path / "m", "--init", "noise", "--mode-guidance", "1", "--mode-stop", "1") == 0
    assert _synth(protos, tmp_path / "plain", "--init", "noise") == 0
    gap = {}
    for name in ("m", "plain"):
        gap[name] = np.mean([np.abs(_pixels(p) - _pixels(tmp_path / name / p.relative_to(protos))).mean()
                             for p in sorted((protos / "images").rglob("*.png"))])
    assert gap["m"] < gap["plain"]
    rows = [json.loads(x) for x in (tmp_path / "m" / "manifest.jsonl").read_text().splitlines()]
    assert {(r["mode_guidance"], r["mode_stop"]) for r in rows} == {(1.0, 1.0)}
    plain = [json.loads(x) for x in (tmp_path / "plain" / "manifest.jsonl").read_text().splitlines()]
    assert "mode_guidance" not in plain[0] and "candidates" not in plain[0]


def test_candidates_keep_the_teachers_pick_and_resume(tmp_path, protos):
    teacher = "cifar-resnet20:" + str(shared_path("weights", "cifar10-resnet", "resnet20-12fca82f.th"))
    out = tmp_path / "c"
    assert _synth(protos, tmp_path / "plain") == 0
    assert _synth(protos, out, "--candidates", "3", "--candidate-teacher", teacher, "--diversity", "0.5") == 0
    images = sorted((out / "images").rglob("*.png"))
    assert len(images) == 20 and len(list((out / "candidates").rglob("*.png"))) == 60
    scores = [json.loads(x) for x in (out / "candidates.jsonl").read_text().splitlines()]
    rows = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(scores) == 60 and sum(s["kept"] for s in scores) == 20
    for row in rows:
        kept = [s for s in scores if s["image"] == row["file"] and s["kept"]][0]
        assert (out / row["file"]).read_bytes() == (out / kept["file"]).read_bytes()
        assert row["candidate"] == kept["candidate"] and row["teacher_prob"] == kept["prob"]
        own = [s["score"] for s in scores if s["image"] == row["file"]]
        assert kept["score"] == max(own)
    # candidate 0 is the image a plain run draws (same seed)
    first = rows[0]["file"]
    assert (out / first.replace("images/", "candidates/").replace(".png", "-c0.png")).read_bytes() == \
        (tmp_path / "plain" / first).read_bytes()
    before = {p: p.read_bytes() for p in images}
    images[3].unlink()
    (out / "candidates.jsonl").unlink()
    assert _synth(protos, out, "--candidates", "3", "--candidate-teacher", teacher, "--diversity", "0.5") == 0
    assert {p: p.read_bytes() for p in images} == before
    # another diversity only changes the choice: the draws are kept, not redrawn
    drawn = {p: p.stat().st_mtime_ns for p in (out / "candidates").rglob("*.png")}
    assert _synth(protos, out, "--candidates", "3", "--candidate-teacher", teacher, "--diversity", "5", "--force") == 0
    assert {p: p.stat().st_mtime_ns for p in (out / "candidates").rglob("*.png")} == drawn
    scores = [json.loads(x) for x in (out / "candidates.jsonl").read_text().splitlines()]
    assert sum(s["kept"] for s in scores) == 20 and {s["distance"] > 0 for s in scores} == {True, False}


def test_guided_settings_are_checked(tmp_path, protos, capsys):
    for extra, word in ((["--candidates", "3"], "--candidate-teacher"), (["--mode-guidance", "1.5"], "--mode-guidance"),
                        (["--mode-stop", "0"], "--mode-stop"), (["--candidates", "0"], "--candidates"),
                        (["--diversity", "nan"], "--diversity"),
                        (["--mode-guidance", "0.5", "--scheduler", "euler"], "variance-preserving")):
        assert _synth(protos, tmp_path / "bad", *extra) == 2, extra
        assert word in capsys.readouterr().err
        assert not (tmp_path / "bad" / "images").exists()
