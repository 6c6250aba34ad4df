"""``--data hf:PATH[:SPLIT]``: save_to_disk, parquet and imagefolder datasets read as LabeledImages."""

import numpy as np
import pytest
from PIL import Image

from d4m.cli.main import main
from d4m.data import open_dataset
from d4m.errors import DataError

datasets = pytest.importorskip("datasets")
NAMES = ["tench", "goldfish", "great_white_shark"]


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """parquet / imagefolder loading writes datasets' Arrow cache: keep it in the test's folder."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))


def pictures(n, size=12, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]


def make_ds(arrays, labels, image_col="image", label_col="label", classlabel=True):
    features = datasets.Features({image_col: datasets.Image(), label_col: datasets.ClassLabel(names=NAMES)
                                  if classlabel else datasets.Value("int64")})
    return datasets.Dataset.from_dict({image_col: [Image.fromarray(a) for a in arrays], label_col: labels},
                                      features=features)


def test_save_to_disk_splits_classes_and_pixels(tmp_path):
    train, val = pictures(6), pictures(3, seed=1)
    dd = datasets.DatasetDict({"train": make_ds(train, [2, 0, 1, 0, 2, 1]), "validation": make_ds(val, [1, 1, 0])})
    dd.save_to_disk(str(tmp_path / "dd"))
    ds = open_dataset(f"hf:{tmp_path / 'dd'}", "train")
    assert ds.classes == NAMES and ds.label_texts == ["tench", "goldfish", "great white shark"]
    assert ds.targets == [2, 0, 1, 0, 2, 1] and len(ds) == 6 and ds.indices_of(0) == [1, 3]
    for i, a in enumerate(train):
        assert np.array_equal(np.asarray(ds.load(i)), a)
    v = open_dataset(f"hf:{tmp_path / 'dd'}", "val")  # the validation role finds 'validation'
    assert v.targets == [1, 1, 0] and np.array_equal(np.asarray(v.load(2)), val[2])
    named = open_dataset(f"hf:{tmp_path / 'dd'}:validation", "train")  # :SPLIT serves both roles
    assert named.targets == [1, 1, 0]
    with pytest.raises(DataError, match="no split test.*splits: train, validation"):
        open_dataset(f"hf:{tmp_path / 'dd'}:test", "train")
    make_ds(train, [0] * 6).save_to_disk(str(tmp_path / "one"))  # a single Dataset serves both roles
    assert open_dataset(f"hf:{tmp_path / 'one'}", "val").targets == [0] * 6


def test_opening_decodes_no_image(tmp_path, monkeypatch):
    """Only the label column is read up front: ImageNet-size data never sits in memory."""
    make_ds(pictures(5), [0, 1, 2, 0, 1]).save_to_disk(str(tmp_path / "d"))
    opened = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda *a, **k: opened.append(1) or real_open(*a, **k))
    ds = open_dataset(f"hf:{tmp_path / 'd'}", "train")
    assert opened == [] and len(ds) == 5
    ds.load(3)
    assert len(opened) == 1


def test_parquet_and_imagefolder(tmp_path):
    arrays = pictures(4)
    make_ds(arrays, [0, 1, 2, 1]).to_parquet(str(tmp_path / "pq" / "train-00000-of-00001.parquet"))
    make_ds(arrays[:2], [2, 2]).to_parquet(str(tmp_path / "pq" / "test-00000-of-00001.parquet"))
    ds = open_dataset(f"hf:{tmp_path / 'pq'}", "train")
    assert ds.classes == NAMES and ds.targets == [0, 1, 2, 1]
    assert np.array_equal(np.asarray(ds.load(1)), arrays[1])
    assert open_dataset(f"hf:{tmp_path / 'pq'}", "val").targets == [2, 2]  # 'test' is the validation role's last pick
    one = open_dataset(f"hf:{tmp_path / 'pq' / 'train-00000-of-00001.parquet'}", "train")
    assert one.targets == [0, 1, 2, 1]
    for split, labels in (("train", [0, 1, 1]), ("test", [0, 1])):
        for k, c in enumerate(labels):
            d = tmp_path / "imf" / split / ["cat", "dog"][c]
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(arrays[k]).save(d / f"{k}.png")
    imf = open_dataset(f"hf:{tmp_path / 'imf'}", "train")
    assert imf.classes == ["cat", "dog"] and sorted(imf.targets) == [0, 1, 1]
    assert len(open_dataset(f"hf:{tmp_path / 'imf'}:test", "val")) == 2


def test_bad_columns_and_paths_are_one_line(tmp_path, capsys):
    make_ds(pictures(3), [0, 1, 2], classlabel=False).save_to_disk(str(tmp_path / "intlabels"))
    with pytest.raises(DataError, match="no ClassLabel column.*label \\(Value\\)"):
        open_dataset(f"hf:{tmp_path / 'intlabels'}", "train")
    datasets.Dataset.from_dict({"text": ["a"], "label": [0]},
                               features=datasets.Features({"text": datasets.Value("string"),
                                                           "label": datasets.ClassLabel(names=["x"])})
                               ).save_to_disk(str(tmp_path / "noimage"))
    with pytest.raises(DataError, match="no Image column"):
        open_dataset(f"hf:{tmp_path / 'noimage'}", "train")
    with pytest.raises(DataError, match="does not exist"):
        open_dataset(f"hf:{tmp_path / 'missing'}", "train")
    capsys.readouterr()  # datasets' progress bars of the set-up
    rc = main(["select", "--method", "random", "--data", f"hf:{tmp_path / 'intlabels'}", "--ipc", "1",
               "--out", str(tmp_path / "run")])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert rc == 2 and len(err) == 1 and "ClassLabel" in err[0] and "Traceback" not in err[0]


def test_select_runs_on_an_hf_dataset(tmp_path):
    arrays = pictures(9, size=16)
    make_ds(arrays, [0, 1, 2] * 3).save_to_disk(str(tmp_path / "d"))
    assert main(["select", "--method", "random", "--data", f"hf:{tmp_path / 'd'}", "--ipc", "2",
                 "--out", str(tmp_path / "run")]) == 0
    folders = sorted(p.name for p in (tmp_path / "run" / "images").iterdir())
    assert len(folders) == 3 and folders[1].endswith("goldfish")
    assert all(len(list((tmp_path / "run" / "images" / f).iterdir())) == 2 for f in folders)
