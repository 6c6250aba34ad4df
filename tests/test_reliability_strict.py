"""Rule 5 with ``--strict``: a class folder that holds no image is refused in one line naming it, by every command
that reads folder data (and by the Python API with ``strict=True``); without it the folder is skipped with a
warning. Each refusal happens while the data is listed, before any model loads or any file is written.
"""

from pathlib import Path

import pytest

import d4m
from d4m.cli.main import main
from d4m.errors import D4MError
from tests.test_reliability_models import one_error, small_folder


def _snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): (p.read_bytes() if p.is_file() else None)
            for p in sorted(folder.rglob("*"))}


@pytest.fixture()
def data(tmp_path):
    """cat/ and dog/ with images; axolotl/ empty and bee/ holding only a text file."""
    root = small_folder(tmp_path / "data", ("cat", "dog"), n=2)
    (root / "axolotl").mkdir()
    (root / "bee").mkdir()
    (root / "bee" / "notes.txt").write_text("no image here")
    return root


@pytest.fixture()
def teacher(tmp_path):
    """A tiny random checkpoint teacher for the classes cat and dog (never reached: the data is refused first)."""
    from d4m.models import create_model, save_checkpoint

    path = tmp_path / "teacher.safetensors"
    save_checkpoint(path, create_model("convnet-w128", 2, 16), "convnet-w128", ["cat", "dog"], 16)
    return path


def _good(tmp_path: Path) -> Path:
    """Real data without an empty class folder (made once per test, before its snapshot)."""
    root = tmp_path / "good"
    return root if root.is_dir() else small_folder(root, ("cat", "dog"), n=2)


COMMANDS = {  # name -> argv given (folder data with empty class folders, a tmp dir, a teacher file, the tiny SD)
    "distill": lambda d, t, k, sd: ["distill", "--data", f"folder:{d}", "--model", str(sd), "--generator", "none",
                                    "--size", "16", "--workers", "0", "--ipc", "1", "--out", str(t / "out")],
    "prototypes": lambda d, t, k, sd: ["prototypes", "--data", f"folder:{d}", "--model", str(sd), "--size", "16",
                                       "--workers", "0", "--ipc", "1", "--out", str(t / "out")],
    "distill imagenet:": lambda d, t, k, sd: ["distill", "--data", f"imagenet:{d.parent}", "--model", str(sd),
                                              "--generator", "none", "--size", "16", "--ipc", "1",
                                              "--out", str(t / "out")],
    "select": lambda d, t, k, sd: ["select", "--method", "random", "--data", f"folder:{d}", "--ipc", "1",
                                   "--out", str(t / "out")],
    "generator train": lambda d, t, k, sd: ["generator", "train", "--data", f"folder:{d}", "--codec",
                                            f"vae:{sd}/vae", "--size", "16", "--text-encoder", "learned", "--preset",
                                            "tiny", "--max-steps", "1", "--device", "cpu", "--out", str(t / "out")],
    "teacher train": lambda d, t, k, sd: ["teacher", "train", "--data", f"folder:{d}", "--epochs", "1",
                                          "--device", "cpu", "--out", str(t / "out.safetensors")],
    "teacher train --val": lambda d, t, k, sd: ["teacher", "train", "--data", f"folder:{_good(t)}", "--val",
                                                f"folder:{d}", "--epochs", "1", "--device", "cpu",
                                                "--out", str(t / "out.safetensors")],
    "teacher eval": lambda d, t, k, sd: ["teacher", "eval", "--teacher", f"checkpoint:{k}", "--val", f"folder:{d}",
                                         "--device", "cpu"],
    "relabel --images": lambda d, t, k, sd: ["relabel", "--images", str(d), "--teacher", f"checkpoint:{k}",
                                             "--device", "cpu", "--out", str(t / "out")],
    "evaluate --images": lambda d, t, k, sd: ["evaluate", "--images", str(d), "--teacher", f"checkpoint:{k}",
                                              "--val", f"folder:{_good(t)}", "--device", "cpu",
                                              "--out", str(t / "out")],
    "evaluate --val": lambda d, t, k, sd: ["evaluate", "--images", str(_good(t)), "--teacher", f"checkpoint:{k}",
                                           "--val", f"folder:{d}", "--device", "cpu", "--out", str(t / "out")],
}


