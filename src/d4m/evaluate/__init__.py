"""Evaluation of distilled images on the real validation set, and the D4M-G class subset."""

from d4m.evaluate.run import EvalJob, label_set_name, run_evaluation, summary_table
from d4m.evaluate.subset import make_subset, read_wnids
from d4m.evaluate.val import DEFAULT_SIZE, ValSet, default_image_size, val_transform

__all__ = ["EvalJob", "run_evaluation", "summary_table", "label_set_name", "make_subset", "read_wnids",
           "DEFAULT_SIZE", "ValSet", "default_image_size", "val_transform"]
