"""DD-Ranking interop: ``d4m export --to ddranking`` (what its LabelRobustScoreSoft reads) and ``--recipe ddranking``."""

import math

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from d4m.cli.main import main
from d4m.data import open_dataset
from d4m.errors import ConfigError
from d4m.labels import OnlineLabels, StreamImages
from d4m.models import Normalized, create_model, load_teacher
from d4m.report.ddranking import CIFAR_MEAN, CIFAR_STD
from d4m.report.export import export
from d4m.train import load_recipe, lr_at, make_optimizer, train_student
from tests.ttm_helpers import CLASSES, one_thread, seal_run, tiny_teacher_file  # noqa: F401 (autouse fixture)


def make_run(root, per_class=3, size=16, data="cifar10:/data/cifar", short_class=None):
    """A finished-looking run: images/<000_name>/<k>.png (distinct random images) and its config.yaml."""
    rng = np.random.default_rng(1)
    for c, name in enumerate(CLASSES):
        d = root / "images" / f"{c:03d}_{name}"
        d.mkdir(parents=True)
        for k in range(per_class - (c == short_class)):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(d / f"{k:03d}.png")
    (root / "config.yaml").write_text(yaml.safe_dump({"data": data, "ipc": per_class}))
    return seal_run(root)


def test_export_ddranking_layout_tensors_labels_config(tmp_path):
    run = make_run(tmp_path / "run")
    spec = f"checkpoint:{tiny_teacher_file(tmp_path / 't.safetensors')}"
    out, n = export(run, "ddranking", tmp_path / "ddr", teacher=spec)
    assert n == 12
    # ImageFolder: folders sort in class-index order, exactly IPC images each, the run's files in order
    folders = sorted(p.name for p in (out / "images").iterdir())
    assert folders == ["00000", "00001", "00002", "00003"]
    src = [p for c in sorted((run / "images").iterdir()) for p in sorted(c.iterdir())]
    dst = [p for c in folders for p in sorted((out / "images" / c).iterdir())]
    assert [p.read_bytes() for p in src] == [p.read_bytes() for p in dst]
    from torchvision.datasets import ImageFolder

    assert ImageFolder(str(out / "images")).targets == [c for c in range(4) for _ in range(3)]  # DD-Ranking's labels
    # images.pt: [classes x IPC, 3, H, W] float, class-major, normalised with CIFAR's mean/std
    x = torch.load(out / "images.pt")
    assert x.shape == (12, 3, 16, 16) and x.dtype == torch.float32
    raw = torch.stack([torch.from_numpy(np.array(Image.open(p).convert("RGB"))).permute(2, 0, 1) for p in src])
    raw = raw.float() / 255
    mean, std = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1), torch.tensor(CIFAR_STD).view(1, 3, 1, 1)
    assert torch.allclose(x, (raw - mean) / std, atol=1e-6)
    assert torch.allclose(x * std + mean, raw, atol=1e-6)
    # labels.pt: the teacher's logits on each whole image, in the same order
    labels = torch.load(out / "labels.pt")
    assert labels.shape == (12, 4)
    teacher = load_teacher(spec, classes=open_dataset(f"folder:{run / 'images'}").classes)
    assert torch.allclose(labels, teacher(raw), atol=1e-5)
    assert float(torch.load(out / "lr.pt")) == pytest.approx(1e-3)
    # config.yaml: DD-Ranking's LabelRobustScoreSoft keys with d4m's paper recipe
    conf = yaml.safe_load((out / "config.yaml").read_text())
    assert conf["dataset"] == "CIFAR10" and conf["ipc"] == 3 and conf["im_size"] == [16, 16]
    assert conf["model_name"] == "ConvNet-3" and conf["soft_label_mode"] == "M"
    assert conf["loss_fn_kwargs"] == {"temperature": 20.0, "scale_loss": False}
    assert (conf["optimizer"], conf["weight_decay"], conf["num_epochs"]) == ("adamw", 0.01, 300)
    assert conf["lr_scheduler"] == "cosineannealing"  # d4m's cosine goes to 0: its CosineAnnealingLR, not 'cosine'
    assert conf["syn_batch_size"] == 12  # the paper batch (1024) capped at the images
    assert (conf["data_aug_func"], conf["aug_params"]) == ("cutmix", {"beta": 1.0})
    assert conf["custom_train_trans"][0] == {"name": "RandomResizedCrop", "args": {"size": 16, "scale": [0.08, 1.0]}}
    assert conf["custom_train_trans"][-1]["args"] == {"mean": list(CIFAR_MEAN), "std": list(CIFAR_STD)}
    ddr = yaml.safe_load((out / "config.yaml").read_text())
    ddr_keys = {"dataset", "real_data_path", "ipc", "im_size", "model_name", "stu_use_torchvision",
                "tea_use_torchvision", "teacher_dir", "teacher_model_names", "data_aug_func", "aug_params", "use_zca",
                "custom_train_trans", "custom_val_trans", "use_aug_for_hard", "soft_label_mode",
                "soft_label_criterion", "loss_fn_kwargs", "optimizer", "lr_scheduler", "weight_decay", "num_eval",
                "num_epochs", "syn_batch_size", "real_batch_size", "save_path", "random_data_format",
                "random_data_path"}
    assert ddr_keys <= set(ddr)


