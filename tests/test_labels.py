"""The TTM augmentation stream, the KL loss and stored-label replay."""

import math

import numpy as np
import pytest
import torch
from torchvision import transforms as T

from d4m.data import open_dataset
from d4m.errors import ConfigError, ModelError
from d4m.labels import (LabelStore, StoredLabels, StreamImages, StreamSpec, apply_mix, crop_params, decode, encode,
                        epoch_batches, epoch_order, iterate_epoch, kl_soft_loss, mix_params, num_batches, relabel)
from d4m.models import load_teacher
from d4m.seeding import derive_seed
from tests.ttm_helpers import make_folder, one_thread, tiny_teacher_file  # noqa: F401 (autouse fixture)


def test_order_deterministic_per_epoch_and_different_across_epochs():
    assert torch.equal(epoch_order(50, 3, 7), epoch_order(50, 3, 7))
    assert not torch.equal(epoch_order(50, 3, 7), epoch_order(50, 3, 8))
    assert not torch.equal(epoch_order(50, 3, 7), epoch_order(50, 4, 7))
    assert sorted(epoch_order(50, 3, 7).tolist()) == list(range(50))
    assert [len(b) for b in epoch_batches(50, 16, 0, 0)] == [16, 16, 16, 2]


def test_crop_params_match_torchvision_algorithm():
    img = torch.zeros(3, 40, 56)
    for index in range(40):
        ours = crop_params(40, 56, 5, 2, index, (0.08, 1.0), (3 / 4, 4 / 3))
        torch.manual_seed(derive_seed(5, "crop", 2, index))
        ref = T.RandomResizedCrop.get_params(img, [0.08, 1.0], [3 / 4, 4 / 3])
        assert ours[:4] == tuple(ref), index
        assert ours == crop_params(40, 56, 5, 2, index, (0.08, 1.0), (3 / 4, 4 / 3))
    flips = [crop_params(40, 56, 5, 2, i)[4] for i in range(200)]
    assert 60 < sum(flips) < 140
    assert [crop_params(40, 56, 5, 3, i) for i in range(20)] != [crop_params(40, 56, 5, 2, i) for i in range(20)]


def test_cutmix_and_mixup_params_and_application():
    mix = mix_params(8, 32, 32, 1, 0, 0, "cutmix", 1.0)
    assert mix == mix_params(8, 32, 32, 1, 0, 0, "cutmix", 1.0)
    assert mix != mix_params(8, 32, 32, 1, 1, 0, "cutmix", 1.0)
    y1, y2, x1, x2 = mix.box
    assert math.isclose(mix.lam, 1 - (y2 - y1) * (x2 - x1) / 32 ** 2)
    batch = torch.arange(8, dtype=torch.float32).view(8, 1, 1, 1).expand(8, 3, 32, 32).contiguous()
    out = apply_mix(batch, mix)
    perm = torch.tensor(mix.perm)
    assert torch.equal(out[:, :, y1:y2, x1:x2], batch[perm][:, :, y1:y2, x1:x2])
    outside = torch.ones(32, 32, dtype=torch.bool)
    outside[y1:y2, x1:x2] = False
    assert torch.equal(out[:, :, outside], batch[:, :, outside])
    mixup = mix_params(8, 32, 32, 1, 0, 0, "mixup", 1.0)
    assert torch.allclose(apply_mix(batch, mixup), mixup.lam * batch + (1 - mixup.lam) * batch[list(mixup.perm)])
    assert apply_mix(batch, mix_params(8, 32, 32, 1, 0, 0, "none")) is batch


def test_kl_loss_matches_hand_computation_without_t_squared():
    s = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    t = torch.tensor([[2.0, 0.0, 1.0], [1.0, 1.0, -2.0]])
    T_ = 4.0
    total = 0.0
    for si, ti in zip(s.tolist(), t.tolist()):
        ps = np.exp(np.array(si) / T_) / np.exp(np.array(si) / T_).sum()
        pt = np.exp(np.array(ti) / T_) / np.exp(np.array(ti) / T_).sum()
        total += float((pt * (np.log(pt) - np.log(ps))).sum())
    expected = total / 2  # batchmean, no T^2
    assert math.isclose(float(kl_soft_loss(s, t, T_)), expected, rel_tol=1e-5)
    assert not math.isclose(float(kl_soft_loss(s, t, 1.0)), expected, rel_tol=1e-3)
    assert float(kl_soft_loss(t, t, T_)) == pytest.approx(0.0, abs=1e-7)


