"""Teacher loaders: the CIFAR ResNet-20 on real CIFAR-10 JPEGs, class checks, refusal of unsafe pickles,
checkpoints written by `d4m teacher train`."""

import os
import pickle

import pytest
import torch

from d4m.cli.main import main
from d4m.errors import ModelError
from d4m.evaluate.val import ValSet
from d4m.models import load_teacher
from tests.ttm_helpers import CLASSES, make_folder, one_thread, shared_or_skip  # noqa: F401 (autouse fixture)

CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def test_resnet20_scores_on_cifar10_test_jpegs():
    weights = shared_or_skip("weights", "cifar10-resnet", "resnet20-12fca82f.th")
    test_dir = shared_or_skip("data", "cifar10", "test")
    val = ValSet(f"folder:{test_dir}", 32, limit=2000)
    teacher = load_teacher(f"cifar-resnet20:{weights}", classes=val.classes)
    top1 = val.top1(teacher)
    print(f"ResNet-20 top-1 on {len(val)} CIFAR-10 test JPEGs: {top1:.2f}%")
    assert len(val) == 2000 and len(set(val.targets.tolist())) == 10
    assert top1 >= 75.0


def test_class_order_mismatch_fails_loudly():
    weights = shared_or_skip("weights", "cifar10-resnet", "resnet20-12fca82f.th")
    swapped = CIFAR10[:3] + ["dog", "deer", "cat"] + CIFAR10[6:]
    with pytest.raises(ModelError, match=r"index 3: the teacher has 'cat', the data has 'dog'"):
        load_teacher(f"cifar-resnet20:{weights}", classes=swapped)
    with pytest.raises(ModelError, match="weights do not fit"):
        load_teacher(f"cifar-resnet56:{weights}")


class _Payload:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_malicious_pickle_is_refused_without_running(tmp_path):
    live = tmp_path / "payload-ran-in-plain-pickle"
    pickle.loads(pickle.dumps(_Payload(live)))  # the payload is real: plain unpickling runs it
    assert live.exists()
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.th"
    torch.save({"state_dict": {"conv1.weight": torch.zeros(1)}, "x": _Payload(marker)}, evil)
    with pytest.raises(ModelError, match="refused"):
        load_teacher(f"cifar-resnet20:{evil}")
    assert not marker.exists()
    with pytest.raises(ModelError, match="not found"):
        load_teacher(f"cifar-resnet20:{tmp_path / 'missing.th'}")
    with pytest.raises(ModelError, match="KIND:VALUE"):
        load_teacher("resnet20.th")


def test_teacher_train_checkpoint_loads_back(tmp_path, capsys):
    data = make_folder(tmp_path / "train", per_class=4, size=16, prefix=False)
    out = tmp_path / "teachers" / "tiny.safetensors"
    assert main(["teacher", "train", "--data", f"folder:{data}", "--arch", "cifar-resnet20", "--out", str(out),
                 "--epochs", "1", "--batch-size", "8", "--device", "cpu", "--allow-weak"]) == 0
    teacher = load_teacher(f"checkpoint:{out}", classes=CLASSES)
    assert teacher.arch == "cifar-resnet20" and teacher.classes == CLASSES and teacher.input_size == 16
    assert teacher(torch.rand(2, 3, 16, 16)).shape == (2, 4)
    assert teacher(torch.rand(2, 3, 24, 24)).shape == (2, 4)  # resized to the teacher's input size
    with pytest.raises(ModelError, match="index 0"):
        load_teacher(f"checkpoint:{out}", classes=list(reversed(CLASSES)))
    assert main(["teacher", "eval", "--teacher", f"checkpoint:{out}", "--val", f"folder:{data}"]) == 0
    assert "top-1" in capsys.readouterr().out
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(ModelError, match="not a safetensors"):
        load_teacher(f"checkpoint:{junk}")


def test_torchvision_teacher(tmp_path):
    from pathlib import Path

    from torchvision.models import ResNet18_Weights

    from d4m.data.classnames import imagenet_table

    with pytest.raises(ModelError, match="no pretrained weights"):
        load_teacher("torchvision:not_a_model")
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(ResNet18_Weights.DEFAULT.url).name
    if not cached.is_file():
        pytest.skip(f"ResNet-18 ImageNet weights not cached at {cached} (offline)")
    teacher = load_teacher("torchvision:resnet18", classes=[row[0] for row in imagenet_table()])
    assert teacher.input_size == 224 and teacher.classes[0] == "tench" and teacher.columns is None
