"""Rules 3 and 4 for the Python API, recipes and the generator: wrong types, bad recipe values and absurd sizes
are one-line ``D4MError``s raised before any work (never a ``TypeError`` from deep inside, never an allocation
that takes the machine down). Every case fails in its argument checks, before any data is read or any
folder made; the generator cases share one tiny generator trained once.
"""

import json
import shutil

import pytest

import d4m
from d4m.errors import ConfigError, D4MError

API_CASES = {  # name -> a call with one wrong argument (the rest would be plausible)
    "distill data=123": lambda t: d4m.distill(123, out=t / "o"),
    "distill out=5": lambda t: d4m.distill("folder:x", out=5),
    "distill ipc='2'": lambda t: d4m.distill("folder:x", out=t / "o", ipc="2"),
    "distill force='yes'": lambda t: d4m.distill("folder:x", out=t / "o", force="yes"),
    "find_prototypes config=3": lambda t: d4m.find_prototypes("folder:x", out=t / "o", config=3),
    "synthesize run=None": lambda t: d4m.synthesize(None),
    "sweep strengths={}": lambda t: d4m.sweep(t, {}),
    "sweep missing strengths": lambda t: d4m.sweep(t),
    "select ipc=1.5": lambda t: d4m.select("random", "folder:x", ipc=1.5, out=t / "o"),
    "select method=None": lambda t: d4m.select(None, "folder:x", out=t / "o"),
    "stm iterations='9'": lambda t: d4m.stm(t, teacher="x", out=t / "o", iterations="9"),
    "relabel epochs=[1]": lambda t: d4m.relabel(t, teacher="x", epochs=[1]),
    "evaluate_run seeds='3'": lambda t: d4m.evaluate_run(t, teacher="x", val="x", seeds="3"),
    "evaluate_run missing val": lambda t: d4m.evaluate_run(t, teacher="x"),
    "evaluate_run unknown keyword": lambda t: d4m.evaluate_run(t, teacher="x", val="x", epoch=3),
    "train_teacher epochs=True": lambda t: d4m.train_teacher("folder:x", t / "t.safetensors", epochs=True),
    "eval_teacher limit='all'": lambda t: d4m.eval_teacher("x", "folder:x", limit="all"),
    "subset copy=1": lambda t: d4m.subset(t, classes="x", out=t / "o", copy=1),
    "make_report classes='2'": lambda t: d4m.make_report(t, classes="2"),
    "export to=3": lambda t: d4m.export(t, to=3, out=t / "o"),
    "export out=None": lambda t: d4m.export(t, to="hf", out=None),
    "export run=None": lambda t: d4m.export(None, to="hf", out=t / "o"),
    "train_generator epochs='2'": lambda t: d4m.train_generator("folder:x", "taef2:x", t / "g", epochs="2"),
    "train_generator size=32.5": lambda t: d4m.train_generator("folder:x", "taef2:x", t / "g", size=32.5),
    "train_generator lr='fast'": lambda t: d4m.train_generator("folder:x", "taef2:x", t / "g", lr="fast"),
    "sample_generator per_class='1'": lambda t: d4m.sample_generator("g", t / "s", per_class="1"),
    "sample_generator steps=None": lambda t: d4m.sample_generator("g", t / "s", per_class=1, steps=None),
    "sample_generator guidance='8'": lambda t: d4m.sample_generator("g", t / "s", per_class=1, guidance="8"),
    "sample_generator grid=7": lambda t: d4m.sample_generator("g", t / "s", per_class=1, grid=7),
    "Run(3)": lambda t: d4m.Run(3),
    "Run(not a run).manifest()": lambda t: d4m.Run(t).manifest(),
}


@pytest.mark.parametrize("case", list(API_CASES))
def test_api_called_with_wrong_types_raises_one_line(tmp_path, case):
    with pytest.raises(D4MError) as info:
        API_CASES[case](tmp_path)
    assert "\n" not in str(info.value) and len(str(info.value)) < 300, str(info.value)
    assert not (tmp_path / "o").exists() and not (tmp_path / "g").exists() and not (tmp_path / "s").exists()


def test_api_keeps_signatures_and_help():
    import inspect

    assert "features" in inspect.signature(d4m.select).parameters and "Example" in d4m.export.__doc__


RECIPES = {  # key: value -> a word the message must hold
    "epochs: 2.5": "epochs", "epochs: true": "epochs", "epochs: 100000000": "epochs", "epochs: '300 epochs'": "epochs",
    "batch_size: 0": "batch_size", "lr: .nan": "lr", "lr: -1": "lr", "temperature: 0": "temperature",
    "scale: [0, 1]": "scale", "scale: [0.5, 2]": "scale", "scale: oops": "scale", "ratio: [0, 1]": "ratio",
    "mix_alpha: 0": "mix_alpha", "mix: blend": "mix", "optimizer: 3": "optimizer", "flip: 'no'": "flip",
    "momentum: [1]": "momentum", "name: [1]": "name", "unknown_key: 1": "unknown",
}


