"""The card's random-real baseline is cached across cards (trained once), and ``--full-data-acc auto``."""

import json
from pathlib import Path

import pytest

import d4m.evaluate.card as card_module
import d4m.evaluate.run as run_module
from d4m.cli.main import main
from d4m.evaluate.val import ValSet
from d4m.models import load_teacher
from tests.ttm_helpers import make_folder, one_thread, tiny_teacher_file  # noqa: F401 (autouse fixture)


@pytest.fixture
def setting(tmp_path):
    real = make_folder(tmp_path / "real", per_class=6, size=16, prefix=False)
    runs = []
    for seed in (1, 2):  # two "distilled" sets of the same data: two cards, one baseline
        run = tmp_path / f"run{seed}"
        assert main(["select", "--method", "random", "--data", f"folder:{real}", "--ipc", "2", "--out", str(run),
                     "--seed", str(seed)]) == 0
        runs.append(run)
    return real, runs, f"checkpoint:{tiny_teacher_file(tmp_path / 't.safetensors')}"


def card_args(run, real, teacher, full="auto", seeds=1):
    return ["evaluate", "--run", str(run), "--teacher", teacher, "--recipe", "locked", "--epochs", "1",
            "--val", f"folder:{real}", "--val-limit", "16", "--seeds", str(seeds), "--labels", "online", "--card",
            "--full-data-acc", full]


def test_second_card_reuses_the_random_baseline(setting, monkeypatch):
    real, (run1, run2), teacher = setting
    trained = []
    real_eval = run_module.run_evaluation
    counting = lambda job: trained.append(job.images) or real_eval(job)  # noqa: E731
    monkeypatch.setattr(run_module, "run_evaluation", counting)  # soft and hard (d4m.api imports it when called)
    monkeypatch.setattr(card_module, "run_evaluation", counting)  # the baseline
    assert main(card_args(run1, real, teacher)) == 0
    first = json.loads((run1 / "eval" / "convnet-w128" / "locked" / "card.json").read_text())
    assert len(trained) == 3 and first["random"]["reused"] is False
    assert main(card_args(run2, real, teacher)) == 0
    second = json.loads((run2 / "eval" / "convnet-w128" / "locked" / "card.json").read_text())
    assert len(trained) == 5  # soft and hard for the second set; the baseline is not trained again
    assert Path(first["random"]["images"]) not in trained[3:]
    assert second["random"]["reused"] is True and second["random"]["images"] == first["random"]["images"]
    assert second["random"]["per_seed"] == first["random"]["per_seed"]
    key = json.loads((Path(first["random"]["images"]).parent / "key.json").read_text())
    assert key["student"] == "convnet-w128" and key["recipe"]["epochs"] == 1 and key["seeds"] == 1
    # other seeds are another baseline
    assert main(card_args(run2, real, teacher, seeds=2)) == 0
    third = json.loads((run2 / "eval" / "convnet-w128" / "locked" / "card.json").read_text())
    assert third["random"]["reused"] is False and third["random"]["images"] != first["random"]["images"]


def test_full_data_acc_auto_measures_the_teacher_on_val(setting, capsys):
    real, (run1, _), teacher = setting
    assert main(card_args(run1, real, teacher, full="250")) == 2
    assert "--full-data-acc 250" in capsys.readouterr().err
    assert main(card_args(run1, real, teacher, full="most")) == 2
    assert "'auto'" in capsys.readouterr().err
    assert main(card_args(run1, real, teacher)) == 0
    card = json.loads((run1 / "eval" / "convnet-w128" / "locked" / "card.json").read_text())
    val = ValSet(f"folder:{real}", 16, limit=16)
    expected = val.top1(load_teacher(teacher, classes=val.classes))
    assert card["full"]["mean"] == expected and card["full"]["source"].startswith("measured")
    assert card["HLR"] == round(expected - card["hard"]["mean"], 2)
