"""`d4m teacher train` a researcher can trust (issue 25): per-epoch history in the checkpoint, percentages, and a
loud refusal (exit 2) of a teacher at chance level unless --allow-weak."""

import math

import pytest
import torch

from d4m.cli.main import main
from d4m.errors import ConfigError, WeakTeacher
from d4m.evaluate.card import full_data_accuracy
from d4m.models import create_model, load_teacher, read_checkpoint, save_checkpoint
from d4m.train.teacher import holdout_split
from d4m.train.teacher_recipe import lr_at_step, prediction_stats, teacher_recipe, weak_reason
from tests.ttm_helpers import CLASSES, make_folder, one_thread  # noqa: F401 (autouse fixture)


def _train_args(data, out, *extra):
    return ["teacher", "train", "--data", f"folder:{data}", "--arch", "convnet-w128", "--out", str(out),
            "--epochs", "3", "--batch-size", "16", "--size", "16", "--device", "cpu", *extra]


def test_learnable_folder_trains_with_the_defaults_and_keeps_its_history(tmp_path, capsys):
    data = make_folder(tmp_path / "data", per_class=16, size=16, prefix=False)
    out = tmp_path / "t.safetensors"
    assert main(_train_args(data, out)) == 0
    err = capsys.readouterr().err
    assert "epoch 1/3: train loss" in err and "val top-1" in err and "WARNING" not in err
    assert " 9/9 [" in err and "batch/s" in err  # one bar over every batch of the run (56 images / 16, 3 epochs)
    meta = read_checkpoint(out)[1]
    history = meta["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3]
    for h in history:
        assert math.isfinite(h["train_loss"]) and 0.0 <= h["train_top1"] <= 100.0 and 0.0 <= h["val_top1"] <= 100.0
    assert meta["val_top1"] == history[-1]["val_top1"] and meta["val_top1"] > 1.5 * 25.0  # percent, not fraction
    assert meta["weak"] is None and meta["recipe"]["optimizer"] == "sgd" and "val_accuracy" not in meta
    assert meta["train_images"] + 8 == 64  # 2 images per class held out for validation (--holdout 0.1)
    assert load_teacher(f"checkpoint:{out}").val_top1 == meta["val_top1"]
    assert not (tmp_path / "t.safetensors.train.pt").exists()


def test_a_teacher_that_cannot_learn_is_refused_unless_allowed(tmp_path, capsys):
    data = make_folder(tmp_path / "data", per_class=8, size=16, prefix=False)
    out = tmp_path / "t.safetensors"
    assert main(_train_args(data, out, "--lr", "1e6")) == 2  # absurd learning rate: the loss blows up
    err = capsys.readouterr().err
    assert "WARNING" in err and "did not learn" in err and "--allow-weak" in err.splitlines()[-1]
    assert not out.exists() and (tmp_path / "t.safetensors.train.pt").exists()
    assert main(_train_args(data, out, "--lr", "1e6", "--allow-weak")) == 0  # resumes from the kept state
    assert "WARNING" in capsys.readouterr().err
    meta = read_checkpoint(out)[1]
    assert meta["weak"] and meta["history"] and not (tmp_path / "t.safetensors.train.pt").exists()


def test_shuffled_labels_are_caught_by_the_api(tmp_path):
    import d4m

    data = make_folder(tmp_path / "data", per_class=12, size=16, prefix=False)
    files = sorted(data.rglob("*.png"))
    perm = torch.randperm(len(files), generator=torch.Generator().manual_seed(1)).tolist()
    shuffled = tmp_path / "shuffled"
    for i, j in enumerate(perm):  # each image into a random class folder (every class keeps its count)
        dst = shuffled / files[j].parent.name / f"{i:03d}.png"
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(files[i].read_bytes())
    with pytest.raises(WeakTeacher, match="did not learn"):
        d4m.train_teacher(f"folder:{shuffled}", tmp_path / "s.safetensors", epochs=2, batch_size=16, size=16,
                          val=f"folder:{data}", holdout=0.0, device="cpu")
    info = d4m.train_teacher(f"folder:{shuffled}", tmp_path / "s.safetensors", epochs=2, batch_size=16, size=16,
                             val=f"folder:{data}", holdout=0.0, device="cpu", allow_weak=True)
    assert info["weak"] and len(info["history"]) == 2 and info["val"].startswith(f"folder:{data}")


def test_weak_verdict_and_prediction_stats():
    assert weak_reason(14.9, 20.0, 10) and "1.5 x chance" in weak_reason(14.9, 20.0, 10)
    assert weak_reason(15.1, 20.0, 10) is None
    assert "one class" in weak_reason(40.0, 60.0, 10)
    assert weak_reason(80.0, 60.0, 2) is None  # two classes: one class may take most predictions
    stats = prediction_stats(torch.tensor([0, 0, 0, 1]), torch.tensor([0, 1, 0, 1]), 3)
    assert stats == {"top1": 75.0, "top_class_share": 75.0, "top_class": 0}


def test_recipe_defaults_and_schedule():
    assert (teacher_recipe("convnet-w128", 30).optimizer, teacher_recipe("convnet-w128", 30).lr) == ("sgd", 0.01)
    assert teacher_recipe("resnet18", 30).lr == 0.05
    vit = teacher_recipe("vit_b_16", 30)
    assert (vit.optimizer, vit.lr, vit.weight_decay, vit.warmup) == ("adamw", 1e-3, 0.05, 3.0)
    r = teacher_recipe("resnet18", 10, warmup=2)
    lrs = [lr_at_step(r, s, 5) for s in range(50)]
    assert lrs[:10] == sorted(lrs[:10]) and lrs[9] == r.lr  # linear warm-up over 2 epochs of 5 steps
    assert lrs[10:] == sorted(lrs[10:], reverse=True) and lrs[-1] < 0.01 * r.lr
    with pytest.raises(ConfigError, match="--optimizer"):
        teacher_recipe("resnet18", 10, optimizer="lamb")
    with pytest.raises(ConfigError, match="--warmup"):
        teacher_recipe("resnet18", 10, warmup=11)


def test_holdout_is_stratified_and_disjoint():
    targets = [0] * 20 + [1] * 10 + [2] * 1
    train, held = holdout_split(targets, 0.1, seed=0)
    assert sorted(train + held) == list(range(31)) and not set(train) & set(held)
    assert [sum(targets[i] == c for i in held) for c in range(3)] == [2, 1, 0]
    assert holdout_split(targets, 0.1, seed=0) == (train, held)


def test_recorded_accuracy_is_a_percentage_old_fractions_included(tmp_path):
    net = create_model("cifar-resnet20", 4, 16)
    old = tmp_path / "old.safetensors"  # what `d4m teacher train` wrote before: a fraction under val_accuracy
    save_checkpoint(old, net, "cifar-resnet20", CLASSES, 16, val_top1=None)
    from d4m.runio.tensors import load_tensors, save_tensors

    state, meta = load_tensors(old)
    meta.pop("val_top1")
    save_tensors(old, state, {**meta, "val_accuracy": 0.8123})
    assert load_teacher(f"checkpoint:{old}").val_top1 == 81.23
    assert full_data_accuracy(f"checkpoint:{old}", None)[0] == 81.23
    student = tmp_path / "student.safetensors"  # students saved by `d4m evaluate` held a percentage
    save_tensors(student, state, {**meta, "val_accuracy": 42.5})
    assert load_teacher(f"checkpoint:{student}").val_top1 == 42.5
    new = tmp_path / "new.safetensors"
    save_checkpoint(new, net, "cifar-resnet20", CLASSES, 16, val_top1=0.5)  # 0.5 % stays 0.5 %
    assert load_teacher(f"checkpoint:{new}").val_top1 == 0.5
