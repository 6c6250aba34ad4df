"""Rules 5 and 6: numbers mean what they say, and nothing a user can hand us ends in a traceback.

Also: data-loader workers under the ``spawn`` start method (macOS, Windows), and class-mismatch messages that
name the side that is wrong.
"""

import json
import multiprocessing
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from d4m.cli.main import main
from d4m.config import DistillConfig, resolve
from d4m.errors import ConfigError, D4MError, ModelError
from tests.test_reliability_models import one_error, small_folder

ROOT = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------- rule 5: numbers mean what they say
BAD_NUMBERS = [  # (flags, a word the one-line error must contain)
    ({"guidance": float("nan")}, "--guidance"),
    ({"guidance": float("inf")}, "--guidance"),
    ({"strength": float("nan")}, "--strength"),
    ({"strength": float("-inf")}, "--strength"),
    ({"kmeans_tol": float("nan")}, "--kmeans-tol"),
    ({"kmeans_tol": -1.0}, "--kmeans-tol"),
    ({"ipc": 10, "max_per_class": 5}, "--allow-short"),  # the example
    ({"workers": -1}, "--workers"),
    ({"encode_batch_size": -4}, "--encode-batch-size"),
    ({"batch_size": 0}, "--batch-size"),
    ({"steps": 10**6}, "--steps"),
    ({"size": 2**20}, "--size"),
    ({"out_size": 10**7}, "--out-size"),
    ({"max_per_class": -3}, "--max-per-class"),
]


@pytest.mark.parametrize("given,word", BAD_NUMBERS)
def test_config_numbers_out_of_domain_are_one_line_errors(given, word):
    with pytest.raises(ConfigError) as info:
        resolve({"data": "folder:x", "out": "o", **given})
    assert word in str(info.value) and "\n" not in str(info.value)


def test_max_per_class_below_ipc_is_fine_with_allow_short():
    assert resolve({"data": "folder:x", "ipc": 10, "max_per_class": 5, "allow_short": True}).max_per_class == 5


@pytest.mark.parametrize("flags,word", [(["--guidance", "nan"], "--guidance"), (["--strength", "inf"], "--strength"),
                                        (["--steps", "1001"], "1000 timesteps"),
                                        (["--strength", "0.01", "--steps", "50"], "no denoising step")])
def test_model_dependent_numbers_are_checked_before_any_image(tmp_path, tiny_sd, flags, word, capsys, monkeypatch):
    import d4m.data.datasets as datasets

    data = small_folder(tmp_path / "data")
    monkeypatch.setattr(datasets, "load_rgb", lambda p: (_ for _ in ()).throw(AssertionError("an image was read")))
    rc = main(["distill", "--data", f"folder:{data}", "--ipc", "1", "--model", str(tiny_sd), "--size", "16",
               "--out-size", "16", "--workers", "0", "--out", str(tmp_path / "run"), *flags])
    assert rc == 2 and word in one_error(capsys.readouterr().err)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("argv,word", [
    (["evaluate", "--images", "{d}", "--teacher", "x:y", "--val", "cifar10:/x", "--workers", "-1"], "--workers"),
    (["evaluate", "--images", "{d}", "--teacher", "x:y", "--val", "cifar10:/x", "--seeds", "0"], "--seeds"),
    (["evaluate", "--images", "{d}", "--teacher", "x:y", "--val", "cifar10:/x", "--topk", "-2"], "--topk"),
    (["evaluate", "--images", "{d}", "--teacher", "x:y", "--val", "cifar10:/x", "--val-limit", "-5"], "--val-limit"),
    (["teacher", "train", "--data", "folder:{d}", "--out", "{d}/t.safetensors", "--limit", "-1"], "--limit"),
    (["teacher", "train", "--data", "folder:{d}", "--out", "{d}/t.safetensors", "--lr", "nan"], "--lr"),
    (["teacher", "eval", "--teacher", "x:y", "--val", "folder:{d}", "--limit", "-10"], "--limit"),
])
def test_negative_limits_and_worker_counts(tmp_path, argv, word, capsys):
    data = small_folder(tmp_path / "data")
    assert main([a.replace("{d}", str(data)) for a in argv]) == 2
    assert word in one_error(capsys.readouterr().err)


