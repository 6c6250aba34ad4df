"""Baselines and ablations beside D4M: coreset selection (pure math), teacher features, BN-statistics matching."""

from d4m.methods.select import herding, kcenter_greedy, random_subset

__all__ = ["herding", "kcenter_greedy", "random_subset"]
