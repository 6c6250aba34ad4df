"""Resume after kill -9, atomic outputs, one-line errors for bad input, safe folder names."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from d4m.cli.main import main
from d4m.data.images import load_rgb
from d4m.runio.rundir import class_folder, safe_name
from tests.conftest import run_outputs

ROOT = Path(__file__).resolve().parents[1]


def _d4m(args, **kw):
    """d4m in a subprocess; every run of a comparison uses the same environment (one intra-op thread), since
    CPU float results may depend on the thread count."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "d4m", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, **kw)


def _d4m_ok(args) -> None:
    proc = _d4m(args)
    _, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-2000:]


def _kill_when(proc, ready, timeout=120.0) -> bool:
    """SIGKILL ``proc`` as soon as ``ready()`` holds; False if it finished first."""
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            return False
        if ready():
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.02)
    proc.kill()
    raise AssertionError("stage did not reach the kill point in time")


def test_kill_during_synthesis_then_resume_is_byte_identical(tmp_path, tiny_sd, cifar_subset):
    args = ["distill", "--data", f"folder:{cifar_subset}", "--ipc", "2", "--model", str(tiny_sd), "--size", "64",
            "--steps", "10", "--batch-size", "2", "--workers", "0"]
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    _d4m_ok(args + ["--out", str(clean)])
    proc = _d4m(args + ["--out", str(killed)])
    assert _kill_when(proc, lambda: len(list((killed / "images").rglob("*.png"))) >= 4)
    done = len(list((killed / "images").rglob("*.png")))
    assert 4 <= done < 20 and not (killed / "manifest.jsonl").exists()
    _d4m_ok(args + ["--out", str(killed)])
    a, b = run_outputs(killed), run_outputs(clean)
    assert sorted(a) == sorted(b)
    assert [k for k in a if a[k] != b[k]] == []


def test_kill_during_prototypes_then_resume_is_byte_identical(tmp_path, tiny_sd, cifar_subset):
    args = ["distill", "--data", f"folder:{cifar_subset}", "--ipc", "2", "--model", str(tiny_sd), "--size", "64",
            "--steps", "2", "--workers", "0", "--kmeans", "full", "--encode-batch-size", "2"]
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    _d4m_ok(args + ["--out", str(clean)])
    proc = _d4m(args + ["--out", str(killed)])
    parts = killed / "work" / "prototypes"
    assert _kill_when(proc, lambda: parts.is_dir() and len(list(parts.glob("class_*.safetensors"))) >= 2)
    assert not (killed / "prototypes.safetensors").exists()
    _d4m_ok(args + ["--out", str(killed)])
    assert run_outputs(killed) == run_outputs(clean)


def test_disk_full_keeps_earlier_outputs_and_leaves_no_partial_file(tmp_path, tiny_sd, cifar_subset, monkeypatch,
                                                                    capsys):
    import d4m.runio.atomic as atomic

    args = ["distill", "--data", f"folder:{cifar_subset}", "--ipc", "1", "--model", str(tiny_sd), "--size", "64",
            "--steps", "2", "--workers", "0", "--max-per-class", "2", "--out", str(tmp_path / "run")]
    real_fsync, calls = os.fsync, {"n": 0}

    def full_after_some(fd):
        calls["n"] += 1
        if calls["n"] > 14:  # config, 10 class parts, prototypes, some images ... then the disk is full
            raise OSError(28, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(atomic.os, "fsync", full_after_some)
    assert main(args) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("d4m: error")]
    assert len(errors) == 1 and "No space left on device" in errors[0] and ".png" in errors[0]
    run = tmp_path / "run"
    assert not [p for p in run.rglob("*") if p.name.endswith(".tmp")]
    assert (run / "prototypes.safetensors").is_file()
    written = sorted(p.read_bytes() for p in (run / "images").rglob("*.png"))
    monkeypatch.setattr(atomic.os, "fsync", real_fsync)
    assert main(args) == 0  # the rerun finishes the job and keeps what was written
    assert len(list((run / "images").rglob("*.png"))) == 10
    assert set(written) <= {p.read_bytes() for p in (run / "images").rglob("*.png")}


def _folder(root: Path, spec: dict) -> Path:
    for cls, n in spec.items():
        (root / cls).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(np.full((16, 16, 3), 40 * i % 255, np.uint8)).save(root / cls / f"{i}.png")
    return root


@pytest.mark.parametrize("case", ["missing", "empty", "no-class-folders", "file"])
def test_bad_data_path_is_named(tmp_path, case, capsys):
    path = tmp_path / "data"
    if case == "empty":
        path.mkdir()
    elif case == "no-class-folders":
        path.mkdir()
        Image.new("RGB", (8, 8)).save(path / "loose.png")
    elif case == "file":
        path.write_text("x")
    rc = main(["prototypes", "--data", f"folder:{path}", "--ipc", "1", "--codec", "vae:/nonexistent",
               "--out", str(tmp_path / "r")])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert str(path) in err and err.count("\n") == 0 and err.startswith("d4m: error: ")


