"""Pinned (index, name) pairs for every dataset's label texts."""

import pytest

from d4m.data import open_dataset
from d4m.data.classnames import cifar_names, imagenet_table, render_prompt
from d4m.errors import DataError


def test_imagenet_index_order_and_disambiguation():
    table = imagenet_table()
    assert len(table) == 1000 and [w for w, _, _ in table] == sorted(w for w, _, _ in table)
    assert table[0][:2] == ("n01440764", "tench, Tinca tinca")
    assert table[1][0] == "n01443537" and table[1][2].startswith("goldfish")
    assert table[134] == ("n02012849", "crane", "crane, bird")
    assert table[517] == ("n03126707", "crane", "crane, machine")
    assert table[638][2] == "maillot" and table[639][2] == "maillot, tank suit"
    assert table[999][0] == "n15075141" and table[999][2].startswith("toilet tissue")
    assert len({label for _, _, label in table}) == 1000  # every prompt distinct


def test_imagenet_agrees_with_torchvision_short_names():
    from torchvision.models import ResNet18_Weights

    cats = ResNet18_Weights.IMAGENET1K_V1.meta["categories"]
    for i in (0, 1, 207, 281, 409, 950):
        assert cats[i].lower() in imagenet_table()[i][1].lower(), (i, cats[i], imagenet_table()[i])


def test_cifar_orders():
    assert cifar_names("cifar10")[:3] == ["airplane", "automobile", "bird"]
    assert cifar_names("cifar10")[9] == "truck"
    c100 = cifar_names("cifar100")
    assert len(c100) == 100 and c100 == sorted(c100)
    assert (c100[0], c100[1], c100[4], c100[30], c100[99]) == ("apple", "aquarium_fish", "beaver", "dolphin", "worm")


def _tiny_imagenet(root):
    wnids = ["n02124075", "n01443537", "n04067472"]
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (root / "words.txt").write_text("n01443537\tgoldfish, Carassius auratus\nn02124075\tEgyptian cat\n"
                                    "n04067472\treel\nn00001740\tentity\n")
    from PIL import Image

    for w in wnids:
        (root / "train" / w / "images").mkdir(parents=True)
        Image.new("RGB", (64, 64), (10, 20, 30)).save(root / "train" / w / "images" / f"{w}_0.JPEG")
    (root / "val" / "images").mkdir(parents=True)
    Image.new("L", (64, 64), 128).save(root / "val" / "images" / "val_0.JPEG")
    (root / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn04067472\t0\t0\t10\t10\n")


def test_tiny_imagenet_names_from_words(tmp_path):
    _tiny_imagenet(tmp_path)
    train = open_dataset(f"tiny-imagenet:{tmp_path}", "train")
    assert train.classes == ["n01443537", "n02124075", "n04067472"]  # sorted wnids
    assert train.label_texts == ["goldfish, Carassius auratus", "Egyptian cat", "reel"]
    val = open_dataset(f"tiny-imagenet:{tmp_path}", "val")
    assert val.targets == [2] and val.load(0).mode == "RGB"


def test_folder_on_other_layouts_names_the_kind_that_reads_them(tmp_path):
    import shutil

    _tiny_imagenet(tmp_path)
    for spec in (f"folder:{tmp_path}/train", f"folder:{tmp_path}"):  # train/<wnid>/images/*.JPEG, or its root
        with pytest.raises(DataError, match=f"Tiny-ImageNet layout .*use --data tiny-imagenet:{tmp_path} "):
            open_dataset(spec, "train")
    (tmp_path / "wnids.txt").unlink()  # no wnids.txt: the images/ sub-folders alone give it away
    with pytest.raises(DataError, match=f"tiny-imagenet:{tmp_path} "):
        open_dataset(f"folder:{tmp_path}/train", "train")
    nested = tmp_path / "nested"
    shutil.copytree(tmp_path / "train", nested / "train" / "cls", dirs_exist_ok=True)  # images two levels down
    for w in ("n01443537",):
        shutil.move(nested / "train" / "cls" / w / "images", nested / "train" / w)
    shutil.rmtree(nested / "train" / "cls")
    with pytest.raises(DataError, match=f"one level deeper .*use folder:{nested}/train"):
        open_dataset(f"folder:{nested}", "train")
    (nested / "val" / "x").mkdir(parents=True)
    with pytest.raises(DataError, match=f"use imagenet:{nested} "):
        open_dataset(f"folder:{nested}", "train")


def test_prompt_template():
    assert render_prompt("{}", "crane, bird") == "crane, bird"
    assert render_prompt("a photo of a {}", "tench") == "a photo of a tench"
    with pytest.raises(DataError):
        render_prompt("a photo", "x")
