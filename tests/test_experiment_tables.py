"""The issue-21 experiment drivers' bookkeeping (experiments/converged.py, table4_converged.py, teacher_agreement.py):
what they read back from evaluation folders is what the students recorded."""

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"


@pytest.fixture()
def experiments():
    sys.path.insert(0, str(EXPERIMENTS))
    try:
        import converged
        import table4_converged
        import teacher_agreement

        yield SimpleNamespace(converged=converged, table4=table4_converged, agreement=teacher_agreement)
    finally:
        sys.path.remove(str(EXPERIMENTS))


def _eval_folder(root: Path, recipe: str, top1: float, epoch_s: list[list[float]]) -> Path:
    folder = root / "convnet-w128" / recipe
    for seed, times in enumerate(epoch_s):
        (folder / f"seed{seed}").mkdir(parents=True)
        history = [{"epoch": i + 1, "epoch_s": t} for i, t in enumerate(times)]
        (folder / f"seed{seed}" / "metrics.json").write_text(json.dumps({"history": history}))
    (folder / "summary.json").write_text(json.dumps({"last_epoch_top1": {"mean": top1, "std": 0.0, "n": 2}}))
    return folder


def test_cost_is_read_from_each_seeds_metrics_not_the_summary(experiments, tmp_path):
    _eval_folder(tmp_path / "cell", "locked", 38.3, [[1.0, 2.0, 3.0], [2.0, 2.0, 4.0]])
    summary, folder = experiments.converged.result(tmp_path / "cell")
    assert summary["last_epoch_top1"]["mean"] == 38.3
    assert experiments.converged.train_seconds(folder) == pytest.approx(7.0)  # (6 + 8) / 2 seeds
    assert experiments.converged.result(tmp_path / "missing") is None


def test_the_pick_is_the_shortest_schedule_within_tolerance_of_the_longest(experiments):
    pick = experiments.converged.pick
    assert pick({150: 29.8, 300: 34.6, 600: 37.9, 1000: 38.3}, 0.5) == 600
    assert pick({150: 29.8, 300: 34.6, 600: 37.0, 1000: 38.3}, 0.5) == 1000
    assert pick({150: 33.7, 300: 33.1, 1000: 32.5}, 0.5) == 150  # a falling curve picks the shortest


def test_table4_reads_soft_and_hard_students_and_links_the_random_row(experiments, tmp_path):
    t4 = experiments.table4
    run = tmp_path / "converged" / "random-ipc10"
    (run / "images").mkdir(parents=True)
    (run / "manifest.jsonl").write_text("")
    cell = tmp_path / "converged" / "eval" / "locked-stored-600"
    _eval_folder(cell, "locked", 37.9, [[1.0]])
    t4.link_random(tmp_path / "t4" / "random", run, cell)
    assert t4.summary(tmp_path / "t4" / "random", "locked", "stored")["last_epoch_top1"]["mean"] == 37.9
    assert t4.summary(tmp_path / "t4" / "random", "locked", "hard") is None
    assert (tmp_path / "t4" / "random" / "manifest.jsonl").is_symlink()
    t4.link_random(tmp_path / "t4" / "random", run, cell)  # a rerun leaves the links as they are
    assert t4.synthesis_args("decode", "T") is None and t4.synthesis_args("random", "T") is None
    assert t4.synthesis_args("cand4", "T")[-4:] == ["--candidate-teacher", "T", "--diversity", "0"]


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(3, 2)

    def forward(self, x):
        return self.head(self.pool(x).flatten(1))


def test_diversity_is_zero_for_repeated_images_and_grows_with_spread(experiments):
    teacher = SimpleNamespace(model=_Net(), input_size=4)
    targets = torch.tensor([0, 0, 1, 1])
    same = torch.ones(4, 3, 4, 4) * torch.tensor([0.2, 0.5, 0.9]).view(1, 3, 1, 1)
    assert experiments.agreement.diversity(teacher, same, targets) == pytest.approx(0.0, abs=1e-6)
    spread = torch.zeros(4, 3, 4, 4)
    spread[0, 0], spread[1, 1], spread[2, 0], spread[3, 2] = 1.0, 1.0, 1.0, 1.0  # orthogonal pairs: distance 1
    assert experiments.agreement.diversity(teacher, spread, targets) == pytest.approx(1.0)


def test_the_converged_recipe_is_locked_at_the_picked_schedule():
    from dataclasses import asdict

    from d4m.train import load_recipe

    locked, converged = asdict(load_recipe("locked")), asdict(load_recipe("converged"))
    assert converged.pop("epochs") == 1000 and converged.pop("name") == "converged"
    locked.pop("epochs"), locked.pop("name")
    assert converged == locked  # only the length differs: the same stream, loss and optimiser
