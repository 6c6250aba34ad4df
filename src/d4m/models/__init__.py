"""Students (``create_model``) and teachers (``load_teacher``)."""

from d4m.models.classes import class_columns, normalise
from d4m.models.registry import IMAGENET_MEAN, IMAGENET_STD, MODELS, Normalized, create_model
from d4m.models.teachers import Teacher, load_teacher, read_checkpoint, save_checkpoint

__all__ = ["MODELS", "create_model", "Normalized", "IMAGENET_MEAN", "IMAGENET_STD", "Teacher", "load_teacher",
           "save_checkpoint", "read_checkpoint", "class_columns", "normalise"]
