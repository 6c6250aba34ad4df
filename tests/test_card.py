"""Fair-evaluation card: hard-label training, the random baseline, IOR / HLR from the parts, CLI errors."""

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


def test_card_command_prints_the_table(small_run, cifar_subset, teacher_spec, capsys):
    """The card itself is checked through the API (test_api.py); the command prints its table and path."""
    rc = main(["evaluate", "--run", str(small_run), "--teacher", teacher_spec, "--recipe", "locked", "--epochs", "1",
               "--val", f"folder:{cifar_subset}", "--val-limit", "20", "--seeds", "1", "--card"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "| soft" in out and f"card: {small_run / 'eval' / 'convnet-w128' / 'locked' / 'card.json'}" in out


def test_card_needs_train_data_and_checks_full_acc(tmp_path, small_run, cifar_subset, teacher_spec, capsys):
    common = ["evaluate", "--images", str(small_run / "images"), "--out", str(tmp_path / "e"), "--teacher",
              teacher_spec, "--val", f"folder:{cifar_subset}", "--card"]
    assert main(common) == 2
    assert "--train-data" in capsys.readouterr().err
    assert main(common + ["--train-data", f"folder:{cifar_subset}", "--full-data-acc", "250"]) == 2
    assert "--full-data-acc 250" in capsys.readouterr().err
