"""Rule 1 for every command that writes a folder: only a folder d4m marked for that very purpose is reused.

A table of targets (d4m's own folders of each kind, foreign folders, folders that merely look like d4m's, folders
inside another d4m folder) against every writing command, with and without --force: each refusal is one line and
leaves every byte of the target as it was. Tiny data and models (a 3-class folder, the tiny random SD's VAE as the
generator's codec): a refusal happens before any model loads, so each case takes well under a second.
"""

import shutil

import pytest

from d4m.cli.main import main
from d4m.config import DistillConfig, dump
from d4m.runio.rundir import MARKER, folder_kind
from tests.test_reliability_models import one_error, small_folder

pytest.importorskip("datasets")


def _snapshot(folder):
    return {p.relative_to(folder).as_posix(): (p.read_bytes() if p.is_file() else None)
            for p in sorted(folder.rglob("*"))} if folder.exists() else None


@pytest.fixture(scope="module")
def made(tmp_path_factory, tiny_sd):
    """One d4m folder of each kind, and the data they came from."""
    root = tmp_path_factory.mktemp("kinds")
    data = small_folder(root / "data", ("cat", "dog", "eel"), n=3)
    folders = {"data": data, "sd": tiny_sd}
    assert main(["select", "--method", "random", "--data", f"folder:{data}", "--ipc", "1",
                 "--out", str(root / "run")]) == 0
    assert main(["export", "--run", str(root / "run"), "--to", "hf", str(root / "export")]) == 0
    assert main(["generator", "train", "--data", f"folder:{data}", "--codec", f"vae:{tiny_sd}/vae", "--size", "16",
                 "--text-encoder", "learned", "--preset", "tiny", "--batch-size", "3", "--max-steps", "1",
                 "--checkpoint-every", "1", "--device", "cpu", "--threads", "1", "--out", str(root / "generator")]) == 0
    assert main(["generator", "sample", "--model", str(root / "generator"), "--per-class", "1", "--steps", "1",
                 "--device", "cpu", "--out", str(root / "samples")]) == 0
    for kind in ("run", "export", "generator", "samples"):
        folders[kind] = root / kind
        assert folder_kind(root / kind) == kind
    return folders


def _foreign(root, content):
    for rel, text in content.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


TARGETS = {  # name -> (folder builder given the made folders and a tmp dir, the kind d4m made it for or None)
    "run": (lambda m, t: m["run"], "run"),
    "export": (lambda m, t: m["export"], "export"),
    "generator": (lambda m, t: m["generator"], "generator"),
    "samples": (lambda m, t: m["samples"], "samples"),
    "foreign folder": (lambda m, t: _foreign(t / "mine", {"notes.txt": "mine", "photos/a.jpg": "jpeg"}), None),
    "foreign with d4m's complete config.yaml": (
        lambda m, t: _foreign(t / "mine", {"config.yaml": dump(DistillConfig()), "images/holiday.png": "png"}), None),
    "foreign with generator-looking d4m.json": (
        lambda m, t: _foreign(t / "mine", {"d4m.json": "{}", "train.json": "{}", "unet/config.json": "{}"}), None),
    "foreign with an empty marker that is a link": (
        lambda m, t: _link_marker(t / "mine", m["run"]), None),
    "inside a run's images/": (lambda m, t: m["run"] / "images" / "sub", None),  # a run in a run: only d4m sweep's
    "inside a run's eval/": (lambda m, t: m["run"] / "eval" / "sub", None),
    "inside a generator": (lambda m, t: m["generator"] / "sub", None),
    "inside an export": (lambda m, t: m["export"] / "sub", None),
}


def _link_marker(root, run):
    _foreign(root, {"notes.txt": "mine"})
    (root / MARKER).symlink_to(run / MARKER)
    return root


