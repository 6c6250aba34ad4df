"""d4m's batched img2img loop against diffusers' stock StableDiffusionImg2ImgPipeline, given the same latents."""

import pytest
import torch

from d4m.seeding import cpu_generator
from d4m.synthesis.generator import embed_prompts, load_generator
from d4m.synthesis.img2img import denoise, img2img_timesteps


@pytest.mark.parametrize("scheduler", [None, "ddim", "ddpm"])
def test_latents_equal_stock_pipeline(tiny_sd, scheduler):
    from diffusers import AutoencoderKL, StableDiffusionImg2ImgPipeline

    gen = load_generator(str(tiny_sd), scheduler=scheduler)
    vae = AutoencoderKL.from_pretrained(tiny_sd, subfolder="vae")
    pipe = StableDiffusionImg2ImgPipeline(vae=vae, text_encoder=gen.text_encoder, tokenizer=gen.tokenizer,
                                          unet=gen.unet, scheduler=gen.scheduler, safety_checker=None,
                                          feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    init = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    prompts = ["airplane", "tench, tinca tinca"]
    kwargs = dict(strength=0.7, guidance=8.0, steps=20)
    expected = pipe(prompt=prompts, image=init, strength=0.7, guidance_scale=8.0, num_inference_steps=20,
                    negative_prompt=["cartoon, anime, painting"] * 2, output_type="latent",
                    generator=[cpu_generator(0, "x", i) for i in range(2)]).images
    cond = embed_prompts(gen, prompts, "cpu")
    uncond = embed_prompts(gen, ["cartoon, anime, painting"], "cpu").expand(2, -1, -1)
    ours = denoise(gen.unet, gen.scheduler, init, cond, uncond,
                   generators=[cpu_generator(0, "x", i) for i in range(2)], **kwargs)
    assert ours.shape == expected.shape
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)
    # and the loop really depends on its inputs: another seed gives other latents
    other = denoise(gen.unet, gen.scheduler, init, cond, uncond,
                    generators=[cpu_generator(1, "x", i) for i in range(2)], **kwargs)
    assert not torch.allclose(other, expected, atol=1e-3)


def test_official_strength_starts_near_t701(tiny_sd):
    gen = load_generator(str(tiny_sd))
    timesteps, begin = img2img_timesteps(gen.scheduler, 50, 0.7, "cpu")
    assert begin == 15  # 35 of 50 steps (PNDM's PLMS schedule repeats one timestep, so 36 UNet calls)
    assert len(timesteps) in (35, 36)
    assert int(timesteps[0]) == 701


def test_image_does_not_depend_on_its_batch(tiny_sd):
    gen = load_generator(str(tiny_sd))
    init = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    cond = embed_prompts(gen, ["cat", "dog", "ship"], "cpu")
    uncond = embed_prompts(gen, [""], "cpu").expand(3, -1, -1)
    kw = dict(strength=0.5, guidance=4.0, steps=10)
    full = denoise(gen.unet, gen.scheduler, init, cond, uncond,
                   generators=[cpu_generator(5, c) for c in range(3)], **kw)
    single = denoise(gen.unet, gen.scheduler, init[2:], cond[2:], uncond[2:], generators=[cpu_generator(5, 2)], **kw)
    torch.testing.assert_close(full[2:], single, rtol=1e-4, atol=1e-5)


def test_from_noise_equals_stock_text_to_image(tiny_sd):
    from diffusers import AutoencoderKL, StableDiffusionPipeline

    from d4m.seeding import randn

    gen = load_generator(str(tiny_sd))
    vae = AutoencoderKL.from_pretrained(tiny_sd, subfolder="vae")
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=gen.text_encoder, tokenizer=gen.tokenizer, unet=gen.unet,
                                   scheduler=gen.scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    noise = torch.stack([randn((4, 8, 8), cpu_generator(2, i)) for i in range(2)])
    expected = pipe(prompt=["cat", "ship"], latents=noise, guidance_scale=8.0, num_inference_steps=10, height=64,
                    width=64, negative_prompt=["cartoon, anime, painting"] * 2, output_type="latent").images
    cond = embed_prompts(gen, ["cat", "ship"], "cpu")
    uncond = embed_prompts(gen, ["cartoon, anime, painting"], "cpu").expand(2, -1, -1)
    ours = denoise(gen.unet, gen.scheduler, torch.full((2, 4, 8, 8), 7.0), cond, uncond, strength=0.3, steps=10,
                   guidance=8.0, generators=[cpu_generator(2, i) for i in range(2)], from_noise=True)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)
