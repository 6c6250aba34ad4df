"""Every setting of the ``d4m`` commands, defined once: flag, meaning, unit, default, and the commands taking it.

Rendered into three places that therefore cannot drift: each command's ``--help`` (``add_flags``), the docstring of
the ``d4m`` function behind it (``documented``; ``help(d4m.distill)`` lists every setting) and README's settings
tables (``markdown_table``; ``python -m d4m.settings distill`` prints one, a test compares README with it).

The distillation commands take their defaults from ``d4m.config.DistillConfig`` and ``generator train`` from
``d4m.generator.train.TrainConfig`` (their flags default to "not given", so a preset or a YAML file can set them);
every other default is the ``default`` here, which the function's signature must repeat (a test checks it).
"""

from __future__ import annotations

import dataclasses

from d4m.settings.base import CONFIG_COMMANDS, FROM_RUN, FUNCTIONS, GT, REQUIRED, Setting
from d4m.settings.distill import DISTILLATION
from d4m.settings.generator import GENERATOR
from d4m.settings.methods import METHODS
from d4m.settings.outputs import OUTPUTS
from d4m.settings.ttm import TTM

__all__ = ["CONFIG_COMMANDS", "FROM_RUN", "FUNCTIONS", "REQUIRED", "SETTINGS", "Setting", "add_flags", "default",
           "documented", "for_command", "help_text", "markdown_table"]

SETTINGS = DISTILLATION + METHODS + TTM + OUTPUTS + GENERATOR



def for_command(command: str) -> list[Setting]:
    return [s for s in SETTINGS if command in s.commands]


def default(setting: Setting, command: str):
    """The value a setting takes when not given: DistillConfig's / TrainConfig's for the commands built on them."""
    if command == "synthesize" and setting.dest not in ("out", "run", "force"):
        return FROM_RUN
    if command in CONFIG_COMMANDS + ("select",) and setting.dest not in ("out", "config", "preset", "run", "device"):
        from d4m.config import DistillConfig

        fields = {f.name: f for f in dataclasses.fields(DistillConfig)}
        if setting.dest in fields:
            return fields[setting.dest].default
    if command == GT:
        from d4m.generator.config import TrainConfig

        fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
        if setting.dest in fields and fields[setting.dest].default is not dataclasses.MISSING:
            return fields[setting.dest].default
    if setting.kwargs.get("required"):
        return REQUIRED
    if setting.kwargs.get("action") == "store_true":
        return False
    return setting.kwargs.get("default")


def _shown(value, setting: Setting | None = None) -> str:
    if value is None:
        return (setting.unset if setting is not None else "") or "none"
    if value is REQUIRED or value is FROM_RUN:
        return value
    if value is False:
        return "off"
    if value is True:
        return "on"
    return repr(value) if isinstance(value, str) else f"{value:g}" if isinstance(value, float) else str(value)


def help_text(setting: Setting, command: str) -> str:
    """The ``--help`` line: meaning [unit] (default ...)."""
    unit = f" [{setting.unit}]" if setting.unit else ""
    value = default(setting, command)
    tail = "" if value is REQUIRED else f" (default: {_shown(value, setting)})"
    return (setting.meaning + unit + tail).replace("%", "%%")


def add_flags(parser, command: str) -> None:
    """Add every setting of ``command`` to an argparse parser."""
    for s in for_command(command):
        parser.add_argument(s.flag, *s.aliases, dest=s.dest, help=help_text(s, command), **s.kwargs)


def docstring_section(command: str) -> str:
    """The settings of ``command`` as a docstring section (name: meaning [unit]; default)."""
    lines = [f"Settings (the flags of ``d4m {command}``, spelled with ``_``):", ""]
    for s in for_command(command):
        unit = f" [{s.unit}]" if s.unit else ""
        value = default(s, command)
        lines.append(f"    {s.name} ({s.flag}): {s.meaning}{unit}. Default: {_shown(value, s)}.")
    return "\n".join(lines)


def documented(command: str):
    """Decorator: append ``command``'s settings to the function's docstring (rendered on first ``help()``)."""
    def wrap(fn):
        fn.__doc__ = (fn.__doc__ or "").rstrip() + "\n\n    " + docstring_section(command).replace("\n", "\n    ")
        fn.__d4m_command__ = command
        return fn
    return wrap


def markdown_table(command: str) -> str:
    """README's table of ``command``'s settings: | flag | meaning | unit | default |."""
    rows = ["| flag | meaning | unit | default |", "|---|---|---|---|"]
    for s in for_command(command):
        meaning = s.meaning.replace("|", "\\|")
        rows.append(f"| `{s.flag}` | {meaning} | {s.unit} | {_shown(default(s, command), s)} |")
    return "\n".join(rows)
