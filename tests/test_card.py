"""Fair-evaluation card: hard-label training, the random baseline, IOR / HLR from the parts, CLI errors."""

import json
from pathlib import Path

import pytest
import torch

from d4m.cli.main import main
from tests.conftest import shared_path


@pytest.fixture(scope="module")
def teacher_spec():
    return "cifar-resnet20:" + str(shared_path("weights", "cifar10-resnet", "resnet20-12fca82f.th"))


@pytest.fixture(scope="module")
def small_run(tmp_path_factory, cifar_subset):
    out = tmp_path_factory.mktemp("card") / "run"
    assert main(["select", "--method", "random", "--data", f"folder:{cifar_subset}", "--ipc", "2",
                 "--out", str(out), "--seed", "3"]) == 0
    return out


def test_hard_label_training_learns_without_a_teacher():
    from d4m.labels import StreamImages
    from d4m.models import Normalized, create_model
    from d4m.train import Recipe, train_student

    class Images:  # two classes: dark and bright squares
        classes = ["a", "b"]
        targets = [0] * 8 + [1] * 8

        def __len__(self):
            return 16

        def load(self, i):
            from PIL import Image
            return Image.new("RGB", (16, 16), (30, 30, 30) if i < 8 else (220, 220, 220))

    recipe = Recipe(name="t", epochs=6, batch_size=16, optimizer="adam", lr=0.01, weight_decay=0.0, mix="none",
                    hard_label_weight=1.0)
    data = StreamImages(Images(), recipe.stream(16, 16))
    torch.manual_seed(0)
    model = Normalized(create_model("cifar-resnet20", 2, 16))
    m = train_student(model, data, torch.tensor(Images.targets), None, recipe)
    assert m["history"][-1]["train_loss"] < 0.5 * m["history"][0]["train_loss"]
    with pytest.raises(ValueError, match="hard_label_weight"):
        train_student(model, data, torch.tensor(Images.targets), None, Recipe(epochs=1, hard_label_weight=0.0))


def test_card_end_to_end(small_run, cifar_subset, teacher_spec, capsys):
    rc = main(["evaluate", "--run", str(small_run), "--teacher", teacher_spec, "--recipe", "locked", "--epochs", "2",
               "--val", f"folder:{cifar_subset}", "--val-limit", "40", "--seeds", "1", "--eval-every", "2",
               "--card"])
    assert rc == 0
    card = json.loads((small_run / "eval" / "convnet-w128" / "locked" / "card.json").read_text())
    for key in ("soft", "random", "hard", "IOR", "HLR", "full"):
        assert key in card
    soft = json.loads((small_run / "eval" / "convnet-w128" / "locked" / "summary.json").read_text())
    hard = json.loads((small_run / "eval" / "convnet-w128" / "locked-hard" / "summary.json").read_text())
    assert card["soft"]["mean"] == soft["last_epoch_top1"]["mean"]
    assert card["hard"]["mean"] == hard["last_epoch_top1"]["mean"] and hard["labels"] == "hard"
    assert card["IOR"] == round(card["soft"]["mean"] - card["random"]["mean"], 2)
    assert card["HLR"] == round(card["full"]["mean"] - card["hard"]["mean"], 2)
    assert card["full"]["source"].startswith("teacher record") and 80 < card["full"]["mean"] <= 100
    random_manifest = (Path(card["random"]["images"]).parent / "manifest.jsonl").read_text()
    assert len(random_manifest.splitlines()) == 20  # 2 per class, same size, from the run's config data
    assert "IOR" in (small_run / "eval" / "convnet-w128" / "locked" / "card.md").read_text()
    assert "| soft" in capsys.readouterr().out


def test_card_needs_train_data_and_checks_full_acc(tmp_path, small_run, cifar_subset, teacher_spec, capsys):
    common = ["evaluate", "--images", str(small_run / "images"), "--out", str(tmp_path / "e"), "--teacher",
              teacher_spec, "--val", f"folder:{cifar_subset}", "--card"]
    assert main(common) == 2
    assert "--train-data" in capsys.readouterr().err
    assert main(common + ["--train-data", f"folder:{cifar_subset}", "--full-data-acc", "250"]) == 2
    assert "--full-data-acc 250" in capsys.readouterr().err
