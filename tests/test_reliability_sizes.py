"""Rule 3 for ``teacher train``, ``relabel`` and ``evaluate``: every size (epochs, batch sizes, image size, seeds,
the model, the decoded images, the label store, the sizes in a teacher checkpoint's metadata) is bounded before
work, in one line naming the flag (or file) and, for memory, the estimate against what the machine has.

The machine's memory (and free disk) is pinned, so each case refuses on every machine; tiny data (3 classes x 2
images of 16 px) and a tiny random checkpoint teacher keep each case under a second.
"""

from pathlib import Path

import pytest

from d4m.cli.main import main
from tests.test_reliability_models import one_error, small_folder

GiB = 2 ** 30


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    from d4m.models import create_model, save_checkpoint

    root = tmp_path_factory.mktemp("sizes")
    classes = ("cat", "dog", "eel")
    data = small_folder(root / "data", classes, n=2)
    teacher = root / "teacher.safetensors"
    save_checkpoint(teacher, create_model("convnet-w128", 3, 16), "convnet-w128", list(classes), 16)
    return {"data": data, "teacher": teacher, "root": root}


def _snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): (p.read_bytes() if p.is_file() else None)
            for p in sorted(folder.rglob("*"))}


def _refused(argv: list[str], setting, tmp_path, capsys) -> str:
    before, mine = _snapshot(setting["root"]), _snapshot(tmp_path)
    assert main(argv) == 2
    err = one_error(capsys.readouterr().err)
    assert _snapshot(setting["root"]) == before and _snapshot(tmp_path) == mine, "a refusal wrote something"
    return err


TEACHER_SIZES = {  # flags, the machine's memory in GiB -> what the message names
    ("--epochs 0", 16): "--epochs", ("--epochs 1000000", 16): "--epochs", ("--epochs -2", 16): "--epochs",
    ("--batch-size 0", 16): "--batch-size", ("--batch-size 1000000", 16): "--batch-size",
    ("--size 8192", 16): "--size", ("--size 4", 16): "--size", ("--size 1000000000", 16): "--size",
    ("--size 4096", 16): "--batch-size 128",  # 6 images of 4096 px through the model: about 78 GiB
    ("--size 2048", 0.25): "--arch convnet-w128",  # its classifier alone: 25 M weights, trained ~ 0.4 GiB
    ("--batch-size 4", 0.0001): "--arch convnet-w128",  # a machine with almost no memory left
    ("--limit 0", 16): "--limit", ("--holdout 0.9", 16): "--holdout", ("--arch nonet", 16): "nonet",
}


@pytest.mark.parametrize("case", list(TEACHER_SIZES))
def test_teacher_train_sizes_are_bounded_before_work(setting, tmp_path, case, capsys, monkeypatch):
    flags, memory = case
    monkeypatch.setattr("d4m.checks.machine_memory", lambda: int(memory * GiB))
    err = _refused(["teacher", "train", "--data", f"folder:{setting['data']}", "--device", "cpu", "--epochs", "1",
                    "--out", str(tmp_path / "t.safetensors"), *flags.split()], setting, tmp_path, capsys)
    assert TEACHER_SIZES[case] in err, err
    if "needs about" in err:
        assert f"{memory:,.1f} GiB of memory available" in err or "0.1 MiB of memory" in err, err


def _evaluate(setting, tmp_path, *flags) -> list[str]:
    return ["evaluate", "--images", str(setting["data"]), "--teacher", f"checkpoint:{setting['teacher']}", "--val",
            f"folder:{setting['data']}", "--recipe", "locked", "--epochs", "1", "--device", "cpu",
            "--out", str(tmp_path / "eval"), *flags]


EVALUATE_SIZES = {  # flags, the machine's memory in GiB -> what the message names
    ("--epochs 0", 16): "--epochs", ("--epochs 1000000", 16): "--epochs",
    ("--seeds 0", 16): "--seeds", ("--seeds 1000000", 16): "--seeds",
    ("--micro-batch -1", 16): "--micro-batch", ("--micro-batch 1000000", 16): "--micro-batch",
    ("--size 8192", 16): "--size", ("--size 4", 16): "--size",
    ("--size 4096", 16): "--micro-batch 0 (the recipe's batch of 6)",  # 6 images of 4096 px at once
    ("--size 2048", 0.25): "--student convnet-w128",
    ("--size 2048 --micro-batch 1", 16): "--size 2048",  # training 1 at a time fits; testing 256 at once does not
    ("--size 64", 1000 / GiB): "--run/--images",  # the decoded images the stream keeps: 6 x 3 x 16 x 16 bytes
    ("--val-limit 0", 16): "--val-limit", ("--topk -1", 16): "--topk", ("--eval-every -1", 16): "--eval-every",
}


