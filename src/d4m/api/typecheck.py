"""Arguments of the public functions checked against their annotations before any work (rule: no traceback).

``checked(fn)`` wraps a ``d4m.api`` function: a missing or unknown argument, or a value of the wrong type
(``ipc="10"``, ``out=None``, ``epochs=[1]``), is a one-line ``ConfigError`` naming the function and the argument,
never a ``TypeError`` from deep inside. Integers are accepted where a float is expected; ``bool`` is never an int;
``Path`` accepts anything ``os.PathLike`` (a ``d4m.Run`` included).
"""

from __future__ import annotations

import functools
import inspect
import numbers
import os
import types
import typing
from pathlib import Path

from d4m.errors import ConfigError


def matches(value, hint) -> bool:
    """``value`` fits the annotation ``hint`` (unknown annotations accept anything)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is typing.Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(matches(value, a) for a in args)
    if hint is None or hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint is Path:
        return isinstance(value, os.PathLike)
    if origin in (list, tuple, set):
        return isinstance(value, (list, tuple)) and all(matches(v, args[0]) for v in value) if args else \
            isinstance(value, (list, tuple))
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


def describe(hint) -> str:
    """'an int or None', 'a str or a path', ... for the message."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(dict.fromkeys(describe(a) for a in args))
    names = {bool: "True or False", int: "an int", float: "a number", str: "a str", Path: "a path",
             type(None): "None", dict: "a dict"}
    if hint in names:
        return names[hint]
    if origin in (list, tuple, set):
        return f"a list of {describe(args[0]).split(' ', 1)[-1]}s" if args else "a list"
    return f"a {getattr(hint, '__name__', str(hint))}"


def check_value(where: str, name: str, value, hint) -> None:
    if not matches(value, hint):
        shown = repr(value)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        raise ConfigError(f"{where}: {name}={shown} must be {describe(hint)}, not {type(value).__name__}")


def checked(fn):
    """``fn`` with its arguments checked against its annotations first (see the module's docstring)."""
    signature = inspect.signature(fn)
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # noqa: BLE001 - an annotation that cannot be resolved is simply not checked
        hints = {}
    where = f"d4m.{fn.__name__}"

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        for name, value in bound.arguments.items():
            kind = signature.parameters[name].kind
            if name in hints and kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL):
                check_value(where, name, value, hints[name])
        return fn(*args, **kwargs)

    return wrapper