# ---------------------------------------------------------------- rule 6: no traceback for what a user hands us
def _bytes(text: str, encoding: str) -> bytes:
    return text.encode(encoding)


CONFIG_FILES = {  # name: (bytes, ok?)
    "utf-16 with BOM": (_bytes("\ufeffipc: 3\n", "utf-16-le"), True),
    "utf-8 with BOM": (b"\xef\xbb\xbfipc: 3\n", True),
    "latin-1 bytes": ("negative_prompt: caf\xe9\n".encode("latin-1"), False),
    "binary garbage": (bytes(range(256)), False),
    "a list": (b"- ipc\n- 3\n", False),
    "a scalar": (b"42\n", False),
    "nested value": (b"ipc: {a: 1}\n", False),
    "extras not a mapping": (b"extras: [1, 2]\n", False),
    "unknown key": (b"ipcc: 3\n", False),
    "tab indentation": (b"ipc:\n\t3\n", False),
    "non-string key": (b"? [a, b]\n: 1\n", False),
    "nan strength": (b"strength: .nan\n", False),
    "huge int for a float": (b"guidance: 1e400\n", False),
    "preset is a list": (b"preset: [a]\n", False),
    "empty": (b"", True),
}


@pytest.mark.parametrize("name", list(CONFIG_FILES))
def test_config_files_in_any_encoding_or_shape(tmp_path, name):
    raw, ok = CONFIG_FILES[name]
    path = tmp_path / "c.yaml"
    path.write_bytes(raw)
    if ok:
        resolve({"data": "folder:x"}, str(path))
        return
    with pytest.raises(D4MError) as info:
        resolve({"data": "folder:x"}, str(path))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("text", ['[1, 2]\n', '- a\n', "epochs: .inf\n", "lr: .nan\n", "epochs: -3\n",
                                  "batch_size: 1e999\n", "\xff\xfe\x00garbage"])
def test_recipe_files_in_any_shape(tmp_path, text):
    from d4m.train import load_recipe

    path = tmp_path / "r.yaml"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(D4MError) as info:
        load_recipe(str(path))
    assert "\n" not in str(info.value)


def _png_header(width: int, height: int) -> bytes:
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))


HOSTILE_IMAGES = {
    "decompression bomb header": _png_header(100_000, 100_000),
    "just over PIL's limit": _png_header(10_000, 9_000),
    "zero-size header": _png_header(0, 0),
    "truncated PNG": _png_header(16, 16) + b"\x00\x00",
    "empty file": b"",
    "text named .png": b"hello",
    "gif header only": b"GIF89a\x10\x00\x10\x00",
}


@pytest.mark.parametrize("name", list(HOSTILE_IMAGES))
def test_hostile_images_are_skipped_and_counted_even_first(tmp_path, name):
    """The bad file sorts first in the first class (its first image of the dataset)."""
    taef2 = Path(os.environ.get("D4M_SHARED", ROOT.parent / "shared")) / "weights" / "taef2"
    if not taef2.is_dir():
        pytest.skip("shared TAEF2 weights not available")
    data = small_folder(tmp_path / "data", ("cat", "dog"), n=3)
    (data / "cat" / "000.png").write_bytes(HOSTILE_IMAGES[name])
    rc = main(["distill", "--data", f"folder:{data}", "--ipc", "2", "--codec", f"taef2:{taef2}", "--generator",
               "none", "--size", "16", "--workers", "0", "--out", str(tmp_path / "run")])
    assert rc == 0
    rows = [json.loads(line) for line in (tmp_path / "run" / "manifest.jsonl").read_text().splitlines()]
    assert {r["class_name"]: r["source_files_skipped"] for r in rows} == {"cat": 1, "dog": 0}
    assert Image.open(tmp_path / "run" / rows[0]["file"]).size == (16, 16)  # out-size from a readable image


ODD_NAMES = ["{}", "a\nb", "emoji 🐟", "%s %d", "x" * 300, "-- rm -rf", "caf\udcc3"]


