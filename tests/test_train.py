"""The student loop: stored vs online labels, resume, recipes, optimizer; the evaluate and subset commands."""

import json

import pytest
import torch

from d4m.cli.main import main
from d4m.data import open_dataset
from d4m.errors import ConfigError
from d4m.labels import LabelStore, OnlineLabels, StoredLabels, StreamImages, num_batches, relabel
from d4m.models import Normalized, create_model, load_teacher
from d4m.train import load_recipe, lr_at, make_optimizer, train_student
from tests.ttm_helpers import CLASSES, make_folder, one_thread, seal_run, tiny_teacher_file  # noqa: F401 (autouse fixture)


def _setup(tmp_path, epochs=2, batch_size=6):
    folder = make_folder(tmp_path / "imgs", per_class=3, size=20)
    images = open_dataset(f"folder:{folder}")
    teacher = load_teacher(f"checkpoint:{tiny_teacher_file(tmp_path / 't.safetensors')}", images.classes)
    recipe = load_recipe("paper", epochs=epochs)
    recipe = type(recipe)(**{**recipe.__dict__, "batch_size": batch_size})
    data = StreamImages(images, recipe.stream(len(images), 16))
    return images, teacher, recipe, data


def _student(seed=0):
    torch.manual_seed(seed)
    return Normalized(create_model("convnet-w128", len(CLASSES), 16))


def test_stored_fp32_and_online_give_the_same_student(tmp_path):
    images, teacher, recipe, data = _setup(tmp_path, epochs=1)
    store = LabelStore(tmp_path / "labels")
    relabel(data, teacher, store, 1, "fp32")
    stored = StoredLabels(store, len(CLASSES), num_batches(len(images), data.spec))
    targets = torch.tensor(images.targets)
    a, b = _student(), _student()
    train_student(a, data, targets, stored, recipe, physical_batch=4)
    train_student(b, data, targets, OnlineLabels(teacher), recipe, physical_batch=4)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.allclose(pa.float(), pb.float(), atol=1e-6), name
    assert not torch.equal(a.state_dict()["net.classifier.weight"], _student().state_dict()["net.classifier.weight"])


def test_resume_from_last_epoch_matches_uninterrupted(tmp_path):
    images, teacher, recipe, data = _setup(tmp_path, epochs=3)
    targets, labels = torch.tensor(images.targets), OnlineLabels(teacher)
    full = _student()
    m_full = train_student(full, data, targets, labels, recipe, tmp_path / "full", evaluate=lambda m: 1.0)
    part = _student()
    train_student(part, data, targets, labels, recipe, tmp_path / "part", stop_after=2, evaluate=lambda m: 1.0)
    resumed = _student(seed=123)  # a new process would start from another init: the checkpoint must win
    m_res = train_student(resumed, data, targets, labels, recipe, tmp_path / "part", evaluate=lambda m: 1.0)
    for (name, pa), pb in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(pa, pb), name
    assert [h["train_loss"] for h in m_full["history"]] == [h["train_loss"] for h in m_res["history"]]
    assert json.loads((tmp_path / "part" / "metrics.json").read_text())["complete"] is True


def test_recipes_and_overrides(tmp_path):
    paper, locked = load_recipe("paper"), load_recipe("locked")
    assert (paper.epochs, paper.batch_size, paper.optimizer, paper.lr, paper.weight_decay, paper.mix,
            paper.temperature) == (300, 1024, "adamw", 1e-3, 0.01, "cutmix", 20.0)
    assert (locked.epochs, locked.batch_size, locked.optimizer, locked.mix) == (400, 50, "adam", "none")
    assert paper.stream(100, 32).batch_size == 100  # capped at the dataset size
    assert load_recipe("paper", epochs=7).epochs == 7
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: 5\nlearning_rate: 0.1\n")
    with pytest.raises(ConfigError, match="learning_rate"):
        load_recipe(str(bad))
    bad.write_text("mix: cutout\n")
    with pytest.raises(ConfigError, match="'mix'"):
        load_recipe(str(bad))
    good = tmp_path / "mine.yaml"
    good.write_text("epochs: 5\nlr: 0.01\nmix: mixup\n")
    mine = load_recipe(str(good))
    assert (mine.name, mine.epochs, mine.lr, mine.mix, mine.batch_size) == ("mine", 5, 0.01, "mixup", 1024)


