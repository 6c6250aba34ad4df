"""d4m as a library: the public functions driven directly, the ``Run`` object, the layering, missing packages."""

import ast
import importlib
import inspect
import json
import pkgutil
import sys
from pathlib import Path

import pytest
from PIL import Image
from safetensors import safe_open

import d4m
from d4m.cli.main import main
from d4m.errors import ConfigError, D4MError
from d4m.evaluate.baseline_cache import cache_root
from tests.conftest import shared_path
from tests.ttm_helpers import make_folder, seal_run, tiny_teacher_file

SRC = Path(d4m.__file__).parent
STAGES = ("data", "codec", "prototypes", "synthesis", "labels", "train", "evaluate", "methods", "models", "report",
          "generator", "runio")


def test_public_names_survive_stage_imports_and_document_an_example():
    for mod in pkgutil.walk_packages([str(SRC)], "d4m."):  # binds every stage package onto `d4m`
        if not mod.name.startswith(("d4m.cli", "d4m.__main__")):
            importlib.import_module(mod.name)
    assert sorted(d4m.api.__all__) == sorted(d4m.API)
    for name in d4m.API:
        obj = getattr(d4m, name)
        assert obj is getattr(d4m.api, name) and callable(obj), name
        assert "Example::" in (inspect.getdoc(obj) or ""), f"d4m.{name} has no example in its docstring"
    for name in ("manifest", "prototypes", "log", "summaries", "cards"):
        assert "Example::" in inspect.getdoc(d4m.Run) and inspect.getdoc(getattr(d4m.Run, name)), name


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return names


def test_layers_stages_never_import_the_api_and_evaluation_knows_no_method():
    for stage in STAGES:
        for path in (SRC / stage).rglob("*.py"):
            found = {n for n in _imports(path) if n.startswith(("d4m.api", "d4m.cli")) or n == "d4m.api"}
            assert not found, f"{path.relative_to(SRC)} imports {found} (stages sit below the API)"
    for path in (SRC / "evaluate").rglob("*.py"):
        assert not {n for n in _imports(path) if n.startswith("d4m.methods")}, path.name
    orchestration = {"run_evaluation", "select_run", "stm_run", "run_prototypes", "run_synthesis", "make_subset",
                     "build_report", "export_hf", "export", "run_train", "sample_to_folder", "train_teacher",
                     "relabel", "load_teacher", "open_dataset", "build_codec"}
    for path in (SRC / "cli").glob("*.py"):  # the shell calls the API; no stage orchestration lives there
        found = {n for n in _imports(path) if n.startswith("d4m.") and n.rsplit(".", 1)[-1] in orchestration}
        assert not found, f"cli/{path.name} calls {found} itself"


def test_unknown_settings_and_missing_data_fail_before_anything_is_written(tmp_path):
    with pytest.raises(ConfigError, match="unknown setting 'strenght'"):
        d4m.distill("folder:/x", out=tmp_path / "r", strenght=0.5)
    with pytest.raises(ConfigError, match="--data is required"):
        d4m.find_prototypes(out=tmp_path / "r")
    with pytest.raises(ConfigError, match="--strength 1.5"):
        d4m.distill("folder:/x", out=tmp_path / "r", strength=1.5)
    with pytest.raises(ConfigError, match="select: unknown setting 'strength'"):
        d4m.select("random", "folder:/x", out=tmp_path / "r", strength=0.5)
    with pytest.raises(ConfigError, match="no config.yaml"):
        d4m.synthesize(tmp_path / "nothing")
    with pytest.raises(ConfigError, match="unknown format"):
        d4m.export(tmp_path, to="zip", out=tmp_path / "z")
    assert not (tmp_path / "r").exists()


