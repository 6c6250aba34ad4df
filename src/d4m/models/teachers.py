"""Teachers: a trained classifier plus its classes, input normalisation and input size.

Specs: ``torchvision:NAME`` (ImageNet weights through torchvision's weights API), ``cifar-resnet20:FILE`` /
``cifar-resnet56:FILE`` (the widely used CIFAR-10 .th files), ``checkpoint:FILE`` (d4m's own safetensors file, as
written by ``d4m teacher train``). Weights are read only through safetensors or ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from d4m.errors import D4MError, ModelError
from d4m.models.classes import class_columns
from d4m.models.registry import (IMAGENET_MEAN, IMAGENET_STD, MAX_IMAGE_SIZE, MODELS, Normalized, create_model,
                                 stem, weight_count)
from d4m.runio.tensors import load_tensors, save_tensors

TEACHER_KINDS = ("torchvision", "cifar-resnet20", "cifar-resnet56", "checkpoint")
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@dataclass
class Teacher:
    spec: str
    arch: str
    net: nn.Module  # expects normalised input at input_size
    classes: list[str]
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    input_size: int = 224
    val_top1: float | None = None  # recorded top-1 on its val data, in percent
    columns: list[int] | None = field(default=None)  # output columns in the data's class order (None: all, as is)

    def __post_init__(self):
        self.model = Normalized(self.net, self.mean, self.std).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    def to(self, device) -> "Teacher":
        self.model.to(device)
        return self

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Logits (float32) for images in [0, 1]; resized (bilinear) to the teacher's input size if needed."""
        if images.shape[-1] != self.input_size or images.shape[-2] != self.input_size:
            images = F.interpolate(images, size=(self.input_size, self.input_size), mode="bilinear",
                                   antialias=True, align_corners=False)
        logits = self.model(images).float()
        return logits if self.columns is None else logits[:, self.columns]

    @property
    def num_outputs(self) -> int:
        return len(self.columns) if self.columns is not None else len(self.classes)


def load_teacher(spec: str, classes: list[str] | None = None, data: str = "the data") -> Teacher:
    """Load the teacher named by ``spec``; with ``classes`` (the data's, which ``data`` names in messages, e.g.
    "the distilled images"), check the class order (ModelError)."""
    kind, sep, value = str(spec).partition(":")
    if not sep or kind not in TEACHER_KINDS or not value:
        raise ModelError(f"--teacher {spec!r}: expected KIND:VALUE with KIND one of {', '.join(TEACHER_KINDS)}")
    if kind == "torchvision":
        teacher = _torchvision_teacher(spec, value)
    elif kind == "checkpoint":
        teacher = _checkpoint_teacher(spec, Path(value).expanduser())
    else:
        teacher = _cifar_teacher(spec, kind, Path(value).expanduser())
    if classes is not None:
        teacher.columns = class_columns(teacher.classes, list(classes), f"--teacher {spec}", data=data)
    return teacher


def _torchvision_teacher(spec: str, name: str) -> Teacher:
    from torchvision import models

    try:
        weights = models.get_model_weights(name).DEFAULT
    except (ValueError, KeyError):
        raise ModelError(f"--teacher {spec!r}: torchvision has no pretrained weights for {name!r}") from None
    try:
        net = models.get_model(name, weights=weights)
    except Exception as exc:  # download or cache failures come in many types
        raise ModelError(f"--teacher {spec!r}: cannot load torchvision weights {weights} ({exc})") from None
    tf = weights.transforms()
    return Teacher(spec, name, net, list(weights.meta["categories"]), tuple(tf.mean), tuple(tf.std),
                   int(tf.crop_size[0]))


def _torch_load(path: Path, spec: str):
    if not path.is_file():
        raise ModelError(f"--teacher {spec!r}: file {path} not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "unsafe pickle"
        raise ModelError(f"{path}: refused, not a plain weights file (weights_only load failed: {first[:160]})") from None
    except Exception as exc:
        raise ModelError(f"{path}: cannot read weights ({exc.__class__.__name__}: {str(exc)[:160]})") from None


def _cifar_teacher(spec: str, kind: str, path: Path) -> Teacher:
    obj = _torch_load(path, spec)
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict):
        raise ModelError(f"{path}: expected a dict with a 'state_dict' of tensors")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    net = create_model(kind, 10, 32)
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelError(f"{path}: weights do not fit {kind} ({str(exc).splitlines()[0][:160]})") from None
    best = obj.get("best_prec1") if isinstance(obj, dict) else None
    return Teacher(spec, kind, net, list(CIFAR10_CLASSES), IMAGENET_MEAN, IMAGENET_STD, 32,
                   float(best) if isinstance(best, (int, float)) and not isinstance(best, bool) else None)


