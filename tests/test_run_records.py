"""config.yaml records what a run used and nothing it did not (issue 25 point 3); resume still compares configs."""

import pytest
import yaml

from d4m.cli.main import main
from d4m.config import DENOISER_ONLY, DistillConfig, dump, recorded
from tests.test_reliability_models import small_folder


@pytest.fixture()
def data(tmp_path):
    return small_folder(tmp_path / "data", ("cat", "dog"), n=4)


def _config(run):
    return yaml.safe_load((run / "config.yaml").read_text())


def test_record_of_each_kind_of_run():
    d4m = recorded(DistillConfig(data="folder:x", out="r", codec="taef2:w"))
    assert {"model", "strength", "guidance", "steps", "negative_prompt", "scheduler"} <= set(d4m)
    assert "posterior" not in d4m  # TAEF2 has no posterior to sample
    decode = recorded(DistillConfig(data="folder:x", out="r", codec="taef2:w", generator="none"))
    assert not set(DENOISER_ONLY) & set(decode) and "model" not in decode and decode["codec"] == "taef2:w"
    own_vae = recorded(DistillConfig(data="folder:x", out="r", generator="none"))  # codec model: the model's VAE
    assert own_vae["model"] and own_vae["posterior"] == "sample" and "strength" not in own_vae
    rnd = recorded(DistillConfig(data="folder:x", out="r", generator="none", extras={"method": "random"}))
    assert not {"codec", "size", "model", "posterior", "strength", "generator", "dtype"} & set(rnd)
    assert rnd["extras"] == {"method": "random"} and rnd["ipc"] == 10
    kc = recorded(DistillConfig(data="folder:x", out="r", generator="none", codec="taef2:w", size=64,
                                extras={"method": "kcenter", "features": "codec"}))
    assert kc["codec"] == "taef2:w" and kc["size"] == 64 and "model" not in kc and "strength" not in kc
    teach = recorded(DistillConfig(data="folder:x", out="r", generator="none",
                                   extras={"method": "herding", "features": "teacher", "teacher": "t"}))
    assert "codec" not in teach and "size" not in teach
    assert yaml.safe_load(dump(DistillConfig(generator="none", codec="taef2:w"))) == \
        recorded(DistillConfig(generator="none", codec="taef2:w"))


def test_decode_run_records_no_denoiser_and_resumes(tmp_path, tiny_sd, data):
    run = tmp_path / "run"
    args = ["distill", "--data", f"folder:{data}", "--model", str(tiny_sd), "--generator", "none", "--size", "16",
            "--ipc", "2", "--workers", "0", "--out", str(run)]
    assert main(args) == 0
    cfg = _config(run)
    assert cfg["generator"] == "none" and not set(DENOISER_ONLY) & set(cfg)
    assert cfg["model"] == str(tiny_sd)  # --codec model: the model's VAE did the work
    before = (run / "manifest.jsonl").read_bytes()
    assert main(args) == 0 and (run / "manifest.jsonl").read_bytes() == before  # resumes: same settings
    assert main([*args[:-2], "--ipc", "3", "--out", str(run)]) == 2  # another configuration: refused
    assert main([*args[:-2], "--ipc", "3", "--out", str(run), "--force"]) == 0
    assert _config(run)["ipc"] == 3


def test_old_full_record_still_resumes(tmp_path, tiny_sd, data):
    """A run whose config.yaml was written before records were trimmed (every key) resumes unchanged."""
    run = tmp_path / "run"
    args = ["distill", "--data", f"folder:{data}", "--model", str(tiny_sd), "--generator", "none", "--size", "16",
            "--ipc", "2", "--workers", "0", "--out", str(run)]
    assert main(args) == 0
    full = DistillConfig(**{**DistillConfig().to_dict(), **_config(run)})
    (run / "config.yaml").write_text(yaml.safe_dump(full.to_dict(), sort_keys=False))
    before = (run / "manifest.jsonl").read_bytes()
    assert main(args) == 0 and (run / "manifest.jsonl").read_bytes() == before


def test_denoising_run_records_what_it_used(tmp_path, tiny_sd, data):
    run = tmp_path / "run"
    assert main(["distill", "--data", f"folder:{data}", "--model", str(tiny_sd), "--size", "16", "--ipc", "1",
                 "--steps", "4", "--workers", "0", "--out", str(run)]) == 0
    cfg = _config(run)
    assert cfg["generator"] == "model" and cfg["steps"] == 4 and cfg["strength"] == 0.7 and cfg["model"]


def test_random_selection_records_no_codec(tmp_path, data):
    run = tmp_path / "rnd"
    args = ["select", "--method", "random", "--data", f"folder:{data}", "--ipc", "2", "--out", str(run)]
    assert main(args) == 0
    cfg = _config(run)
    assert not {"codec", "size", "model", "posterior", "strength", "guidance", "generator"} & set(cfg)
    assert cfg["extras"]["method"] == "random" and cfg["ipc"] == 2
    assert main(args) == 0  # resumes
    assert main([*args, "--seed", "3"]) == 2  # another selection: refused without --force