def test_distill_returns_an_inspectable_run_and_the_stages_compose(tmp_path, tiny_sd, cifar_subset):
    settings = dict(ipc=2, model=str(tiny_sd), size=64, steps=10, workers=0, batch_size=6)
    run = d4m.distill(f"folder:{cifar_subset}", out=tmp_path / "run", **settings)
    assert isinstance(run, d4m.Run) and run.path == tmp_path / "run" and run.images == tmp_path / "run" / "images"
    pngs = run.image_files()
    assert len(pngs) == 20 and {Image.open(p).size for p in pngs} == {(32, 32)}
    assert [p.parent.name for p in pngs[::2]] == ["000_airplane", "001_automobile", "002_bird", "003_cat", "004_deer",
                                                  "005_dog", "006_frog", "007_horse", "008_ship", "009_truck"]
    rows = run.manifest()
    assert len(rows) == 20 and len({r["seed"] for r in rows}) == 20
    for key in ("class_index", "class_name", "prompt", "prototype_index", "seed", "strength", "guidance", "steps",
                "model", "sha256"):
        assert key in rows[0]
    assert rows[3]["class_name"] == "automobile" and rows[3]["prompt"] == "automobile"
    protos = run.prototypes()
    assert protos["prototypes"].shape == (10, 2, 4, 8, 8)
    assert protos["counts"].sum(1).tolist() == [20] * 10  # every image of every class absorbed
    with safe_open(run.path / "prototypes.safetensors", "pt") as fh:
        assert run.prototype_metadata() == json.loads(fh.metadata()["d4m"])
    assert run.classes[7] == "horse" and len(run.prototype_metadata()["label_texts"]) == 10
    assert [r["stage"] for r in run.log()] == ["prototypes", "synthesis"]
    assert (run.config["strength"], run.config["negative_prompt"], run.config["out_size"]) == (
        0.7, "cartoon, anime, painting", 32)

    # the stages alone give the same images; a rerun resumes without changing anything
    p = d4m.find_prototypes(f"folder:{cifar_subset}", out=tmp_path / "run2", ipc=2, model=str(tiny_sd), size=64,
                            workers=0)
    assert p.prototypes()["prototypes"].shape == (10, 2, 4, 8, 8) and not p.images.exists()
    s = d4m.synthesize(p, steps=10, batch_size=6)
    assert s == p
    assert s.dir.manifest.read_text() == run.dir.manifest.read_text().replace(str(run.path), str(p.path))
    before = run.dir.manifest.read_bytes()
    again = d4m.distill(f"folder:{cifar_subset}", out=tmp_path / "run", **settings)
    assert again == run and run.dir.manifest.read_bytes() == before
    with pytest.raises(D4MError, match="another configuration"):
        d4m.distill(f"folder:{cifar_subset}", out=tmp_path / "run", **{**settings, "strength": 0.5})
    assert run.dir.manifest.read_bytes() == before  # nothing lost


@pytest.fixture(scope="module")
def random_run(tmp_path_factory, cifar_subset):
    return d4m.select("random", f"folder:{cifar_subset}", ipc=2, seed=3, out=tmp_path_factory.mktemp("api") / "run")


def test_select_and_export_hf_round_trip(tmp_path, random_run):
    datasets = pytest.importorskip("datasets")
    import numpy as np

    assert random_run.config["extras"]["method"] == "random" and len(random_run.manifest()) == 20
    teacher = "cifar-resnet20:" + str(shared_path("weights", "cifar10-resnet", "resnet20-12fca82f.th"))
    out = d4m.export(random_run, to="hf", out=tmp_path / "hf", teacher=teacher)
    ds = datasets.load_from_disk(str(out))
    rows = {r["file"]: r for r in random_run.manifest()}
    assert len(ds) == 20 and set(ds["file"]) == set(rows)
    assert ds.features["label"].names[:3] == ["airplane", "automobile", "bird"]
    for item in ds:
        m = rows[item["file"]]
        assert item["label"] == m["class_index"] and item["class_name"] == m["class_name"]
        assert np.array_equal(np.asarray(item["image"].convert("RGB")),
                              np.asarray(Image.open(random_run.path / item["file"]).convert("RGB")))
        assert len(item["soft_label"]) == 10
    # the teacher (91.7% on CIFAR-10) mostly agrees with the labels of real images
    assert np.mean([int(np.argmax(item["soft_label"])) == item["label"] for item in ds]) >= 0.6
    with pytest.raises(ConfigError, match="--force"):
        d4m.export(random_run, to="hf", out=out)