def save_checkpoint(path: Path, net: nn.Module, arch: str, classes: list[str], image_size: int,
                    mean=IMAGENET_MEAN, std=IMAGENET_STD, val_top1: float | None = None, **extra) -> None:
    """Write ``net``'s weights as safetensors with d4m's metadata (JSON under the key 'd4m'), atomically.

    ``val_top1`` is a top-1 in percent (older files hold ``val_accuracy``, see ``recorded_top1``)."""
    meta = {"arch": arch, "classes": list(classes), "image_size": int(image_size), "mean": list(mean),
            "std": list(std), "val_top1": val_top1, **extra}
    if stem(arch, image_size):  # the small-input variant: a file without this mark was trained on the other one
        meta["stem"] = stem(arch, image_size)
    save_tensors(Path(path), {k: v.clone() for k, v in net.state_dict().items()}, meta)


def recorded_top1(meta: dict) -> float | None:
    """A checkpoint's recorded val top-1 in percent: ``val_top1``; older files' ``val_accuracy`` was a fraction
    when ``d4m teacher train`` wrote it (<= 1) and a percentage when ``d4m evaluate`` saved a student."""
    value = meta.get("val_top1")
    if value is None:
        value = meta.get("val_accuracy")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value <= 1.0:
            value = 100.0 * value
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value <= 100.0:
        return None
    return round(float(value), 2)


def read_checkpoint(path: Path) -> tuple[dict, dict]:
    """(state dict, d4m metadata) of a d4m checkpoint file; ModelError if it is not one."""
    if not path.is_file():
        raise ModelError(f"{path}: checkpoint file not found")
    try:
        state, meta = load_tensors(path)
    except D4MError as exc:
        raise ModelError(f"{exc}: not a safetensors checkpoint d4m can read") from None
    if not meta:
        raise ModelError(f"{path}: safetensors file without d4m metadata (arch, classes); not a d4m checkpoint")
    return state, meta


def _checkpoint_teacher(spec: str, path: Path) -> Teacher:
    state, meta = read_checkpoint(path)
    for key in ("arch", "classes", "image_size"):
        if key not in meta:
            raise ModelError(f"{path}: d4m metadata lacks {key!r}")
    kinds = {"arch": str, "classes": list, "image_size": int}
    for key, kind in kinds.items():
        if not isinstance(meta[key], kind) or isinstance(meta[key], bool):
            raise ModelError(f"{path}: d4m metadata {key!r} must be {kind.__name__}, got {meta[key]!r:.60}")
    if not meta["classes"] or not all(isinstance(c, str) for c in meta["classes"]) or meta["image_size"] < 8:
        raise ModelError(f"{path}: d4m metadata needs a non-empty list of class names and an image_size >= 8")
    for key in ("mean", "std"):
        value = meta.get(key, [0.0] * 3)
        if not (isinstance(value, list) and len(value) == 3 and all(isinstance(v, (int, float)) for v in value)):
            raise ModelError(f"{path}: d4m metadata {key!r} must be 3 numbers")
    if meta["arch"] not in MODELS:
        raise ModelError(f"{path}: d4m metadata names an unknown architecture {meta['arch']!r:.60}")
    if meta["image_size"] > MAX_IMAGE_SIZE:
        raise ModelError(f"{path}: d4m metadata image_size {meta['image_size']} is more than d4m runs "
                         f"({MAX_IMAGE_SIZE})")
    try:  # the sizes in the metadata must describe the weights the file holds, checked before anything is built
        need = weight_count(meta["arch"], len(meta["classes"]), meta["image_size"])
    except (ValueError, D4MError) as exc:
        raise ModelError(f"{path}: d4m metadata does not describe a {meta['arch']} ({str(exc)[:160]})") from None
    have = sum(t.numel() for t in state.values())
    if need != have:
        raise ModelError(f"{path}: d4m metadata ({meta['arch']}, {len(meta['classes']):,} classes, "
                         f"{meta['image_size']} px) describes {need:,} weights, the file holds {have:,}")
    if stem(meta["arch"], meta["image_size"]) != meta.get("stem"):  # same weights, other strides: refuse, not guess
        raise ModelError(f"{path}: a {meta['arch']} at {meta['image_size']} px trained before d4m's small-input stem "
                         f"(d4m.models.registry.small_input); retrain it with `d4m teacher train`")
    net = create_model(meta["arch"], len(meta["classes"]), meta["image_size"])
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelError(f"{path}: weights do not fit {meta['arch']} ({str(exc).splitlines()[0][:160]})") from None
    return Teacher(spec, meta["arch"], net, list(meta["classes"]), tuple(meta.get("mean", IMAGENET_MEAN)),
                   tuple(meta.get("std", IMAGENET_STD)), int(meta["image_size"]), recorded_top1(meta))