COMMANDS = {  # name -> (argv given the made folders and the target, the kind it writes, whether it takes --force)
    "distill": (lambda m, out: ["distill", "--data", f"folder:{m['data']}", "--model", str(m["sd"]), "--generator",
                                "none", "--size", "16", "--workers", "0", "--ipc", "1", "--out", str(out)], "run", True),
    "select": (lambda m, out: ["select", "--method", "random", "--data", f"folder:{m['data']}", "--ipc", "1",
                               "--out", str(out)], "run", True),
    "export": (lambda m, out: ["export", "--run", str(m["run"]), "--to", "hf", str(out)], "export", True),
    "export ddranking": (lambda m, out: ["export", "--run", str(m["run"]), "--to", "ddranking", str(out),
                                         "--dataset", "CIFAR10"], "export", True),
    "generator train": (lambda m, out: ["generator", "train", "--data", f"folder:{m['data']}", "--codec",
                                        f"vae:{m['sd']}/vae", "--size", "16", "--text-encoder", "learned", "--preset",
                                        "tiny", "--max-steps", "1", "--device", "cpu", "--out", str(out)],
                        "generator", False),
    "generator sample": (lambda m, out: ["generator", "sample", "--model", str(m["generator"]), "--per-class", "1",
                                         "--steps", "1", "--device", "cpu", "--out", str(out)], "samples", False),
}


@pytest.mark.parametrize("command,target", [(c, t) for c in COMMANDS for t in TARGETS
                                            if TARGETS[t][1] != COMMANDS[c][1]])  # own kind: reuse is allowed
def test_no_command_writes_into_a_folder_not_made_for_it(made, tmp_path, command, target, capsys):
    build, kind = TARGETS[target]
    argv, writes, has_force = COMMANDS[command]
    out = build(made, tmp_path)
    parent = out.parent if not out.exists() else out
    before = _snapshot(parent)
    for extra in ([], ["--force"]) if has_force else ([],):
        assert main(argv(made, out) + extra) == 2
        err = one_error(capsys.readouterr().err)
        assert str(out) in err and "--force" not in err.split(";")[-1], err
        assert _snapshot(parent) == before, (command, target)


@pytest.mark.parametrize("first,then", [("export", "export ddranking"), ("export ddranking", "export")])
def test_an_export_folder_is_reused_only_for_its_own_format(made, tmp_path, first, then, capsys):
    """hf and DD-Ranking exports are both d4m "export" folders, but one format's folder is not the other's target:
    their files would mix, with or without --force."""
    out = tmp_path / "exported"
    assert main(COMMANDS[first][0](made, out)) == 0
    before = _snapshot(out)
    for extra in ([], ["--force"]):
        assert main(COMMANDS[then][0](made, out) + extra) == 2
        err = one_error(capsys.readouterr().err)
        assert str(out) in err and "export" in err, err
        assert _snapshot(out) == before
    assert main(COMMANDS[first][0](made, out) + ["--force"]) == 0  # its own format: replaced


@pytest.mark.parametrize("link", ["work", "labels", "images/000_cat", "log.jsonl"])
def test_a_link_inside_a_run_never_leads_a_write_or_delete_outside(made, tmp_path, link, capsys):
    run = tmp_path / "run"
    shutil.copytree(made["run"], run)
    outside = _foreign(tmp_path / "outside", {"keep.txt": "mine"})
    target = outside / "keep.txt" if link == "log.jsonl" else outside
    if (run / link).is_dir():
        shutil.rmtree(run / link)
    elif (run / link).exists():
        (run / link).unlink()
    (run / link).symlink_to(target)
    before = _snapshot(outside)
    select = COMMANDS["select"][0](made, run)
    for argv in (select + ["--ipc", "2", "--force"], select,
                 ["export", "--run", str(run), "--to", "hf", str(tmp_path / "hf")],
                 ["export", "--run", str(run), "--to", "ddranking", str(tmp_path / "dd"), "--dataset", "CIFAR10"],
                 ["report", "--run", str(run)], ["relabel", "--run", str(run), "--teacher", "cifar-resnet20:/none"]):
        assert main(argv) == 2
        assert "symbolic link" in one_error(capsys.readouterr().err)
    assert _snapshot(outside) == before


