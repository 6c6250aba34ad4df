"""``d4m distill`` (both stages), ``d4m prototypes`` (stage 1) and ``d4m synthesize`` (stage 2)."""

from __future__ import annotations

import argparse
import logging

from d4m.config import DistillConfig
from d4m.settings import add_flags

log = logging.getLogger(__name__)


CLI_KEYS = {f for f in DistillConfig.__dataclass_fields__} - {"extras"}


def _given(args: argparse.Namespace) -> dict:
    return {k: v for k, v in vars(args).items() if k in CLI_KEYS and v is not None}


def register(sub) -> None:
    for name, helptext in (("distill", "prototypes then synthesis: dataset -> distilled images"),
                           ("prototypes", "stage 1: encode the dataset and cluster each class into IPC prototypes"),
                           ("synthesize", "stage 2: denoise a run's prototypes into images")):
        p = sub.add_parser(name, help=helptext, description=helptext)
        add_flags(p, name)  # every flag, its meaning, unit and default: d4m.settings
        p.set_defaults(func=run_command, stage=name)


def run_command(args: argparse.Namespace) -> int:
    from d4m import api

    given = _given(args)
    if args.stage == "synthesize":
        run = api.synthesize(args.run, force=args.force, **given)
    else:
        stage = api.distill if args.stage == "distill" else api.find_prototypes
        run = stage(config=args.config, force=args.force, **given)
    log.debug("%s: %s", args.stage, run.path)
    return 0
