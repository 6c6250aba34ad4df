"""Rules 2 and 3: a run directory never lies, and --force deletes only what d4m made.

Runs here decode the prototypes of a tiny random VAE (--generator none) on a 2-class folder: seconds each.
"""

import json
import shutil

import pytest
import yaml

from d4m.cli.main import main
from d4m.config import DistillConfig
from d4m.runio.rundir import MARKER, RunDir
from d4m.runio.verify import run_problems, verify_run
from tests.test_reliability_models import one_error, small_folder


@pytest.fixture()
def data(tmp_path):
    return small_folder(tmp_path / "data", ("cat", "dog", "eel"), n=6)


def _distill(data, model, out, *extra):
    return main(["distill", "--data", f"folder:{data}", "--model", str(model), "--generator", "none", "--size", "16",
                 "--workers", "0", "--out", str(out), *extra])


def _pngs(run):
    return sorted(p.relative_to(run).as_posix() for p in (run / "images").rglob("*.png"))


@pytest.mark.parametrize("change", [["--ipc", "3"], ["--ipc", "6", "--seed", "1"], ["--ipc", "6", "--size", "24"],
                                    ["--ipc", "6", "--kmeans", "full"]])
def test_new_prototypes_invalidate_old_images(tmp_path, tiny_sd, data, change, capsys):
    run = tmp_path / "run"
    assert _distill(data, tiny_sd, run, "--ipc", "6") == 0
    assert len(_pngs(run)) == 18
    assert main(["prototypes", "--data", f"folder:{data}", "--model", str(tiny_sd), "--size", "16", "--workers", "0",
                 "--out", str(run), "--force", *change]) == 0
    assert not (run / "images").exists() and not (run / "manifest.jsonl").exists()
    assert main(["synthesize", "--run", str(run), "--generator", "none"]) == 0
    ipc = int(change[1])
    assert len(_pngs(run)) == 3 * ipc and len(RunDir(run).rows()) == 3 * ipc
    assert run_problems(RunDir(run)) == []