def test_evaluate_run_card_composes_the_random_baseline(random_run, cifar_subset):
    teacher = "cifar-resnet20:" + str(shared_path("weights", "cifar10-resnet", "resnet20-12fca82f.th"))
    card = d4m.evaluate_run(random_run, teacher=teacher, recipe="locked", epochs=2, val=f"folder:{cifar_subset}",
                            val_limit=40, seeds=1, eval_every=2, card=True)
    out = random_run.path / "eval" / "convnet-w128" / "locked"
    assert json.loads((out / "card.json").read_text()) == {k: v for k, v in card.items() if k != "path"}
    assert random_run.cards()[0]["IOR"] == card["IOR"]
    soft = json.loads((out / "summary.json").read_text())
    hard = json.loads((out.parent / "locked-hard" / "summary.json").read_text())
    assert card["soft"]["mean"] == soft["last_epoch_top1"]["mean"]
    assert card["hard"]["mean"] == hard["last_epoch_top1"]["mean"] and hard["labels"] == "hard"
    assert card["IOR"] == round(card["soft"]["mean"] - card["random"]["mean"], 2)
    assert card["HLR"] == round(card["full"]["mean"] - card["hard"]["mean"], 2)
    assert card["full"]["source"].startswith("teacher record") and 80 < card["full"]["mean"] <= 100
    base = Path(card["random"]["images"]).parent  # a `select --method random` run, same shape, in the cache
    assert base.parent == cache_root() / "card-random" and base.name.startswith("ipc2-32px-")
    assert d4m.Run(base).config["extras"]["method"] == "random" and len(d4m.Run(base).manifest()) == 20
    assert "d4m evaluate --run" in card["command"] and "--card" in card["command"]
    assert {s["recipe"] for s in random_run.summaries()} == {"locked", "locked-hard"}


def test_evaluate_run_relabel_and_teachers(tmp_path):
    run = tmp_path / "run"
    make_folder(run / "images", per_class=2, size=20)
    seal_run(run)  # a run's images must match its manifest
    val = make_folder(tmp_path / "val", per_class=2, size=16, seed=1, prefix=False)
    teacher = f"checkpoint:{tiny_teacher_file(tmp_path / 't.safetensors')}"
    labels = d4m.relabel(run, teacher=teacher, recipe="locked", epochs=2, val=f"folder:{val}", topk=2)
    assert labels["epochs_stored"] == 2 and Path(labels["path"]).parent == run / "labels"
    summary = d4m.evaluate_run(d4m.Run(run), teacher=teacher, val=f"folder:{val}", seeds=2, epochs=2,
                               recipe="locked", topk=2, device="cpu")
    assert summary["seeds"] == 2 and summary["last_epoch_top1"]["n"] == 2 and summary["image_size"] == 16
    assert Path(summary["path"]) == run / "eval" / "convnet-w128" / "locked"
    assert summary["label_store"]["format"] == "topk" and "--topk 2" in summary["command"]
    assert json.loads((Path(summary["path"]) / "summary.json").read_text())["per_seed"] == summary["per_seed"]
    score = d4m.eval_teacher(teacher, f"folder:{val}")
    assert score["images"] == 8 and 0 <= score["top1"] <= 100
    with pytest.raises(ConfigError, match="exactly one of"):
        d4m.evaluate_run(run, images=run / "images", teacher=teacher, val=f"folder:{val}")


def test_report_through_the_api(random_run):
    page = d4m.make_report(random_run, real_per_class=2, classes=3, per_class=1)
    assert page == random_run.path / "report" / "report.html" and "Skipped: no --teacher" in page.read_text()


@pytest.mark.parametrize("package,command,hint", [
    ("matplotlib", ["report", "--run", "RUN"], "d4m[report]"),
    ("datasets", ["export", "--run", "RUN", "--to", "hf", "OUT"], "d4m[export]"),
    ("sklearn", ["report", "--run", "RUN", "--teacher", "cifar-resnet20:TEACHER"], "scikit-learn"),
])
def test_a_missing_package_is_one_line_naming_what_to_install(monkeypatch, capsys, tmp_path, random_run, package,
                                                              command, hint):
    teacher = shared_path("weights", "cifar10-resnet", "resnet20-12fca82f.th")
    for name in [m for m in sys.modules if m == package or m.startswith((package + ".", "d4m.report."))]:
        parent, _, child = name.rpartition(".")
        if parent in sys.modules and getattr(sys.modules[parent], child, None) is sys.modules[name]:
            # a re-import binds a new module onto its package: put the old one back afterwards, as in sys.modules
            monkeypatch.setattr(sys.modules[parent], child, sys.modules[name])
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, package, None)  # `import package` raises ModuleNotFoundError
    args = [a.replace("RUN", str(random_run.path)).replace("OUT", str(tmp_path / "o")).replace("TEACHER", str(teacher))
            for a in command]
    assert main(args) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # (progress bars come before it)
    assert last.startswith("d4m: error:") and hint in last and package in last and "Traceback" not in err