def test_export_ddranking_refusals(tmp_path, capsys):
    run = make_run(tmp_path / "run", data="folder:/somewhere")
    with pytest.raises(ConfigError, match="--dataset"):  # a folder run: DD-Ranking's dataset name is not known
        export(run, "ddranking", tmp_path / "a")
    out, _ = export(run, "ddranking", tmp_path / "a", dataset="TinyImageNet")
    assert not (out / "labels.pt").exists()  # no teacher: mode M needs none
    conf = yaml.safe_load((out / "config.yaml").read_text())
    assert conf["model_name"] == "ResNet-18-BN" and conf["custom_train_trans"][-1]["args"]["std"] == [0.229, 0.224, 0.225]
    uneven = make_run(tmp_path / "uneven", short_class=2)
    with pytest.raises(ConfigError, match="same IPC"):
        export(uneven, "ddranking", tmp_path / "b")
    assert main(["export", "--run", str(run), "--to", "ddranking", str(out), "--dataset", "CIFAR100"]) == 2
    assert "--force" in capsys.readouterr().err  # not empty: nothing overwritten without --force
    assert main(["export", "--run", str(run), "--to", "ddranking", str(out), "--dataset", "CIFAR100",
                 "--force"]) == 0
    assert yaml.safe_load((out / "config.yaml").read_text())["dataset"] == "CIFAR100"
    assert main(["export", "--run", str(run), "--to", "ddranking", str(tmp_path / "c"), "--label-mode", "S",
                 "--dataset", "CIFAR10"]) == 2  # mode S needs labels.pt, so a teacher
    assert main(["export", "--run", str(run), "--to", "zip", str(tmp_path / "z")]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("d4m: error")]
    assert len(errors) == 2 and "--teacher" in errors[0] and "ddranking" in errors[1]


def test_ddranking_recipe_values_drive_the_trainer(tmp_path):
    r = load_recipe("ddranking")
    assert (r.epochs, r.batch_size, r.optimizer, r.lr, r.weight_decay) == (500, 100, "adamw", 1e-3, 0.01)
    assert (r.schedule, r.mix, r.mix_alpha, r.temperature, tuple(r.scale), r.flip) == \
        ("half-cosine", "cutmix", 1.0, 20.0, (0.08, 1.0), True)
    # DD-Ranking's 'cosine' LambdaLR: 0.5 (1 + cos(pi e / E / 2)) -> lr / 2 at the end, not 0
    assert lr_at(r, 0) == pytest.approx(1e-3) and lr_at(r, 250) == pytest.approx(0.5e-3 * (1 + math.cos(math.pi / 4)))
    assert lr_at(r, 499) > 0.5e-3
    r = load_recipe("ddranking", epochs=3)
    run = make_run(tmp_path / "run", per_class=30)  # 120 images: batch 100 -> 2 optimizer steps per epoch
    images = open_dataset(f"folder:{run / 'images'}")
    data = StreamImages(images, r.stream(len(images), 16))
    assert (data.spec.batch_size, data.spec.mix, data.spec.scale) == (100, "cutmix", (0.08, 1.0))
    teacher = load_teacher(f"checkpoint:{tiny_teacher_file(tmp_path / 't.safetensors')}", images.classes)
    torch.manual_seed(0)
    model = Normalized(create_model("convnet-w128", len(CLASSES), 16))
    opt = make_optimizer(model, r)
    assert isinstance(opt, torch.optim.AdamW) and opt.param_groups[0]["weight_decay"] == 0.01
    m = train_student(model, data, torch.tensor(images.targets), OnlineLabels(teacher), r)
    assert [h["lr"] for h in m["history"]] == pytest.approx([0.5e-3 * (1 + math.cos(math.pi * e / 6)) for e in range(3)])
    assert m["epochs_done"] == 3
