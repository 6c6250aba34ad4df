"""``d4m export --to hf``: a run as a Hugging Face dataset that ``datasets.load_from_disk`` reads back."""

import pytest

from d4m.cli.main import main

datasets = pytest.importorskip("datasets")


def test_export_command_exit_codes(tmp_path, cifar_subset, capsys):
    """The dataset itself is checked through the API (test_api.py); here: exit codes and one-line errors."""
    run = tmp_path / "run"
    assert main(["select", "--method", "random", "--data", f"folder:{cifar_subset}", "--ipc", "1",
                 "--out", str(run)]) == 0
    out = tmp_path / "hf"
    assert main(["export", "--run", str(run), "--to", "hf", str(out)]) == 0
    assert len(datasets.load_from_disk(str(out))) == 10 and str(out) in capsys.readouterr().out
    assert main(["export", "--run", str(run), "--to", "hf", str(out)]) == 2  # not empty without --force
    assert "--force" in capsys.readouterr().err
    assert main(["export", "--run", str(run), "--to", "zip", str(tmp_path / "z")]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0