@pytest.mark.parametrize("case", list(EVALUATE_SIZES))
def test_evaluate_sizes_are_bounded_before_work(setting, tmp_path, case, capsys, monkeypatch):
    flags, memory = case
    monkeypatch.setattr("d4m.checks.machine_memory", lambda: int(memory * GiB))
    err = _refused(_evaluate(setting, tmp_path, *flags.split()), setting, tmp_path, capsys)
    assert EVALUATE_SIZES[case] in err, err


@pytest.mark.parametrize("command", ["evaluate", "relabel"])
def test_the_label_store_is_bounded_by_the_free_disk(setting, tmp_path, command, capsys, monkeypatch):
    """images x epochs x classes x bytes, against the disk the labels go to (one epoch against memory)."""
    monkeypatch.setattr("d4m.train.bounds.free_disk", lambda path: 2**20)  # 1 MiB free
    argv = _evaluate(setting, tmp_path, "--epochs", "100000")
    if command == "relabel":
        argv = ["relabel", "--images", str(setting["data"]), "--teacher", f"checkpoint:{setting['teacher']}",
                "--recipe", "locked", "--epochs", "100000", "--device", "cpu", "--out", str(tmp_path / "eval")]
    err = _refused(argv, setting, tmp_path, capsys)
    assert err.startswith("d4m: error: --epochs 100000: the stored labels need about 3.4 MiB") and "1.0 MiB" in err
    assert "100,000 epochs x 6 bytes of fp16 logits" in err and "--topk" in err, err


def test_one_epoch_of_labels_is_bounded_by_the_memory(tmp_path, monkeypatch):
    """ImageNet-shaped: 50,000 images x 21,000 classes of float32 logits in one epoch (about 7.8 GiB)."""
    from d4m.errors import ConfigError
    from d4m.train.bounds import label_store

    monkeypatch.setattr("d4m.checks.machine_memory", lambda: 4 * GiB)
    with pytest.raises(ConfigError, match=r"--teacher \(21,000 classes\): one epoch of soft labels .* 4.0 GiB"):
        label_store(tmp_path, 50_000, 1, 21_000, "fp16", 0)
    label_store(tmp_path, 50_000, 1, 1_000, "topk", 10)  # 0.4 GiB in memory, 2.4 MB on disk: fits


def _hostile_teacher(setting, tmp_path, **meta_edit) -> Path:
    from d4m.runio.tensors import load_tensors, save_tensors

    state, meta = load_tensors(setting["teacher"])
    path = tmp_path / "hostile.safetensors"
    save_tensors(path, state, {**meta, **meta_edit})
    return path


CHECKPOINT_META = {  # a teacher checkpoint's metadata edit -> what the message names
    "image_size 10**9": ({"image_size": 10**9}, "image_size"),
    "image_size 4096": ({"image_size": 4096}, "describes"),  # weights for 16 px, metadata for 4096 px
    "100,000 classes": ({"classes": [f"c{i}" for i in range(100_000)]}, "describes"),
    "another arch": ({"arch": "resnet50"}, "describes"),
    "vit at 100 px": ({"arch": "vit_b_16", "image_size": 100}, "vit_b_16"),
}


@pytest.mark.parametrize("case", list(CHECKPOINT_META))
def test_sizes_in_a_teacher_checkpoint_are_checked_before_it_is_built(setting, tmp_path, case, capsys):
    edit, word = CHECKPOINT_META[case]
    (tmp_path / "t").mkdir()
    hostile = _hostile_teacher(setting, tmp_path / "t", **edit)
    argv = _evaluate(setting, tmp_path, "--teacher", f"checkpoint:{hostile}")
    err = _refused(argv, setting, tmp_path, capsys)
    assert word in err and str(hostile) in err, err


TRAINING_STATES = {  # a resumed training checkpoint's edit -> what the message names
    "next_epoch -1": ({"next_epoch": -1}, "next epoch -1"), "next_epoch 10**12": ({"next_epoch": 10**12}, "next epoch"),
    "next_epoch '3'": ({"next_epoch": "3"}, "'next_epoch'"), "next_epoch True": ({"next_epoch": True}, "'next_epoch'"),
    "no model": ({"model": None}, "'model'"), "info a list": ({"info": [1]}, "'info'"),
    "history a string": ({"history": "xx"}, "'history'"), "history of numbers": ({"history": [1, 2]}, "'history'"),
    "weights of another shape": ({"model": {"weight": [[0.0]]}}, "do not fit"),
    "another recipe": ({"info": {"recipe": {"epochs": 7}}}, "different recipe"),
}