def test_optimizer_groups_and_cosine_schedule():
    model = Normalized(create_model("convnet-w128", 10, 32))
    opt = make_optimizer(model, load_recipe("paper"))
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim > 1 for p in decay["params"]) and all(p.ndim == 1 for p in no_decay["params"])
    assert len(no_decay["params"]) == 3 * 3 + 1  # conv biases, GroupNorm weight+bias per block, linear bias
    recipe = load_recipe("paper", epochs=10)
    assert lr_at(recipe, 0) == pytest.approx(1e-3) and lr_at(recipe, 5) == pytest.approx(5e-4)
    assert lr_at(recipe, 9) < 3e-5


def test_evaluate_command_writes_per_seed_metrics_and_summary(tmp_path, capsys):
    run = tmp_path / "run"
    make_folder(run / "images", per_class=2, size=20)
    seal_run(run)  # a run's images are checked against its manifest before anything trains
    val = make_folder(tmp_path / "val", per_class=2, size=16, seed=1, prefix=False)
    teacher = tiny_teacher_file(tmp_path / "t.safetensors")
    rc = main(["evaluate", "--run", str(run), "--teacher", f"checkpoint:{teacher}", "--student", "convnet-w128",
               "--val", f"folder:{val}", "--seeds", "2", "--epochs", "2", "--recipe", "locked", "--topk", "2",
               "--device", "cpu"])
    assert rc == 0
    out = run / "eval" / "convnet-w128" / "locked"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seeds"] == 2 and summary["last_epoch_top1"]["n"] == 2 and summary["image_size"] == 16
    assert summary["label_store"]["format"] == "topk" and "d4m evaluate --run" in summary["command"] and "--topk 2" in summary["command"]
    for k in range(2):
        metrics = json.loads((out / f"seed{k}" / "metrics.json").read_text())
        assert metrics["complete"] and len(metrics["history"]) == 2
        assert 0 <= metrics["last_top1"] <= 100
    assert "top-1 last epoch" in capsys.readouterr().out and (out / "summary.md").is_file()
    assert any('"stage": "relabel"' in line for line in (run / "log.jsonl").read_text().splitlines())
    # a mismatched class order is a one-line error naming the index
    bad_val = make_folder(tmp_path / "badval", classes=["cat", "dog", "bird", "frog"], per_class=1, prefix=False)
    assert main(["evaluate", "--run", str(run), "--teacher", f"checkpoint:{teacher}", "--val",
                 f"folder:{bad_val}", "--epochs", "1"]) == 2
    assert "index 0" in capsys.readouterr().err


def test_subset_restricts_and_remaps_classes(tmp_path):
    wnids = ["n01443537", "n01629819", "n01641577", "n01644900", "n01698640"]
    run = tmp_path / "in1k"
    make_folder(run / "images", classes=wnids, per_class=2, size=8)
    (run / "manifest.jsonl").write_text("".join(json.dumps({"class_index": i, "class_name": w, "file": f}) + "\n"
                                                for i, w in enumerate(wnids) for f in ("000.png", "001.png")))
    tiny = tmp_path / "wnids.txt"
    tiny.write_text("n01698640\nn01629819\n")
    assert main(["subset", "--run", str(run), "--classes", str(tiny), "--out", str(tmp_path / "sub")]) == 0
    sub = open_dataset(f"folder:{tmp_path / 'sub' / 'images'}")
    assert sub.classes == ["000_n01629819", "001_n01698640"] and len(sub) == 4
    lines = [json.loads(x) for x in (tmp_path / "sub" / "manifest.jsonl").read_text().splitlines()]
    assert {(m["source_class_index"], m["class_index"]) for m in lines} == {(1, 0), (4, 1)}
    tiny.write_text("n01443537\nn09999999\n")
    assert main(["subset", "--run", str(run), "--classes", str(tiny), "--out", str(tmp_path / "sub2")]) == 2
