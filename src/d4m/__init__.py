"""d4m: dataset distillation with a pretrained latent diffusion model (D4M, Su et al., CVPR 2024).

The public functions (``d4m.distill``, ``d4m.evaluate_run``, ``d4m.export``, ...) live in ``d4m.api`` and are loaded
on first use, so ``import d4m`` stays cheap::

    import d4m
    run = d4m.distill("folder:/data/train", ipc=10, out="runs/x")
    run.images, run.manifest(), run.config
"""

__version__ = "0.1.0"

# the names differ from the stage packages (d4m.prototypes, d4m.evaluate, d4m.report), which importing a stage
# would otherwise bind over them
API = ("Run", "distill", "find_prototypes", "synthesize", "sweep", "select", "stm", "relabel", "evaluate_run",
       "train_teacher", "eval_teacher", "subset", "make_report", "export", "train_generator", "sample_generator")
__all__ = [*API, "__version__"]


def __getattr__(name: str):
    if name in API:
        from d4m import api

        return getattr(api, name)
    raise AttributeError(f"module 'd4m' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *API])