@pytest.mark.parametrize("case", list(TRAINING_STATES))
def test_a_training_checkpoint_is_checked_before_it_is_resumed(tmp_path, case):
    """The per-epoch state of `teacher train` and of each `evaluate` student (d4m.train.checkpoint)."""
    import torch

    from d4m.errors import ModelError
    from d4m.train.checkpoint import load_training_state, save_training_state

    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    info = {"recipe": {"epochs": 3}, "seed": 0}
    path = tmp_path / "state.pt"
    save_training_state(path, model, opt, 1, [{"epoch": 1}], info)
    assert load_training_state(path, model, opt, info) == (1, [{"epoch": 1}])
    state = torch.load(path, weights_only=True)
    edit, word = TRAINING_STATES[case]
    if "weight" in str(edit.get("model")):
        edit = {"model": {"weight": torch.zeros(5, 5), "bias": torch.zeros(5)}}
    torch.save({**state, **edit}, path)
    with pytest.raises(ModelError) as error:
        load_training_state(path, model, opt, info)
    assert word in str(error.value) and str(path) in str(error.value) and "\n" not in str(error.value)


def test_what_runs_on_a_cuda_device_is_bounded_by_its_free_memory(monkeypatch):
    """The model and the batch going through it are compared with the GPU's free memory (mocked here), the stream
    batch with the host's: a host with little memory does not refuse a batch the GPU holds, and the reverse."""
    import torch

    from d4m.errors import ConfigError
    from d4m.train.bounds import training_batch, val_batch

    monkeypatch.setattr("d4m.checks.machine_memory", lambda: 1 * GiB)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (80 * GiB, 141 * GiB))
    training_batch("--micro-batch 0", 1024, 1024, 224, "cuda:0")  # 0.6 GiB on the host, ~37 GiB on the GPU
    val_batch("--size 224", 224, "cuda:0")
    with pytest.raises(ConfigError, match="more than the 1.0 GiB of memory available"):
        training_batch("--micro-batch 0", 1024, 1024, 224, "cpu")
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (2 * GiB, 141 * GiB))
    with pytest.raises(ConfigError, match=r"--micro-batch 0: .* more than the 2.0 GiB free on cuda:0"):
        training_batch("--micro-batch 0", 1024, 1024, 224, "cuda:0")


def test_generator_train_and_sample_batches_are_bounded_by_the_gpu_they_run_on(monkeypatch):
    """`generator train`'s batch and encode batch, and `generator sample`'s batch, go through the UNet on the device:
    on CUDA they are compared with its free memory (mocked here), not with the host's."""
    from types import SimpleNamespace

    import torch

    from d4m.errors import ConfigError
    from d4m.generator.config import TrainConfig
    from d4m.generator.sample import check_sample_sizes

    monkeypatch.setattr("d4m.checks.machine_memory", lambda: 1 * GiB)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (80 * GiB, 141 * GiB))
    cfg = TrainConfig(data="x", codec="y", out="z", size=256, batch_size=1024)  # 8 GiB at the estimate
    cfg.validate("cuda")
    with pytest.raises(ConfigError, match=r"--batch-size 1024: .* of memory available on this machine"):
        cfg.validate("cpu")
    gen = SimpleNamespace(source="m", info={"size": 256}, scheduler=SimpleNamespace(config=SimpleNamespace(
        num_train_timesteps=1000)))
    check_sample_sizes(gen, [4, 32, 32], 10, 10, 25, 2048, "cuda:0")  # ~5.5 GiB at the estimate
    with pytest.raises(ConfigError, match=r"--batch-size 2048: .* of memory available"):
        check_sample_sizes(gen, [4, 32, 32], 10, 10, 25, 2048, "cpu")
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (1 * GiB, 141 * GiB))
    with pytest.raises(ConfigError, match=r"--batch-size 1024: .* more than the 1.0 GiB free on cuda"):
        cfg.validate("cuda")
    with pytest.raises(ConfigError, match=r"--batch-size 2048: .* free on cuda:0"):
        check_sample_sizes(gen, [4, 32, 32], 10, 10, 25, 2048, "cuda:0")