def test_odd_class_names_reach_the_prompt_safely(tmp_path, tiny_sd):
    data = tmp_path / "data"
    data.mkdir()
    for name in ODD_NAMES:
        try:
            (data / name[:200]).mkdir()
        except (OSError, UnicodeEncodeError):
            continue
        Image.new("RGB", (16, 16), (9, 9, 9)).save(data / name[:200] / "0.png")
    assert main(["distill", "--data", f"folder:{data}", "--ipc", "1", "--model", str(tiny_sd), "--size", "16",
                 "--steps", "2", "--workers", "0", "--out", str(tmp_path / "run")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "run" / "manifest.jsonl").read_text().splitlines()]
    assert len(rows) == len(list(data.iterdir())) and all("\n" not in r["prompt"] for r in rows)


@pytest.mark.parametrize("meta", ['{"arch": "convnet-w128"}', '{"arch": 5, "classes": ["a"], "image_size": 32}',
                                  '{"arch": "nope", "classes": ["a"], "image_size": 32}',
                                  '{"arch": "convnet-w128", "classes": "ab", "image_size": 32}',
                                  '{"arch": "convnet-w128", "classes": ["a"], "image_size": "big"}',
                                  '{"arch": "convnet-w128", "classes": ["a"], "image_size": 32, "mean": 1}',
                                  '[1]', '{cut'])
def test_teacher_metadata_of_any_shape(tmp_path, meta):
    from safetensors.torch import save_file

    from d4m.models import load_teacher

    path = tmp_path / "t.safetensors"
    save_file({"w": torch.zeros(1)}, str(path), metadata={"d4m": meta})
    with pytest.raises(ModelError) as info:
        load_teacher(f"checkpoint:{path}")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("meta", ['{"classes": ["a"]}', '[]', '{cut', '{"classes": 3, "label_texts": []}'])
def test_prototypes_metadata_of_any_shape(tmp_path, meta, capsys):
    from safetensors.torch import save_file

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("generator: none\ncodec: taef2:/nonexistent\n")
    (run / ".d4m-run").write_text("")
    save_file({"prototypes": torch.zeros(1, 1, 32, 2, 2)}, str(run / "prototypes.safetensors"),
              metadata={"d4m": meta})
    from d4m.prototypes.stage import load_prototypes

    with pytest.raises(D4MError) as info:
        load_prototypes(run / "prototypes.safetensors")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("content", ["", "{cut", '{"stage": "x"}\n{"sta', "[1]\n", "\xff\xfe"])
def test_run_files_cut_mid_line(tmp_path, content):
    from d4m.runio.rundir import RunDir, read_jsonl

    path = tmp_path / "log.jsonl"
    path.write_bytes(content.encode("latin-1"))
    assert isinstance(read_jsonl(path, strict=False), list)  # logs: a cut line is skipped
    (tmp_path / "manifest.jsonl").write_bytes(content.encode("latin-1"))
    try:
        RunDir(tmp_path).rows()
    except D4MError as exc:
        assert "\n" not in str(exc)


def test_ctrl_c_during_start_up_and_work_exits_130_without_traceback(tmp_path, tiny_sd):
    data = small_folder(tmp_path / "data", ("a", "b", "c", "d"), n=8)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    args = [sys.executable, "-m", "d4m", "distill", "--data", f"folder:{data}", "--ipc", "2", "--model",
            str(tiny_sd), "--size", "64", "--steps", "20", "--workers", "2", "--out", str(tmp_path / "run")]
    for delay in (0.5, 2.0, 3.0, 4.0, 8.0, 12.0):  # while importing, while loading models, while encoding or denoising
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        if proc.returncode == 0:
            continue  # finished before the signal: nothing to check
        # 130, or killed by SIGINT itself (-2): Python re-raises the signal at exit when a C extension saw the
        # KeyboardInterrupt first; either way the shell reports 130 and the program stopped
        assert proc.returncode in (130, -signal.SIGINT) and "Traceback" not in err, err[-3000:]


def test_ctrl_c_during_torch_start_up_is_held_until_it_returns():
    from d4m.cli.main import with_sigint_deferred

    steps = []

    def interrupted_work():
        os.kill(os.getpid(), signal.SIGINT)  # arrives mid-call, as Ctrl-C during `import torch` would
        time.sleep(0.05)
        steps.append("finished")
        return 7

    before = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, whatever launched pytest
    try:
        with pytest.raises(KeyboardInterrupt):
            with_sigint_deferred(interrupted_work)
        assert steps == ["finished"]
        assert with_sigint_deferred(lambda: 3) == 3
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    finally:
        signal.signal(signal.SIGINT, before)


