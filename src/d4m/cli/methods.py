"""``d4m select`` (baselines: random, kcenter, herding; aliases decode and noise-init), ``d4m stm``, ``d4m sweep``.

Every command writes a run directory laid out like ``d4m distill``'s, so ``d4m evaluate`` and ``d4m report``
treat all methods alike.
"""

from __future__ import annotations

from d4m import api


def cmd_select(args) -> int:
    run = api.select(args.method, args.data, out=args.out, features=args.features, teacher=args.teacher,
                     config=args.config, device=args.device, force=args.force, ipc=args.ipc, codec=args.codec,
                     model=args.model, size=args.size, out_size=args.out_size, seed=args.seed,
                     max_per_class=args.max_per_class, workers=args.workers)
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
    p.add_argument("--method", required=True, choices=("random", "kcenter", "herding", "decode", "noise-init"))
    p.add_argument("--data", required=True, help="real training data KIND:PATH")
    p.add_argument("--ipc", type=int, help="images per class (default 10)")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--codec", help="codec for --features codec and decode: model | vae:PATH | taef2 | taef2:DIR")
    p.add_argument("--model", help="diffusers model (codec model, noise-init)")
    p.add_argument("--size", type=int, help="encode resolution for codec features (default 512)")
    p.add_argument("--out-size", type=int, help="output resolution (default: the dataset's)")
    p.add_argument("--features", default="codec", choices=("codec", "teacher"), help="kcenter / herding space")
    p.add_argument("--teacher", help="teacher SPEC for --features teacher")
    p.add_argument("--max-per-class", type=int, help="candidates: a seeded subset of at most N images per class")
    p.add_argument("--seed", type=int)
    p.add_argument("--config", help="YAML config (decode / noise-init only)")
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, help="data-loader workers for encoding")
    p.add_argument("--force", action="store_true", help="overwrite a run made with another configuration")
    p.set_defaults(func=cmd_select)

    from d4m.methods.stm import BN_WEIGHT, ITERATIONS, LR

    p = sub.add_parser("stm", help="Table 3 STM: optimise a run's images to match the teacher's BN statistics")
    p.add_argument("--run", required=True, help="source run (its images/ are the starting point)")
    p.add_argument("--teacher", required=True, help="teacher SPEC with BatchNorm layers (e.g. cifar-resnet20:FILE)")
    p.add_argument("--out", required=True, help="new run directory")
    p.add_argument("--iterations", type=int, default=ITERATIONS, help=f"Adam steps per batch (default {ITERATIONS})")
    p.add_argument("--lr", type=float, default=LR, help=f"Adam learning rate on pixels in [0, 1] (default {LR})")
    p.add_argument("--bn-weight", type=float, default=BN_WEIGHT, help=f"weight of the BN loss (default {BN_WEIGHT})")
    p.add_argument("--batch-size", type=int, default=100, help="images optimised together (default 100)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--force", action="store_true")
    p.add_argument("--allow-incomplete", action="store_true",
                   help="start from a --run whose images do not match its manifest (a warning per problem)")
    p.set_defaults(func=cmd_stm)

    p = sub.add_parser("sweep", help="strength sweep: RUN/sweep/strength-S/ per value, reusing RUN's prototypes")
    p.add_argument("--run", required=True, help="run with prototypes.safetensors")
    p.add_argument("--strength", required=True, help="comma-separated list, e.g. 0.5,0.7,0.9")
    p.add_argument("--batch-size", type=int, help="synthesis batch")
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=cmd_sweep)
