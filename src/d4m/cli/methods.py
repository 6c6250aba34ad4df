"""``d4m select`` (baselines: random, kcenter, herding; aliases decode and noise-init), ``d4m stm``, ``d4m sweep``.

Every command writes a run directory laid out like ``d4m distill``'s, so ``d4m evaluate`` and ``d4m report``
treat all methods alike.
"""

from __future__ import annotations

from d4m import api
from d4m.settings import add_flags


def cmd_select(args) -> int:
    run = api.select(args.method, args.data, out=args.out, features=args.features, teacher=args.teacher,
                     config=args.config, device=args.device, force=args.force, ipc=args.ipc, codec=args.codec,
                     model=args.model, size=args.size, out_size=args.out_size, seed=args.seed,
                     max_per_class=args.max_per_class, workers=args.workers, strict=args.strict)
    if args.method not in ("decode", "noise-init"):
        print(f"{args.method}: images in {run.images}")
    return 0


def cmd_stm(args) -> int:
    run = api.stm(args.run, args.teacher, args.out, iterations=args.iterations, lr=args.lr, bn_weight=args.bn_weight,
                  batch_size=args.batch_size, seed=args.seed, device=args.device, force=args.force,
                  allow_incomplete=args.allow_incomplete)
    print(f"stm: images in {run.images}")
    return 0


def cmd_sweep(args) -> int:
    """One synthesis per strength in RUN/sweep/strength-S/, each reusing RUN's prototypes (hard link or copy)."""
    for run in api.sweep(args.run, args.strength, batch_size=args.batch_size, force=args.force):
        print(f"strength {run.config['strength']:g}: images in {run.images}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("select", help="baseline run: random / kcenter / herding real images (or decode, noise-init)",
                       description="random: a seeded subset of IPC real images per class; kcenter / herding: a "
                       "coreset on codec latents or teacher features. decode = `d4m distill --generator none`, "
                       "noise-init = `d4m distill --init noise` (Table 4 'w/o PT').")
    add_flags(p, "select")
    p.set_defaults(func=cmd_select)

    p = sub.add_parser("stm", help="Table 3 STM: optimise a run's images to match the teacher's BN statistics")
    add_flags(p, "stm")
    p.set_defaults(func=cmd_stm)

    p = sub.add_parser("sweep", help="strength sweep: RUN/sweep/strength-S/ per value, reusing RUN's prototypes")
    add_flags(p, "sweep")
    p.set_defaults(func=cmd_sweep)