@pytest.mark.parametrize("command", COMMANDS)
def test_strict_refuses_empty_class_folders_in_one_line_before_any_write(command, data, teacher, tmp_path, tiny_sd,
                                                                       capsys):
    work = tmp_path / "work"
    _good(work)
    d = data
    if command == "distill imagenet:":  # imagenet:ROOT reads ROOT/train/<wnid>/
        d = data.rename(tmp_path / "train")
    argv = COMMANDS[command](d, work, teacher, tiny_sd)
    before = _snapshot(tmp_path)
    assert main(argv + ["--strict"]) == 2
    err = one_error(capsys.readouterr().err)
    assert "2 class folder(s) hold no image" in err and "'axolotl'" in err and "'bee'" in err, err
    assert "--strict" in err and str(d) in err, err
    assert _snapshot(tmp_path) == before, command


def test_without_strict_the_empty_folders_are_skipped_and_named(data, tmp_path, caplog):
    with caplog.at_level("WARNING"):
        run = d4m.select("random", f"folder:{data}", out=tmp_path / "run", ipc=1)
    assert sorted(p.name for p in run.images.iterdir()) == ["000_cat", "001_dog"]
    assert "2 class folder(s) hold no image" in caplog.text and "'axolotl', 'bee'" in caplog.text
    assert "--strict" in caplog.text


def test_tiny_imagenet_strict_names_the_empty_class(tmp_path, caplog):
    from d4m.data import open_dataset

    root = tmp_path / "tiny"
    root.mkdir()
    (root / "wnids.txt").write_text("n01\nn02\n")
    (root / "words.txt").write_text("n01\tone\nn02\ttwo\n")
    small_folder(root / "train" / "n01", ("images",), n=1)
    (root / "train" / "n02" / "images").mkdir(parents=True)
    with caplog.at_level("WARNING"):
        assert len(open_dataset(f"tiny-imagenet:{root}", "train")) == 1  # not strict: the class stays, empty
    assert "'n02/images'" in caplog.text
    with pytest.raises(D4MError, match="n02/images"):
        open_dataset(f"tiny-imagenet:{root}", "train", strict=True)


API = {  # name -> call given (data, tmp dir, teacher file, tiny SD)
    "distill": lambda d, t, k, sd: d4m.distill(f"folder:{d}", out=t / "out", model=str(sd), generator="none",
                                               size=16, workers=0, ipc=1, strict=True),
    "find_prototypes": lambda d, t, k, sd: d4m.find_prototypes(f"folder:{d}", out=t / "out", model=str(sd), size=16,
                                                               workers=0, ipc=1, strict=True),
    "select": lambda d, t, k, sd: d4m.select("random", f"folder:{d}", out=t / "out", ipc=1, strict=True),
    "train_generator": lambda d, t, k, sd: d4m.train_generator(f"folder:{d}", f"vae:{sd}/vae", t / "out", size=16,
                                                               text_encoder="learned", preset="tiny", max_steps=1,
                                                               device="cpu", strict=True),
    "train_teacher": lambda d, t, k, sd: d4m.train_teacher(f"folder:{d}", t / "out.safetensors", epochs=1,
                                                           device="cpu", strict=True),
    "eval_teacher": lambda d, t, k, sd: d4m.eval_teacher(f"checkpoint:{k}", f"folder:{d}", device="cpu",
                                                         strict=True),
    "relabel": lambda d, t, k, sd: d4m.relabel(images=d, teacher=f"checkpoint:{k}", device="cpu", out=t / "out",
                                               strict=True),
    "evaluate_run": lambda d, t, k, sd: d4m.evaluate_run(images=d, teacher=f"checkpoint:{k}",
                                                         val=f"folder:{_good(t)}", device="cpu", out=t / "out",
                                                         strict=True),
}


@pytest.mark.parametrize("function", API)
def test_the_api_takes_strict_where_it_reads_data(function, data, teacher, tmp_path, tiny_sd):
    work = tmp_path / "work"
    _good(work)
    before = _snapshot(tmp_path)
    with pytest.raises(D4MError) as info:
        API[function](data, work, teacher, tiny_sd)
    message = str(info.value)
    assert "\n" not in message and "'axolotl'" in message and "--strict" in message, message
    assert _snapshot(tmp_path) == before, function
