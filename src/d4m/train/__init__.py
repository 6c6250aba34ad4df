"""Training students on distilled images with soft labels (TTM)."""

from d4m.train.loop import lr_at, make_optimizer, summarise, train_student
from d4m.train.recipe import BUILTIN, Recipe, load_recipe, recipe_from_dict

__all__ = ["train_student", "make_optimizer", "lr_at", "summarise", "Recipe", "load_recipe", "recipe_from_dict",
           "BUILTIN"]