def _tamper(run, how):
    first = sorted((run / "images").rglob("*.png"))[0]
    if how == "missing image":
        first.unlink()
    elif how == "no manifest":
        (run / "manifest.jsonl").unlink()
    elif how == "foreign folder":
        (run / "images" / "holiday").mkdir()
        shutil.copy(first, run / "images" / "holiday" / "beach.png")
    elif how == "extra file":
        shutil.copy(first, first.parent / "zzz.png")
    elif how == "changed bytes":
        first.write_bytes(first.read_bytes()[:-1] + b"\x00")
    elif how == "manifest cut mid-line":
        text = (run / "manifest.jsonl").read_text()
        (run / "manifest.jsonl").write_text(text[: len(text) // 2 + 7])
    elif how == "manifest names a path outside":
        rows = (run / "manifest.jsonl").read_text().splitlines()
        row = json.loads(rows[0])
        row["file"] = "../../etc/passwd"
        (run / "manifest.jsonl").write_text("\n".join([json.dumps(row)] + rows[1:]) + "\n")
    elif how == "empty manifest":
        (run / "manifest.jsonl").write_text("")
    return first.relative_to(run).as_posix()


TAMPER = {"missing image": "missing", "no manifest": "no manifest", "foreign folder": "holiday",
          "extra file": "zzz.png", "changed bytes": "sha256", "manifest cut mid-line": "line",
          "manifest names a path outside": "manifest line 1", "empty manifest": "names no images"}


@pytest.fixture(scope="module")
def good_run(tmp_path_factory, tiny_sd):
    root = tmp_path_factory.mktemp("good")
    data = small_folder(root / "data", ("cat", "dog"), n=3)
    assert _distill(data, tiny_sd, root / "run", "--ipc", "2") == 0
    return root / "run"


@pytest.mark.parametrize("how", list(TAMPER))
def test_readers_refuse_a_run_that_does_not_match_its_manifest(tmp_path, good_run, how, capsys):
    run = tmp_path / "run"
    shutil.copytree(good_run, run)
    _tamper(run, how)
    with pytest.raises(Exception) as info:
        verify_run(run)
    assert TAMPER[how] in str(info.value) and "\n" not in str(info.value)
    for argv in (["report", "--run", str(run)], ["export", "--run", str(run), "--to", "hf", str(tmp_path / "hf")],
                 ["evaluate", "--run", str(run), "--teacher", "cifar-resnet20:/none", "--val", "cifar10:/none"],
                 ["relabel", "--run", str(run), "--teacher", "cifar-resnet20:/none"],
                 ["stm", "--run", str(run), "--teacher", "cifar-resnet20:/none", "--out", str(tmp_path / "stm")]):
        assert main(argv) == 2
        err = one_error(capsys.readouterr().err)
        assert TAMPER[how] in err, (argv[0], err)
        assert "--allow-incomplete" in err or how == "manifest cut mid-line"  # that one cannot be inspected
    if how != "manifest cut mid-line":  # inspection: the same run is accepted with a warning
        assert verify_run(run, allow_incomplete=True).path == run


def test_manifest_hash_is_of_the_bytes_written_not_a_rehash(tmp_path, tiny_sd, data, monkeypatch):
    """An image changed on disk between a killed synthesis and its resume is never blessed: the resume compares it
    with the hash d4m journalled when it wrote it, and makes it again."""
    import d4m.synthesis.stage as stage

    run = tmp_path / "run"
    assert main(["prototypes", "--data", f"folder:{data}", "--model", str(tiny_sd), "--size", "16", "--workers", "0",
                 "--ipc", "2", "--out", str(run)]) == 0
    real = stage.write_manifest
    monkeypatch.setattr(stage, "write_manifest", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    assert main(["synthesize", "--run", str(run), "--generator", "none"]) == 130
    victim = sorted((run / "images").rglob("*.png"))[0]
    victim.write_bytes(victim.read_bytes() + b"junk")
    monkeypatch.setattr(stage, "write_manifest", real)
    assert main(["synthesize", "--run", str(run), "--generator", "none"]) == 0
    assert run_problems(RunDir(run)) == [] and not victim.read_bytes().endswith(b"junk")


FOREIGN_COMMANDS = {
    "distill": lambda d, m, out, src: ["distill", "--data", f"folder:{d}", "--model", str(m), "--generator", "none",
                                       "--size", "16", "--workers", "0", "--ipc", "1", "--out", str(out)],
    "prototypes": lambda d, m, out, src: ["prototypes", "--data", f"folder:{d}", "--model", str(m), "--size", "16",
                                          "--workers", "0", "--ipc", "1", "--out", str(out)],
    "synthesize --out": lambda d, m, out, src: ["synthesize", "--run", str(src), "--out", str(out)],
    "select": lambda d, m, out, src: ["select", "--method", "random", "--data", f"folder:{d}", "--ipc", "1",
                                      "--out", str(out)],
    "export": lambda d, m, out, src: ["export", "--run", str(src), "--to", "hf", str(out)],
}
FOREIGN_CONTENT = {  # the example, and others
    "own config.yaml and images/holiday/": {"config.yaml": "camera: nikon\n", "images/holiday/beach.jpg": "photo"},
    "a lone photo": {"beach.jpg": "photo"},
    "a config.yaml like d4m's but partial": {"config.yaml": "ipc: 10\ndata: folder:x\n", "notes.txt": "mine"},
    "a hidden file": {".bashrc": "alias"},
}


@pytest.mark.parametrize("command", list(FOREIGN_COMMANDS))
@pytest.mark.parametrize("content", list(FOREIGN_CONTENT))
def test_force_never_touches_a_folder_d4m_did_not_make(tmp_path, tiny_sd, good_run, data, command, content,
                                                        capsys):
    out = tmp_path / "mine"
    for rel, text in FOREIGN_CONTENT[content].items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text(text)
    before = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    for extra in ([], ["--force"]):
        assert main(FOREIGN_COMMANDS[command](data, tiny_sd, out, good_run) + extra) == 2
        err = one_error(capsys.readouterr().err)
        assert "not made by d4m" in err and "--force" not in err, err
    after = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before


def test_force_works_in_d4m_run_dirs_and_legacy_ones(tmp_path, tiny_sd, data, capsys):
    run = tmp_path / "run"
    assert _distill(data, tiny_sd, run, "--ipc", "1") == 0
    assert (run / MARKER).is_file()
    assert _distill(data, tiny_sd, run, "--ipc", "2") == 2
    assert "--force" in one_error(capsys.readouterr().err)  # d4m's own run: --force is the way
    assert _distill(data, tiny_sd, run, "--ipc", "2", "--force") == 0 and len(_pngs(run)) == 6
    (run / MARKER).write_text("d4m run directory: `--force` may delete d4m's outputs in here\n")  # before kinds
    assert _distill(data, tiny_sd, run, "--ipc", "1", "--force") == 0 and len(_pngs(run)) == 3
    assert "kind: run" in (run / MARKER).read_text()  # the old mark gains its kind
    (run / MARKER).unlink()  # a complete d4m config.yaml is not a mark (anyone can write one): refused, with a hint
    assert _distill(data, tiny_sd, run, "--ipc", "2", "--force") == 2
    assert "kind: run" in one_error(capsys.readouterr().err) and len(_pngs(run)) == 3
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _distill(data, tiny_sd, empty, "--ipc", "1") == 0


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "key: [unclosed\n", "\xff\xfe\x00garbage"])
def test_card_reads_a_damaged_run_config_as_one_line(tmp_path, text):
    """The card's random baseline takes its training data from the run's config.yaml: a damaged one is named."""
    from d4m.errors import D4MError
    from d4m.evaluate.card import card_train_data

    (tmp_path / "config.yaml").write_bytes(text.encode("latin-1"))
    with pytest.raises(D4MError) as info:
        card_train_data(tmp_path, None)
    assert "config.yaml" in str(info.value) and "\n" not in str(info.value)
    assert card_train_data(tmp_path, "folder:/data") == "folder:/data"  # --train-data needs no config


@pytest.mark.parametrize("damage", ["truncated image", "changed image", "foreign file in images/", "missing image",
                                    "stray temporary file", "journal cut mid-line"])
def test_rerun_repairs_a_damaged_run_or_names_the_damage(tmp_path, tiny_sd, data, damage, capsys):
    """Rule 2: after damage to a finished run the same command ends byte-identical to a clean run, or refuses in
    one line naming the damage."""
    from tests.conftest import run_outputs

    clean, run = tmp_path / "clean", tmp_path / "run"
    assert _distill(data, tiny_sd, clean, "--ipc", "2") == 0
    shutil.copytree(clean, run)
    victim = sorted((run / "images").rglob("*.png"))[1]
    if damage == "truncated image":
        victim.write_bytes(victim.read_bytes()[:40])
    elif damage == "changed image":
        victim.write_bytes(sorted((run / "images").rglob("*.png"))[0].read_bytes())
    elif damage == "foreign file in images/":
        (victim.parent / "holiday.jpg").write_bytes(b"jpeg")
    elif damage == "missing image":
        victim.unlink()
    elif damage == "stray temporary file":
        (victim.parent / f".{victim.name}.x1y2.tmp").write_bytes(b"cut by a kill")
    elif damage == "journal cut mid-line":
        journal = sorted((run / "work" / "synthesis").glob("*.jsonl"))[0]
        journal.write_text(journal.read_text()[:-9])
    rc = _distill(data, tiny_sd, run, "--ipc", "2")
    if rc == 0:
        assert run_outputs(run) == run_outputs(clean) and run_problems(RunDir(run)) == [], damage
    else:
        assert rc == 2 and victim.parent.name in one_error(capsys.readouterr().err), damage


def test_changed_source_data_is_noticed_before_reuse(tmp_path, tiny_sd, data, capsys):
    """Rule 2: a rerun after the dataset changed refuses to reuse prototypes made from the old images, naming the
    class; --force redoes that class and everything made from it, ending as a clean run on the new data."""
    import numpy as np
    from PIL import Image

    from tests.conftest import run_outputs

    run = tmp_path / "run"
    assert _distill(data, tiny_sd, run, "--ipc", "2") == 0
    Image.fromarray(np.full((16, 16, 3), 200, np.uint8)).save(data / "dog" / "1.png")
    assert _distill(data, tiny_sd, run, "--ipc", "2") == 2
    assert "'dog'" in one_error(capsys.readouterr().err)
    assert _distill(data, tiny_sd, run, "--ipc", "2", "--force") == 0
    clean = tmp_path / "clean"
    assert _distill(data, tiny_sd, clean, "--ipc", "2") == 0
    assert run_outputs(run) == run_outputs(clean)