@pytest.mark.parametrize("command,link", [("export", "state.json"), ("export ddranking", "labels.pt"),
                                          ("export ddranking", "lr.pt"), ("export ddranking", "images"),
                                          ("export ddranking", "images/00000")])
def test_a_link_inside_an_export_never_leads_a_write_or_delete_outside(made, tmp_path, command, link, capsys):
    out = tmp_path / "exported"
    argv = COMMANDS[command][0](made, out)
    assert main(argv) == 0
    outside = _foreign(tmp_path / "outside", {"keep.txt": "mine", "00000.png": "mine"})
    target = outside / "keep.txt" if "." in link else outside
    if (out / link).is_dir():
        shutil.rmtree(out / link)
    else:
        (out / link).unlink(missing_ok=True)  # labels.pt: written only with --teacher, a stale one is deleted
    (out / link).symlink_to(target)
    before = _snapshot(outside)
    assert main(argv + ["--force"]) == 2
    assert "symbolic link" in one_error(capsys.readouterr().err)
    assert _snapshot(outside) == before


def test_samples_rerun_removes_its_stale_images_and_refuses_foreign_files(made, tmp_path, capsys):
    out, grid = tmp_path / "samples", tmp_path / "grid.png"
    sample = COMMANDS["generator sample"][0](made, out)
    i = sample.index("--per-class") + 1
    assert main(sample[:i] + ["2"] + sample[i + 1:] + ["--grid", str(grid)]) == 0
    assert len(list(out.rglob("*.png"))) == 6
    (out / "001_dog" / ".000.png.abc.tmp").write_bytes(b"cut by a kill")
    assert main(sample + ["--grid", str(grid)]) == 0  # fewer per class: the extra images go, the own grid is redrawn
    clean = tmp_path / "clean"
    assert main(COMMANDS["generator sample"][0](made, clean)) == 0
    assert _snapshot(out) == _snapshot(clean)
    for name, rel in (("a foreign file", "000_cat/notes.txt"), ("a foreign folder", "holiday/a.png")):
        (out / rel).parent.mkdir(exist_ok=True)
        (out / rel).write_text(name)
        assert main(sample) == 2
        assert rel.split("/")[-1 if "notes" in rel else 0] in one_error(capsys.readouterr().err)
        (out / rel).unlink()
    photo = _foreign(tmp_path / "photos", {"me.png": "not a grid"}) / "me.png"
    assert main(sample + ["--grid", str(photo)]) == 2
    assert "--grid" in one_error(capsys.readouterr().err) and photo.read_text() == "not a grid"


def test_generator_train_never_trains_over_a_finished_model_without_its_checkpoint(made, tmp_path, capsys):
    gen = tmp_path / "gen"
    shutil.copytree(made["generator"], gen)
    from d4m.generator.train import work_dir

    assert not (work_dir(gen) / "checkpoint.pt").exists()  # its checkpoint stayed beside the original (OUT.work/)
    before = _snapshot(gen)
    assert main(COMMANDS["generator train"][0](made, gen)) == 2
    assert "checkpoint" in one_error(capsys.readouterr().err) and _snapshot(gen) == before