def test_topk_encoding_keeps_top_values_and_is_smaller():
    logits = torch.randn(6, 1000) * 3
    full, top = encode(logits, "fp16"), encode(logits, "topk", 10)
    assert top["indices"].dtype == torch.int16 and top["values"].dtype == torch.float16
    back = decode(top, 1000)
    idx = logits.topk(10, dim=1).indices
    assert torch.allclose(back.gather(1, idx), logits.gather(1, idx), atol=1e-2)
    assert sum(v.numel() * v.element_size() for v in top.values()) * 40 < sum(
        v.numel() * v.element_size() for v in full.values())
    with pytest.raises(ConfigError):
        encode(logits, "int8")


def _setup(tmp_path, seed=0, batch=5):
    folder = make_folder(tmp_path / "imgs", per_class=3, size=20)
    images = open_dataset(f"folder:{folder}")
    teacher = load_teacher(f"checkpoint:{tiny_teacher_file(tmp_path / 't.safetensors')}", images.classes)
    spec = StreamSpec(seed=seed, batch_size=batch, image_size=16)
    return images, teacher, StreamImages(images, spec)


def test_stored_labels_replay_exactly_and_resume_skips_done_epochs(tmp_path):
    images, teacher, data = _setup(tmp_path)
    store = LabelStore(tmp_path / "labels" / "x")
    meta = relabel(data, teacher, store, 3, "fp32")
    assert meta["epochs_stored"] == 3 and meta["bytes"] > 0
    # a fresh object (as after a restart) regenerates the same batches and reads the same logits
    _, teacher2, data2 = _setup(tmp_path)
    replay = StoredLabels(LabelStore(tmp_path / "labels" / "x"), 4, num_batches(len(images), data2.spec))
    for epoch in range(3):
        for batch in iterate_epoch(data2, epoch):
            assert torch.equal(replay(epoch, batch), teacher2(batch.images))
    # resume: finished epochs are skipped (file untouched), the missing one is rebuilt identically
    first, last = store.epoch_path(0), store.epoch_path(2)
    stamp, old = first.stat().st_mtime_ns, _read(last)
    last.unlink()
    relabel(data, teacher, store, 3, "fp32")
    assert first.stat().st_mtime_ns == stamp
    new = _read(last)
    assert new[1] == old[1] and all(torch.equal(new[0][k], old[0][k]) for k in old[0])


def _read(path):
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        return {k: fh.get_tensor(k) for k in fh.keys()}, fh.metadata()


def test_replay_with_other_seed_is_refused(tmp_path):
    images, teacher, data = _setup(tmp_path)
    store = LabelStore(tmp_path / "labels")
    relabel(data, teacher, store, 1, "fp16")
    _, _, other = _setup(tmp_path, seed=1)
    replay = StoredLabels(store, 4, num_batches(len(images), other.spec))
    with pytest.raises(ModelError, match="other crops"):
        for batch in iterate_epoch(other, 0):
            replay(0, batch)
    with pytest.raises(ConfigError, match="stream"):
        relabel(other, teacher, store, 1, "fp16")


def test_relabel_command_writes_epochs_and_meta(tmp_path, capsys):
    from d4m.cli.main import main

    folder = make_folder(tmp_path / "imgs", per_class=2, size=20)
    teacher = tiny_teacher_file(tmp_path / "t.safetensors")
    args = ["relabel", "--images", str(folder), "--teacher", f"checkpoint:{teacher}", "--epochs", "2",
            "--out", str(tmp_path / "ev")]
    assert main(args) == 0
    store = LabelStore(tmp_path / "ev" / "labels" / "cifar-resnet20-paper-fp16")
    meta = store.meta()
    assert meta["epochs_stored"] == 2 and meta["stream"]["image_size"] == 16 and meta["stream"]["batch_size"] == 8
    assert meta["bytes"] == store.bytes_used() and "2 epochs" in capsys.readouterr().out
    assert main(args[:-2] + ["--run", str(tmp_path / "ev")]) == 2  # --run and --images together
    assert "exactly one of --run" in capsys.readouterr().err
