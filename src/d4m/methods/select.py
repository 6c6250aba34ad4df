"""Coreset selection on feature vectors: seeded random subset, greedy k-center, herding. Pure tensor math.

Every function takes ``x`` [n, d] (one class's features) and returns ``k`` distinct row indices in the order they
were chosen; none depends on the order of rows beyond ties (broken by the lowest index).
"""

from __future__ import annotations

import torch


def _check(x: torch.Tensor, k: int) -> None:
    if x.ndim != 2:
        raise ValueError(f"features must be [n, d], got shape {tuple(x.shape)}")
    if not 1 <= k <= x.shape[0]:
        raise ValueError(f"cannot select {k} of {x.shape[0]} points")


def random_subset(n: int, k: int, generator: torch.Generator) -> list[int]:
    """``k`` distinct indices of ``range(n)`` drawn with ``generator``."""
    if not 1 <= k <= n:
        raise ValueError(f"cannot select {k} of {n} points")
    return torch.randperm(n, generator=generator)[:k].tolist()


def kcenter_greedy(x: torch.Tensor, k: int, first: int | None = None) -> list[int]:
    """Greedy k-center (Sener & Savarese 2018): start at ``first`` (default: the point nearest the mean), then
    repeatedly add the point farthest from its nearest chosen centre (a 2-approximation of the minimax cover)."""
    _check(x, k)
    x = x.double()
    if first is None:
        first = int(torch.cdist(x.mean(0, keepdim=True), x).argmin())
    chosen = [int(first)]
    nearest = torch.cdist(x[first : first + 1], x)[0]
    for _ in range(k - 1):
        nearest[chosen] = -1.0
        nxt = int(nearest.argmax())
        chosen.append(nxt)
        nearest = torch.minimum(nearest, torch.cdist(x[nxt : nxt + 1], x)[0])
    return chosen


def herding(x: torch.Tensor, k: int) -> list[int]:
    """Herding (Welling 2009, as iCaRL uses it): greedily choose the point that keeps the mean of the chosen set
    closest to the class mean, without replacement."""
    _check(x, k)
    x = x.double()
    mu = x.mean(0)
    chosen: list[int] = []
    total = torch.zeros_like(mu)
    taken = torch.zeros(x.shape[0], dtype=torch.bool)
    for t in range(1, k + 1):
        dist = ((mu - (total + x) / t) ** 2).sum(1)
        dist[taken] = float("inf")
        i = int(dist.argmin())
        chosen.append(i)
        taken[i] = True
        total += x[i]
    return chosen


def coverage_radius(x: torch.Tensor, chosen: list[int]) -> float:
    """The largest distance from a point to its nearest chosen point (what k-center minimises)."""
    return float(torch.cdist(x.double(), x[chosen].double()).min(1).values.max())