@pytest.mark.parametrize("victim", ["a foreign file", "a run's prototypes", "a file in a generator", "a folder"])
def test_teacher_train_replaces_only_its_own_checkpoint(made, tmp_path, victim, capsys):
    if victim == "a foreign file":
        out = _foreign(tmp_path, {"weights.safetensors": "mine"}) / "weights.safetensors"
    elif victim == "a folder":
        out = _foreign(tmp_path / "dir", {"a": "b"})
    else:
        folder = tmp_path / "copy"
        shutil.copytree(made["run" if "run" in victim else "generator"], folder)
        out = folder / ("prototypes.safetensors" if "run" in victim else "new.safetensors")
    before = _snapshot(tmp_path)
    assert main(["teacher", "train", "--data", f"folder:{made['data']}", "--arch", "convnet-w128", "--epochs", "1",
                 "--out", str(out)]) == 2
    one_error(capsys.readouterr().err)
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize("target", ["export", "generator", "samples", "foreign folder", "missing"])
def test_opening_a_folder_that_is_not_a_run_is_an_error(made, tmp_path, target):
    import d4m
    from d4m.errors import D4MError
    from d4m.runio.verify import verify_run

    folder = tmp_path / "missing" if target == "missing" else TARGETS[target][0](made, tmp_path)
    for read in (lambda: d4m.Run(folder).manifest(), lambda: d4m.Run(folder).config, lambda: verify_run(folder)):
        with pytest.raises(D4MError) as info:
            read()
        assert str(folder) in str(info.value) and "\n" not in str(info.value)


def test_empty_class_folders_are_reported_not_silent(tmp_path, caplog):
    """Rule 5: a class folder without images is named in a warning (it is not a class)."""
    from d4m.data import open_dataset

    data = small_folder(tmp_path / "data", ("cat", "dog"), n=2)
    (data / "axolotl").mkdir()
    (data / "bee").mkdir()
    (data / "bee" / "notes.txt").write_text("no image here")
    with caplog.at_level("WARNING"):
        ds = open_dataset(f"folder:{data}", "train")
    assert ds.classes == ["cat", "dog"]
    assert "2 class folder(s) hold no image" in caplog.text and "axolotl" in caplog.text


def test_several_image_columns_are_named(tmp_path, caplog):
    """Rule 5: of several Image columns the one named `image` is used, and the choice is said; none so named is
    refused (tests/test_hf_data.py)."""
    import datasets
    import numpy as np
    from PIL import Image

    from d4m.data import open_dataset

    img = Image.fromarray(np.zeros((8, 8, 3), np.uint8))
    ds = datasets.Dataset.from_dict({"image": [img, img], "thumb": [img, img], "label": [0, 1]},
                                    features=datasets.Features({"image": datasets.Image(), "thumb": datasets.Image(),
                                                                "label": datasets.ClassLabel(names=["a", "b"])}))
    datasets.DatasetDict({"train": ds}).save_to_disk(str(tmp_path / "hf"))
    with caplog.at_level("WARNING"):
        assert len(open_dataset(f"hf:{tmp_path / 'hf'}", "train")) == 2
    assert "several candidate columns" in caplog.text and "'image'" in caplog.text


@pytest.mark.parametrize("command", ["export", "export ddranking"])
def test_rerunning_an_interrupted_export_repairs_it_and_a_finished_one_needs_force(made, tmp_path, command, capsys):
    """Rule 2 for export: a kill leaves no done-mark (and, for DD-Ranking's tensors, no half-written file: each is
    written under a temporary name); the same command then redoes the export without --force, byte for byte."""
    clean, out = tmp_path / "clean", tmp_path / "exported"
    assert main(COMMANDS[command][0](made, clean)) == 0
    assert main(COMMANDS[command][0](made, out)) == 0
    assert main(COMMANDS[command][0](made, out)) == 2  # finished: replaced only with --force
    assert "--force" in one_error(capsys.readouterr().err)
    (out / ".d4m-export-done").unlink()  # as a kill before the last write leaves it
    victim = next(p for p in sorted(out.rglob("*")) if p.is_file() and not p.name.startswith("."))
    victim.write_bytes(victim.read_bytes()[:10])  # a damaged file of the interrupted export
    assert main(COMMANDS[command][0](made, out)) == 0
    if command == "export ddranking":  # hf's arrow files carry a fingerprint of the write; DD-Ranking's are fixed
        assert _snapshot(out) == _snapshot(clean)
    else:
        assert _snapshot(out).keys() == _snapshot(clean).keys()