def test_ctrl_c_ignored_by_the_launcher_stays_ignored_during_start_up():
    """Under `nohup d4m ... &` SIGINT is ignored: the deferral must neither catch nor re-raise it."""
    from d4m.cli.main import with_sigint_deferred

    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        def interrupted_work():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            return 7

        assert with_sigint_deferred(interrupted_work) == 7
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)


# ---------------------------------------------------------------- workers: picklable, one pool, spawn
def test_datasets_and_loaders_pickle(tmp_path):
    from d4m.data import open_dataset
    from d4m.prototypes.encode import SquashedImages

    ds = open_dataset(f"folder:{small_folder(tmp_path / 'data')}", "train")
    for obj in (ds, SquashedImages(ds, None, 16), SquashedImages(ds, [0, 1], 16)):
        pickle.loads(pickle.dumps(obj))


def test_encode_pool_under_spawn_matches_no_workers(tmp_path, monkeypatch):
    """The prototype stage's loader with 2 spawned workers yields what the in-process loader yields."""
    import torch.utils.data as tud

    from d4m.data import open_dataset
    from d4m.prototypes.encode import EncodePool

    data = small_folder(tmp_path / "data", ("cat", "dog"), n=5)
    (data / "dog" / "2.png").write_bytes(b"broken")
    ds = open_dataset(f"folder:{data}", "train")
    ctx = multiprocessing.get_context("spawn")
    real = tud.DataLoader.__init__

    def spawned(self, *a, **k):
        if k.get("num_workers"):
            k["multiprocessing_context"] = ctx
        real(self, *a, **k)

    reference = EncodePool(ds, 16, 3, 0)
    monkeypatch.setattr(tud.DataLoader, "__init__", spawned)
    pool = EncodePool(ds, 16, 3, 2)
    for indices in ([0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [9, 0]):  # two classes, then a mix: one pool throughout
        got, want = list(pool.batches(indices)), list(reference.batches(indices))
        assert [g[1].tolist() for g in got] == [w[1].tolist() for w in want]
        assert all(torch.equal(g[0], w[0]) and list(g[2]) == list(w[2]) for g, w in zip(got, want))
    assert any("cannot decode" in e for b in got for e in b[2]) or any("cannot decode" in e for b in
                                                                      pool.batches([7]) for e in b[2])


def test_one_worker_pool_per_prototype_stage(tmp_path, monkeypatch):
    import d4m.prototypes.encode as encode
    from d4m.data import open_dataset
    from d4m.parallel import Topology
    from d4m.prototypes.stage import run_prototypes
    from d4m.runio.rundir import RunDir
    from tests.test_reliability_models import small_folder as make

    class Tiny(encode.Codec):
        name, latent_channels, downsample = "pool", 3, 8

        def encode(self, images, generators=None):
            return torch.nn.functional.avg_pool2d(images, 8)

        def describe(self):
            return {"codec": "pool"}

    made = []
    real = encode.EncodePool.__init__

    def counting(self, *a, **k):
        made.append(1)
        real(self, *a, **k)

    monkeypatch.setattr(encode.EncodePool, "__init__", counting)
    ds = open_dataset(f"folder:{make(tmp_path / 'data', tuple('abcdef'), n=1)}", "train")
    cfg = DistillConfig(data="folder:x", ipc=1, size=16, workers=2)
    run_prototypes(cfg, RunDir(tmp_path / "run"), ds, Tiny(), Topology())
    assert len(made) == 1


# ---------------------------------------------------------------- messages name the wrong side
def test_class_mismatch_names_the_side():
    from d4m.models.classes import class_columns

    with pytest.raises(ModelError, match="the distilled images has 'dog'"):
        class_columns(["cat", "dog"], ["dog", "cat"], "--teacher t", data="the distilled images")
    with pytest.raises(ModelError, match="the val set has 'cat'.*|the distilled images has 'dog', the val set"):
        class_columns(["dog", "cat"], ["cat", "dog"], "--val v", data="the val set", model="the distilled images")
    with pytest.raises(ModelError, match="'eel' of the val set not found among the 3 classes of the teacher"):
        class_columns(["a", "b", "c"], ["a", "eel"], "--teacher t", data="the val set")