@pytest.mark.parametrize("line", list(RECIPES))
def test_recipe_file_with_a_bad_value_is_one_line(tmp_path, line):
    from d4m.train.recipe import load_recipe

    path = tmp_path / "my.yaml"
    path.write_text(f"epochs: 10\n{line}\n" if not line.startswith("epochs") else f"{line}\n")
    with pytest.raises(ConfigError) as info:
        load_recipe(str(path))
    assert RECIPES[line] in str(info.value) and str(path) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("epochs", [0, -3, 10**8, True, 2.0])
def test_epochs_flag_bounded(epochs):
    from d4m.train.recipe import load_recipe

    with pytest.raises(ConfigError, match="--epochs"):
        load_recipe("paper", epochs=epochs)


GENERATOR_SIZES = {  # flag values -> the flag the message names (refused before the data is even opened)
    ("--epochs", "10000000"): "--epochs", ("--max-steps", str(10**12)): "--max-steps",
    ("--size", "8192"): "--size", ("--size", "4096"): "--batch-size", ("--batch-size", "99999"): "--batch-size",
    ("--encode-batch-size", "50000"): "--encode-batch-size", ("--max-tokens", "100000"): "--max-tokens",
}


@pytest.mark.parametrize("flags", list(GENERATOR_SIZES))
def test_generator_train_sizes_are_bounded_before_work(tmp_path, flags, capsys, monkeypatch):
    from d4m.cli.main import main
    from tests.test_reliability_models import one_error

    monkeypatch.setattr("d4m.checks.machine_memory", lambda: 16 * 2**30)  # the same answer on every machine
    out = tmp_path / "g"
    assert main(["generator", "train", "--data", "folder:/nonexistent", "--codec", "taef2:/nonexistent",
                 "--text-encoder", "learned", "--out", str(out), *flags]) == 2
    err = one_error(capsys.readouterr().err)
    assert GENERATOR_SIZES[flags] in err and not out.exists(), err
    if "GiB" in err:
        assert "16.0 GiB" in err  # the estimate is stated against the machine's memory


@pytest.fixture(scope="module")
def generator(tmp_path_factory, tiny_sd):
    from d4m.cli.main import main
    from tests.test_reliability_models import small_folder

    root = tmp_path_factory.mktemp("gen-sizes")
    data = small_folder(root / "data", ("cat", "dog"), n=2)
    assert main(["generator", "train", "--data", f"folder:{data}", "--codec", f"vae:{tiny_sd}/vae", "--size", "16",
                 "--text-encoder", "learned", "--preset", "tiny", "--batch-size", "2", "--max-steps", "1",
                 "--checkpoint-every", "1", "--device", "cpu", "--threads", "1", "--out", str(root / "g")]) == 0
    return root / "g"


SAMPLE_SIZES = {  # flags, or a d4m.json edit -> the word the message names
    "--per-class 1000000000": "--per-class", "--steps 100000": "--steps", "--batch-size 200000": "--batch-size",
    "--per-class 0": "--per-class", "latent_shape [4, 100000, 100000]": "latent_shape",
    "latent_shape 'big'": "latent_shape", "latent_shape [4, -2, 2]": "latent_shape",
}


@pytest.mark.parametrize("case", list(SAMPLE_SIZES))
def test_generator_sample_sizes_are_bounded_before_work(tmp_path, generator, case, capsys, monkeypatch):
    from d4m.cli.main import main
    from tests.test_reliability_models import one_error

    monkeypatch.setattr("d4m.checks.machine_memory", lambda: 16 * 2**30)
    model, flags = generator, ["--per-class", "1", "--steps", "1"]
    if case.startswith("latent_shape"):
        model = tmp_path / "g"
        shutil.copytree(generator, model)
        info = json.loads((model / "d4m.json").read_text())
        info["latent_shape"] = json.loads(case.split(" ", 1)[1].replace("'", '"'))
        (model / "d4m.json").write_text(json.dumps(info))
    else:
        flag, value = case.split()
        flags = [f for f in flags if f not in (flag,)]
        flags = ["--per-class", "1", "--steps", "1", flag, value] if flag not in ("--per-class", "--steps") else \
            (["--steps", "1", flag, value] if flag == "--per-class" else ["--per-class", "1", flag, value])
    out = tmp_path / "s"
    assert main(["generator", "sample", "--model", str(model), "--device", "cpu", "--out", str(out), *flags]) == 2
    err = one_error(capsys.readouterr().err)
    assert SAMPLE_SIZES[case] in err and not out.exists(), err
