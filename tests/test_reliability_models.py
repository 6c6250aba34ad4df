"""Rule 1: no code from a model folder ever runs, and no pickle is unpickled; each refusal is one line.

Every case edits a copy of the tiny random SD-shaped model and runs ``d4m distill`` on a 2-class folder; the
custom-code cases point ``auto_map`` at a module that would write a marker file, and run d4m in a subprocess with
``yes`` piped into stdin (transformers would otherwise ask "run the custom code? [y/N]" and take the answer).
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from d4m.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
EVIL = "import pathlib\npathlib.Path({marker!r}).write_text('ran')\nfrom transformers import {base} as Evil\n"


def one_error(err: str) -> str:
    """The single 'd4m: error' line of stderr (progress bars may precede it); no traceback."""
    errors = [line for line in err.splitlines() if line.startswith("d4m: error")]
    assert len(errors) == 1 and "Traceback" not in err, err[-3000:]
    return errors[0]


def small_folder(root: Path, classes=("cat", "dog"), n=2) -> Path:
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(np.full((16, 16, 3), (60 * c + 30 * i) % 256, np.uint8)).save(root / name / f"{i}.png")
    return root


def _distill_error(tmp_path: Path, model: Path, capsys) -> tuple[int, str]:
    """Distil a tiny folder with ``model`` in-process: the exit code and the one error line it must print."""
    data = small_folder(tmp_path / "data")
    rc = main(["distill", "--data", f"folder:{data}", "--ipc", "1", "--model", str(model), "--size", "16",
               "--steps", "2", "--workers", "0", "--out", str(tmp_path / "run")])
    return rc, one_error(capsys.readouterr().err)


def _edit_json(path: Path, **updates) -> None:
    data = json.loads(path.read_text())
    data.update(updates)
    path.write_text(json.dumps(data))


def _auto_map(model: Path, part: str, marker: Path) -> None:
    base = {"text_encoder": "CLIPTextModel", "tokenizer": "CLIPTokenizer"}.get(part, "CLIPTextModel")
    (model / part / "evil.py").write_text(EVIL.format(marker=str(marker), base=base))
    name = "tokenizer_config.json" if part == "tokenizer" else "config.json"
    key = "AutoTokenizer" if part == "tokenizer" else "AutoModel"
    _edit_json(model / part / name, auto_map={key: ["evil.Evil", None] if part == "tokenizer" else "evil.Evil"})


def _pickle_only(model: Path, part: str) -> None:
    folder = model / part
    for f in folder.glob("*.safetensors"):
        from safetensors.torch import load_file

        torch.save(load_file(f), folder / f.name.replace(".safetensors", ".bin"))
        f.unlink()
    if part in ("tokenizer", "scheduler"):  # no weights: a stray pickle is refused as well
        torch.save({"x": 1}, folder / "extra.pkl")


CODE_CASES = [  # (component, edit)
    ("text_encoder", "auto_map"),  # the example
    ("tokenizer", "auto_map"),  # the example
    ("unet", "auto_map"),
    ("vae", "auto_map"),
    ("scheduler", "custom_pipeline"),
]
PICKLE_CASES = ["text_encoder", "tokenizer", "unet", "vae", "scheduler"]


@pytest.fixture()
def model_copy(tmp_path, tiny_sd):
    model = tmp_path / "model"
    shutil.copytree(tiny_sd, model)
    return model


@pytest.mark.parametrize("part,edit", CODE_CASES)
def test_custom_code_is_refused_even_when_stdin_says_yes(tmp_path, model_copy, part, edit):
    marker = tmp_path / "MARKER"
    if edit == "auto_map":
        _auto_map(model_copy, part, marker)
    else:
        _edit_json(model_copy / part / "scheduler_config.json", custom_pipeline="evil")
    data = small_folder(tmp_path / "data")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "d4m", "distill", "--data", f"folder:{data}", "--ipc", "1",
                           "--model", str(model_copy), "--size", "16", "--steps", "2", "--workers", "0",
                           "--out", str(tmp_path / "run")], input="y\n" * 50, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("d4m: error")]
    assert len(errors) == 1 and "custom code" in errors[0] and part in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and not marker.exists()
    assert not (tmp_path / "run" / "images").exists()


@pytest.mark.parametrize("part", PICKLE_CASES)
def test_pickled_weights_are_refused_in_every_component(tmp_path, model_copy, part, capsys):
    _pickle_only(model_copy, part)
    rc, err = _distill_error(tmp_path, model_copy, capsys)
    assert rc == 2 and "pickles only" in err and f"{part}" in err, err


def test_pickled_vae_codec_is_refused(tmp_path, model_copy, capsys):
    _pickle_only(model_copy, "vae")
    data = small_folder(tmp_path / "data")
    rc = main(["prototypes", "--data", f"folder:{data}", "--ipc", "1", "--codec", f"vae:{model_copy / 'vae'}",
               "--size", "16", "--workers", "0", "--out", str(tmp_path / "run")])
    err = one_error(capsys.readouterr().err)
    assert rc == 2 and "pickles only" in err


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", "\xff\xfe garbage", '"a string"'])
def test_broken_json_in_a_model_folder_is_one_line(tmp_path, model_copy, content, capsys):
    (model_copy / "unet" / "config.json").write_bytes(content.encode("latin-1"))
    rc, err = _distill_error(tmp_path, model_copy, capsys)
    assert rc == 2 and "unet" in err, err


@pytest.mark.parametrize("content", ["{cut", "[]", "\x00\x01"])
def test_broken_generator_d4m_json_is_one_line(tmp_path, model_copy, content, capsys):
    (model_copy / "d4m.json").write_bytes(content.encode())
    rc, err = _distill_error(tmp_path, model_copy, capsys)
    assert rc == 2 and "d4m.json" in err, err


@pytest.mark.parametrize("cls", ["UNet2DConditionModel", "NoSuchScheduler", "os.system"])
def test_scheduler_class_must_be_a_diffusers_scheduler(tmp_path, model_copy, cls, capsys):
    _edit_json(model_copy / "scheduler" / "scheduler_config.json", _class_name=cls)
    rc, err = _distill_error(tmp_path, model_copy, capsys)
    assert rc == 2 and "scheduler" in err, err


def test_loaders_pass_safe_flags(monkeypatch, tiny_sd):
    """Every from_pretrained call made by load_generator carries trust_remote_code=False / use_safetensors=True."""
    import diffusers
    import transformers

    from d4m.synthesis.generator import load_generator

    seen = []

    def spy(cls, name):
        real = getattr(cls, name).__func__

        def wrapped(klass, *a, **k):
            seen.append((klass.__name__, k))
            return real(klass, *a, **k)
        monkeypatch.setattr(cls, name, classmethod(wrapped))

    spy(diffusers.UNet2DConditionModel, "from_pretrained")
    spy(transformers.AutoModel, "from_pretrained")
    spy(transformers.AutoTokenizer, "from_pretrained")
    load_generator(str(tiny_sd))
    kinds = {name: k for name, k in seen}
    assert kinds["UNet2DConditionModel"]["use_safetensors"] is True
    assert kinds["AutoModel"]["trust_remote_code"] is False and kinds["AutoModel"]["use_safetensors"] is True
    assert kinds["AutoTokenizer"]["trust_remote_code"] is False
