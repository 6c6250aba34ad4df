"""The generator recipe's options: per-channel latent normalisation, v-prediction, min-SNR-gamma weighting, noise
schedules (zero terminal SNR, cosine), the ``wide`` preset, a shared latent cache, and sampling with another
scheduler: each checked on its math and once end to end (train -> sample -> distill) with tiny models."""

import json

import pytest
import torch

from d4m.cli.main import main
from d4m.errors import ConfigError, ModelError
from d4m.generator.latents import channel_stats
from d4m.generator.objective import diffusion_loss, snr_weights
from d4m.generator.train import TrainConfig
from d4m.generator.unet_presets import noise_schedulers, unet_config
from d4m.synthesis.generator import LatentNorm
from tests.conftest import shared_path
from tests.test_generator import _train_args, one_thread, tiny_clip  # noqa: F401 - fixtures


def test_channel_stats_normalise_every_channel():
    torch.manual_seed(0)
    lat = torch.randn(50, 2, 3, 4, 4) * torch.tensor([0.5, 2.0, 8.0]).view(1, 1, 3, 1, 1) \
        + torch.tensor([1.0, -3.0, 0.0]).view(1, 1, 3, 1, 1)
    mean, std = channel_stats(lat)
    norm = LatentNorm.from_info({"latent_mean": mean, "latent_std": std}, 3)
    x = norm.to_model(lat.flatten(0, 1))
    assert torch.allclose(x.mean((0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(x.std((0, 2, 3)), torch.ones(3), atol=1e-2)
    assert torch.allclose(norm.from_model(x), lat.flatten(0, 1), atol=1e-4)


def test_latent_norm_of_older_and_foreign_models():
    z = torch.randn(2, 4, 3, 3)
    old = LatentNorm.from_info({"latent_scale": 2.0}, 4)  # a generator saved before per-channel statistics
    assert torch.allclose(old.to_model(z), z * 2.0) and torch.allclose(old.from_model(z), z / 2.0)
    assert torch.equal(LatentNorm.from_info({}, 4).to_model(z), z)  # Stable Diffusion: the codec scales
    with pytest.raises(ModelError, match="channels"):
        LatentNorm.from_info({"latent_mean": [0.0] * 3, "latent_std": [1.0] * 3}, 4)


class Oracle(torch.nn.Module):
    """A 'UNet' that returns a fixed tensor: the loss is zero exactly when that tensor is the training target."""

    def __init__(self, out):
        super().__init__()
        self.out = out

    def forward(self, xt, t, encoder_hidden_states=None, return_dict=False):
        return (self.out,)


def test_loss_target_follows_the_prediction_type():
    torch.manual_seed(0)
    x0, noise, t = torch.randn(6, 2, 4, 4), torch.randn(6, 2, 4, 4), torch.tensor([0, 100, 400, 700, 900, 999])
    eps, _ = noise_schedulers("epsilon")
    v, _ = noise_schedulers("v_prediction")
    velocity = v.get_velocity(x0, noise, t)
    assert diffusion_loss(Oracle(noise), eps, x0, None, noise, t) < 1e-10
    assert diffusion_loss(Oracle(velocity), v, x0, None, noise, t) < 1e-10
    assert diffusion_loss(Oracle(noise), v, x0, None, noise, t) > 0.1  # noise is not the velocity
    ac = v.alphas_cumprod[t].view(-1, 1, 1, 1)
    assert torch.allclose(velocity, ac.sqrt() * noise - (1 - ac).sqrt() * x0, atol=1e-5)


def test_min_snr_weights():
    t = torch.tensor([0, 300, 999])
    eps, _ = noise_schedulers("epsilon")
    v, _ = noise_schedulers("v_prediction")
    ac = eps.alphas_cumprod[t]
    snr = ac / (1 - ac)
    assert snr[0] > 5 > snr[2]  # the first step is nearly clean, the last nearly pure noise
    w = snr_weights(eps, t, 5.0)
    assert torch.allclose(w, torch.clamp(snr, max=5) / snr) and w[0] < 0.01 and w[2] == 1
    assert torch.allclose(snr_weights(v, t, 5.0), torch.clamp(snr, max=5) / (snr + 1))
    # weighting changes the loss: the per-sample errors are reweighted, not just rescaled
    torch.manual_seed(0)
    x0, noise, pred = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4)
    plain = diffusion_loss(Oracle(pred), eps, x0, None, noise, t)
    per = ((pred - noise) ** 2).mean((1, 2, 3))
    assert torch.isclose(diffusion_loss(Oracle(pred), eps, x0, None, noise, t, 5.0), (per * w).mean())
    assert not torch.isclose(plain, (per * w).mean())


def test_schedules():
    sd, sd_sampler = noise_schedulers("epsilon", "sd")
    zero, zero_sampler = noise_schedulers("v_prediction", "sd-zero-snr")
    cos, _ = noise_schedulers("epsilon", "cosine")
    assert sd.alphas_cumprod[-1] > 1e-3 and zero.alphas_cumprod[-1] < 1e-6  # the last step: pure noise
    assert torch.allclose(sd.alphas_cumprod[:1], zero.alphas_cumprod[:1], atol=1e-3)
    assert not torch.allclose(cos.alphas_cumprod, sd.alphas_cumprod, atol=1e-2)
    zero_sampler.set_timesteps(10)
    sd_sampler.set_timesteps(10)
    assert zero_sampler.timesteps[0] == 999 and sd_sampler.timesteps[0] == 901  # SD v1.5's leading spacing
    assert zero_sampler.config.prediction_type == "v_prediction"
    with pytest.raises(ConfigError, match="v_prediction"):
        TrainConfig(data="x", codec="y", out="z", schedule="sd-zero-snr", prediction="epsilon").validate()
    TrainConfig(data="x", codec="y", out="z", schedule="sd-zero-snr").validate()  # v-prediction: the default
    # no --schedule: zero terminal SNR with v-prediction (the default; the screen that paid), SD's with epsilon
    assert TrainConfig(data="x", codec="y", out="z").schedule == "sd-zero-snr"
    assert TrainConfig(data="x", codec="y", out="z", prediction="epsilon").schedule == "sd"
    assert TrainConfig(data="x", codec="y", out="z", schedule="cosine").schedule == "cosine"
    with pytest.raises(ConfigError, match="--schedule"):
        noise_schedulers("epsilon", "linear-ish")


def test_wide_preset_attends_at_both_levels():
    cfg = unet_config("wide", 32, 8, 384)
    assert cfg["down_block_types"] == ("CrossAttnDownBlock2D",) * 2
    assert cfg["up_block_types"] == ("CrossAttnUpBlock2D",) * 2
    assert cfg["block_out_channels"] == (128, 256) and cfg["layers_per_block"] == 2


def test_recipe_options_end_to_end(cifar_subset, tiny_clip, tmp_path):  # noqa: F811
    """v-prediction on a zero-SNR schedule with min-SNR weighting, latents from a shared cache; then DPM-Solver++
    sampling and img2img distillation read the model's scheduler and statistics."""
    cache = tmp_path / "cache"
    first = _train_args(cifar_subset, tiny_clip, tmp_path / "a", "--max-steps", "2", "--latent-cache", str(cache))
    assert main(first) == 0
    assert (cache / "latents.safetensors").is_file() and not (tmp_path / "a.work" / "latents.safetensors").exists()
    out = tmp_path / "v"
    args = _train_args(cifar_subset, tiny_clip, out, "--max-steps", "2", "--latent-cache", str(cache),
                       "--prediction", "v_prediction", "--schedule", "sd-zero-snr", "--snr-gamma", "5")
    assert main(args) == 0
    sched = json.loads((out / "scheduler" / "scheduler_config.json").read_text())
    assert sched["prediction_type"] == "v_prediction" and sched["rescale_betas_zero_snr"] is True
    info = json.loads((out / "d4m.json").read_text())
    assert info["train"]["snr_gamma"] == 5.0 and info["latent_norm"] == "channel"
    samples = tmp_path / "samples"
    assert main(["generator", "sample", "--model", str(out), "--per-class", "1", "--steps", "3",
                 "--scheduler", "dpm", "--out", str(samples), "--device", "cpu"]) == 0
    pngs = sorted(samples.rglob("*.png"))
    assert len(pngs) == 10
    run = tmp_path / "run"
    codec = shared_path("weights", "taef2")
    assert main(["distill", "--data", f"folder:{cifar_subset}", "--model", str(out), "--codec", f"taef2:{codec}",
                 "--size", "32", "--ipc", "1", "--max-per-class", "4", "--steps", "4", "--strength", "0.7",
                 "--out", str(run), "--workers", "0", "--device", "cpu"]) == 0
    assert len(list((run / "images").rglob("*.png"))) == 10
    # the old global-scale recipe stays reachable, and a resume cannot switch recipes silently
    assert main(_train_args(cifar_subset, tiny_clip, out, "--max-steps", "3", "--latent-cache", str(cache),
                            "--resume")) == 2


def test_the_old_recipe_is_still_trainable(cifar_subset, tiny_clip, tmp_path):  # noqa: F811
    out = tmp_path / "g"
    assert main(_train_args(cifar_subset, tiny_clip, out, "--max-steps", "1", "--latent-norm", "global",
                            "--prediction", "epsilon")) == 0
    info = json.loads((out / "d4m.json").read_text())
    assert info["latent_norm"] == "global" and 0.2 < info["latent_scale"] < 20 and "latent_mean" not in info
    sched = json.loads((out / "scheduler" / "scheduler_config.json").read_text())
    assert sched["prediction_type"] == "epsilon"