def test_short_class_is_named_with_counts(tmp_path, capsys):
    data = _folder(tmp_path / "d", {"cat": 3, "dog": 1})
    rc = main(["prototypes", "--data", f"folder:{data}", "--ipc", "2", "--codec", "vae:/nonexistent",
               "--out", str(tmp_path / "r")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "'dog'" in err and "1 images" in err and "--ipc 2" in err


def test_corrupt_files_skipped_counted_or_strict(tmp_path, capsys):
    from d4m.cli.main import main as run_main

    taef2 = Path(os.environ.get("D4M_SHARED", ROOT.parent / "shared")) / "weights" / "taef2"
    if not taef2.is_dir():
        pytest.skip("shared TAEF2 weights not available")
    data = _folder(tmp_path / "d", {"cat": 3, "dog": 3})
    (data / "dog" / "9.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    good = Image.new("RGB", (16, 16), (1, 2, 3))
    good.save(data / "cat" / "8.jpg")
    (data / "cat" / "8.jpg").write_bytes((data / "cat" / "8.jpg").read_bytes()[:40])  # truncated JPEG
    base = ["distill", "--data", f"folder:{data}", "--ipc", "2", "--codec", f"taef2:{taef2}", "--generator", "none",
            "--size", "16", "--workers", "0"]
    assert run_main(base + ["--out", str(tmp_path / "r")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "r" / "manifest.jsonl").read_text().splitlines()]
    assert {r["class_name"]: r["source_files_skipped"] for r in rows} == {"cat": 1, "dog": 1}
    capsys.readouterr()
    assert run_main(base + ["--out", str(tmp_path / "s"), "--strict"]) == 2
    err = capsys.readouterr().err
    assert "8.jpg" in err or "9.png" in err


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "I;16", "LA", "CMYK", "1"])
def test_any_image_mode_becomes_rgb(tmp_path, mode):
    arr = (np.arange(64 * 64).reshape(64, 64) % 256).astype(np.uint8)
    if mode == "I;16":
        img = Image.fromarray(arr.astype(np.uint16) * 257)
        assert img.mode == "I;16"
    elif mode in ("RGBA", "CMYK"):
        img = Image.fromarray(np.stack([arr] * len(mode), -1), mode=mode)
    else:
        img = Image.fromarray(arr, mode="L").convert(mode)
    path = tmp_path / f"x.{'tif' if mode in ('I;16', 'CMYK') else 'png'}"
    img.save(path)
    out = load_rgb(path)
    assert out.mode == "RGB" and out.size == (64, 64)
    if mode in ("L", "I;16"):  # gray levels survive (16-bit scaled to 8-bit)
        assert np.array_equal(np.asarray(out)[..., 1], arr)
    if mode == "RGBA":  # transparent pixels are composited over white
        assert np.asarray(out)[0, 0].tolist() == [255, 255, 255]


@pytest.mark.parametrize("missing", ["unet", "tokenizer"])
def test_model_dir_missing_component_is_named(tmp_path, tiny_sd, cifar_subset, missing, capsys):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_sd, model)
    shutil.rmtree(model / missing)
    rc = main(["distill", "--data", f"folder:{cifar_subset}", "--ipc", "1", "--model", str(model),
               "--out", str(tmp_path / "r")])
    assert rc == 2
    assert f"missing component {missing}/" in capsys.readouterr().err


def test_not_a_diffusers_model(tmp_path, cifar_subset, capsys):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "weights.bin").write_bytes(b"0")
    assert main(["distill", "--data", f"folder:{cifar_subset}", "--ipc", "1", "--model", str(tmp_path / "m"),
                 "--out", str(tmp_path / "r")]) == 2
    assert "not a diffusers model folder" in capsys.readouterr().err


def test_unwritable_output_is_an_error(tmp_path, cifar_subset, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert main(["prototypes", "--data", f"folder:{cifar_subset}", "--ipc", "1", "--codec", "vae:/x",
                 "--out", str(blocker / "run")]) == 2
    assert str(blocker / "run") in capsys.readouterr().err
    assert blocker.read_text() == "not a directory"


@pytest.mark.parametrize("name", ["../../evil", "/etc/passwd", "..", "a\x00b\nc", "con:*?<>|", "x" * 500, "ü/é", ""])
def test_hostile_class_names_stay_inside(name):
    folder = class_folder(3, name, 10)
    assert "/" not in folder and "\\" not in folder and ".." not in folder
    assert folder.startswith("003_") and len(folder) <= 70
    assert all(ch.isprintable() for ch in folder)
    assert safe_name(name) == safe_name(name)


def test_hostile_class_names_end_to_end(tmp_path, monkeypatch):
    import d4m.data as data_pkg
    from d4m.data.datasets import LabeledImages

    taef2 = Path(os.environ.get("D4M_SHARED", ROOT.parent / "shared")) / "weights" / "taef2"
    if not taef2.is_dir():
        pytest.skip("shared TAEF2 weights not available")
    names = ["../../../escape", "/abs/path", ".."]
    img = Image.new("RGB", (16, 16), (200, 10, 10))
    ds = LabeledImages("hostile", names, names, [0, 1, 2], lambda i: img, lambda i: f"item{i}")
    monkeypatch.setattr(data_pkg, "open_dataset", lambda *a, **k: ds)
    run = tmp_path / "sandbox" / "run"
    assert main(["distill", "--data", "folder:/unused", "--ipc", "1", "--codec", f"taef2:{taef2}",
                 "--generator", "none", "--size", "16", "--out-size", "16", "--workers", "0", "--out", str(run)]) == 0
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written and all(run in p.parents for p in written)
    assert len(list((run / "images").iterdir())) == 3
