"""d4m as a library: one function per command, taking the flags' settings as arguments.

The functions compose the stage packages (``d4m.data`` ... ``d4m.report``); no stage imports this package, and
the ``d4m`` command only parses flags and calls these. Every name here is also importable from ``d4m`` itself
(the names differ from the stage packages' ``d4m.prototypes``, ``d4m.evaluate`` and ``d4m.report``)::

    import d4m
    run = d4m.distill("folder:/data/train", ipc=10, out="runs/x")
    card = d4m.evaluate_run(run, teacher="cifar-resnet20:FILE", val="cifar10:~/data", seeds=3, card=True)
"""

from d4m.api.baselines import select, stm
from d4m.api.evaluation import eval_teacher, evaluate_run, relabel, subset, train_teacher
from d4m.api.generators import sample_generator, train_generator
from d4m.api.reporting import export, make_report
from d4m.api.run import Run
from d4m.api.stages import distill, find_prototypes, sweep, synthesize
from d4m.api.typecheck import checked

# every public function checks its arguments' types first: a wrong one is a one-line ConfigError, not a TypeError
(distill, find_prototypes, synthesize, sweep, select, stm, relabel, evaluate_run, train_teacher, eval_teacher, subset,
 make_report, export, train_generator, sample_generator) = map(checked, (
    distill, find_prototypes, synthesize, sweep, select, stm, relabel, evaluate_run, train_teacher, eval_teacher,
    subset, make_report, export, train_generator, sample_generator))

__all__ = ["Run", "distill", "find_prototypes", "synthesize", "sweep", "select", "stm", "relabel", "evaluate_run",
           "train_teacher", "eval_teacher", "subset", "make_report", "export", "train_generator", "sample_generator"]
