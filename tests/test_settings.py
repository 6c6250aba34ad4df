"""One source of truth for every setting (issue 25 point 2): d4m.settings renders --help, the docstrings and README.

Each command's parser, the docstring of its function and README's table must list the same settings, with the
same defaults the function's signature uses.
"""

import argparse
import inspect
import re
from pathlib import Path

import pytest

import d4m
from d4m import settings
from d4m.cli.main import build_parser
from d4m.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = sorted(settings.FUNCTIONS)


def _subparser(command: str) -> argparse.ArgumentParser:
    parser = build_parser()
    for word in command.split():
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[word]
    return parser


def _flags(parser) -> dict[str, argparse.Action]:
    return {a.option_strings[0]: a for a in parser._actions if not isinstance(a, argparse._HelpAction)}


@pytest.mark.parametrize("command", COMMANDS)
def test_every_flag_has_a_docstring_entry_and_back(command):
    parser_flags = _flags(_subparser(command))
    fn = getattr(d4m, settings.FUNCTIONS[command])
    doc = inspect.getdoc(fn)
    section = doc[doc.index("Settings (the flags of"):]
    documented = re.findall(r"^\s*[\w, ]+ \((--[\w-]+)\): ", section, flags=re.M)
    assert sorted(documented) == sorted(parser_flags), command
    for flag, action in parser_flags.items():
        assert action.help and "(default" in action.help or action.required, (command, flag)
        line = next(x for x in section.splitlines() if f"({flag}):" in x)
        assert "Default: " in line, (command, flag)


@pytest.mark.parametrize("command", COMMANDS)
def test_function_takes_every_setting_with_the_same_default(command):
    fn = getattr(d4m, settings.FUNCTIONS[command])
    params = inspect.signature(fn).parameters
    open_kwargs = any(p.kind is p.VAR_KEYWORD for p in params.values())
    for s in settings.for_command(command):
        for name in s.name.split(", "):
            if name not in params:
                assert open_kwargs, (command, name)  # spelled as a keyword of **settings / **options
                continue
            value = settings.default(s, command)
            p = params[name]
            if value in (settings.REQUIRED, settings.FROM_RUN) or p.default is inspect.Parameter.empty:
                continue
            if command in settings.CONFIG_COMMANDS + ("select", "generator train", "sweep"):
                continue  # None means "not given": DistillConfig / TrainConfig fill it in
            if command == "stm" and p.default is None:
                continue  # d4m.methods.stm's constants (test_stm_defaults_are_the_method_constants)
            assert p.default == value, (command, name, p.default, value)


def test_config_commands_accept_each_setting_by_name():
    from d4m.api.baselines import SELECT_SETTINGS
    from d4m.config import DistillConfig
    from d4m.generator.config import TrainConfig

    fields = set(DistillConfig.__dataclass_fields__)
    for command in settings.CONFIG_COMMANDS:
        for s in settings.for_command(command):
            assert s.dest in fields | {"config", "force", "run"}, (command, s.flag)
    for s in settings.for_command("select"):
        assert s.dest in set(SELECT_SETTINGS) | set(inspect.signature(d4m.select).parameters), s.flag
    train = set(TrainConfig.__dataclass_fields__) | {"resume", "threads"}
    assert {s.dest for s in settings.for_command("generator train")} == train  # and every TrainConfig field


def test_stm_defaults_are_the_method_constants():
    from d4m.methods import stm

    shown = {s.dest: settings.default(s, "stm") for s in settings.for_command("stm")}
    assert (shown["iterations"], shown["lr"], shown["bn_weight"]) == (stm.ITERATIONS, stm.LR, stm.BN_WEIGHT)


def test_readme_tables_are_rendered_from_the_settings():
    """README's settings tables sit between ``<!-- settings: COMMAND -->`` and ``<!-- /settings -->`` markers;
    regenerate one with ``python -m d4m.settings COMMAND``."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    tables = re.findall(r"<!-- settings: ([\w ]+) -->\n(.*?)\n<!-- /settings -->", text, flags=re.S)
    assert {c for c, _ in tables} >= {"distill", "generator train"}
    for command, table in tables:
        assert table.strip() == settings.markdown_table(command), f"README table of {command} is stale"


def test_readme_states_the_prototype_shape_per_codec():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "[classes, IPC, 4, 64, 64] latents" not in text
    assert "32, 8, 8" in text and "4, 64, 64" in text


def test_evaluate_micro_batch_and_its_older_name():
    with pytest.raises(ConfigError, match="not both"):
        d4m.evaluate_run(teacher="t", val="v", micro_batch=8, batch_size=4)
    with pytest.raises(ConfigError, match="--run"):  # the alias is accepted; the next check is the missing run
        d4m.evaluate_run(teacher="t", val="v", batch_size=4)
    args = build_parser().parse_args(["evaluate", "--run", "r", "--teacher", "t", "--val", "v", "--batch-size", "5"])
    assert args.micro_batch == 5
