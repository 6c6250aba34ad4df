"""``d4m`` entry point: one sub-command per stage, user errors as one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import threading

from d4m import __version__
from d4m.errors import D4MError, missing_package

# Each module defines ``register(subparsers)``, adding sub-commands whose ``func(args) -> int`` does the work.
COMMAND_MODULES = ("d4m.cli.distill", "d4m.cli.ttm", "d4m.cli.methods", "d4m.cli.report", "d4m.cli.generator")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="d4m", description="Dataset distillation via disentangled diffusion (D4M).")
    parser.add_argument("--version", action="version", version=f"d4m {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging and full tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        module.register(sub)
    return parser


def with_sigint_deferred(fn):
    """``fn()`` with Ctrl-C held back until it returns, then raised as KeyboardInterrupt.

    For torch's start-up: a KeyboardInterrupt raised inside its C++ import code escapes as a C++ exception and aborts
    the process (SIGABRT, seen once in CI) instead of exiting 130. Off the main thread, or where SIGINT does not
    raise KeyboardInterrupt (ignored, as under ``nohup ... &``, or handled by the caller), ``fn`` simply runs."""
    if threading.current_thread() is not threading.main_thread():
        return fn()
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return fn()
    seen = []
    previous = signal.signal(signal.SIGINT, lambda *_: seen.append(True))
    try:
        result = fn()
    finally:
        signal.signal(signal.SIGINT, previous)
    if seen:
        raise KeyboardInterrupt
    return result


def main(argv: list[str] | None = None) -> int:
    """Run one command; a user error is one line on stderr (exit 2), Ctrl-C at any moment exits 130."""
    verbose = False
    try:
        with_sigint_deferred(lambda: importlib.import_module("torch"))
        parser = build_parser()
        args = parser.parse_args(argv)
        verbose = args.verbose
        logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="d4m: %(message)s")
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        return int(args.func(args) or 0)
    except D4MError as exc:
        if verbose:
            raise
        print(f"d4m: error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:  # an optional package (or a broken install): one line naming what to install
        if args.verbose or (exc.name or "").split(".")[0] in ("d4m", ""):
            raise
        print(f"d4m: error: {missing_package(exc, f'`d4m {args.command}`')}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("d4m: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
