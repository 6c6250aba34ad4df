"""The ``Setting`` record and the names the tables of ``d4m.settings`` share (no torch, no d4m imports)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

REQUIRED = "required"
FROM_RUN = "the run's config.yaml"  # synthesize: every setting not given keeps the value its --run recorded
CONFIG_COMMANDS = ("distill", "prototypes", "synthesize")
# command -> the public function of d4m.api behind it
FUNCTIONS = {"distill": "distill", "prototypes": "find_prototypes", "synthesize": "synthesize", "sweep": "sweep",
             "select": "select", "stm": "stm", "relabel": "relabel", "evaluate": "evaluate_run",
             "subset": "subset", "report": "make_report", "export": "export", "generator train": "train_generator",
             "generator sample": "sample_generator", "teacher train": "train_teacher",
             "teacher eval": "eval_teacher"}
_D = ("distill", "prototypes", "synthesize")
_P = ("distill", "prototypes")
_S = ("distill", "synthesize")
_RE = ("relabel", "evaluate")
GT, GS = "generator train", "generator sample"
TT, TE = "teacher train", "teacher eval"
PRESETS_HELP = "named paper setting (src/d4m/presets/*.yaml): cifar10-ipc10, cifar100-ipc50, imagenet-ipc10, ..."


@dataclass(frozen=True)
class Setting:
    flag: str
    meaning: str
    commands: tuple[str, ...]
    unit: str = ""
    kwargs: dict = field(default_factory=dict)  # argparse: type, action, default, required, choices, nargs, ...
    param: str | None = None  # the function's parameter, where its name is not the flag's
    aliases: tuple[str, ...] = ()  # older spellings of the flag, still accepted
    unset: str = ""  # what "not given" means, where the default is None (e.g. "all", "the dataset's")

    @property
    def name(self) -> str:
        return self.param or self.flag[2:].replace("-", "_")

    @property
    def dest(self) -> str:
        return self.flag[2:].replace("-", "_")


def S(flag, meaning, commands, unit="", param=None, aliases=(), unset="", **kwargs) -> Setting:  # noqa: N802
    return Setting(flag, meaning, tuple(commands), unit, kwargs, param, tuple(aliases), unset)

