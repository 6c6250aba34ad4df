"""K-means on flattened latents, as pure tensor functions (no I/O).

``OnlineKMeans`` is D4M's mini-batch k-means (the official code's scikit-learn MiniBatchKMeans fed by
partial_fit): centres initialised by k-means++ on the first mini-batch, then every mini-batch assigns each point to
its nearest centre and moves the centre by z_c <- (1 - eta) z_c + eta z with eta = 1 / (points absorbed so far).
Unlike the official code, the last, partial mini-batch of a class is used too.

``lloyd_accumulate`` / ``lloyd_update`` are the two halves of one streaming Lloyd iteration ("full" mode): memory
is one batch plus the centres, whatever the number of points.
"""

from __future__ import annotations

import math

import torch


def squared_distances(x: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """[n, d] x [k, d] -> [n, k] squared Euclidean distances (float32 and above, clamped at 0)."""
    x2 = torch.linalg.vector_norm(x, dim=1).square_()[:, None]
    c2 = torch.linalg.vector_norm(centres, dim=1).square_()
    return torch.addmm(x2 + c2, x, centres.T, alpha=-2.0).clamp_min_(0.0)


def assign(x: torch.Tensor, centres: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centre of each point and the squared distance to it."""
    d = squared_distances(x, centres)
    dist, labels = d.min(1)
    return labels, dist


def inertia(x: torch.Tensor, centres: torch.Tensor) -> float:
    """Sum of squared distances of the points to their nearest centre."""
    return float(assign(x, centres)[1].double().sum())


def kmeans_plus_plus(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """Greedy k-means++ seeding (2 + log k candidates per step, as scikit-learn), drawn with ``generator``."""
    n = x.shape[0]
    if n < k:
        raise ValueError(f"k-means++ needs at least k={k} points, got {n}")
    trials = 2 + int(math.log(k))
    first = int(torch.randint(n, (1,), generator=generator))
    centres = [x[first]]
    closest = squared_distances(x, x[first : first + 1])[:, 0].double()
    for _ in range(1, k):
        total = float(closest.sum())
        if total <= 0:  # all remaining points coincide with a centre: take unused ones in order
            used = {int((x == c).all(1).nonzero()[0]) for c in centres}
            nxt = next(i for i in range(n) if i not in used)
            centres.append(x[nxt])
            continue
        u = torch.rand(trials, generator=generator, dtype=torch.float64) * total
        candidates = torch.searchsorted(closest.cumsum(0), u).clamp_max(n - 1)
        cand_d = squared_distances(x, x[candidates]).double()  # [n, trials]
        new_closest = torch.minimum(closest[:, None], cand_d)
        best = int(new_closest.sum(0).argmin())
        centres.append(x[candidates[best]])
        closest = new_closest[:, best]
    return torch.stack(centres).clone()


class OnlineKMeans:
    """One-pass mini-batch k-means with per-centre learning rate 1/count."""

    def __init__(self, k: int, generator: torch.Generator):
        self.k = k
        self.generator = generator
        self.centres: torch.Tensor | None = None
        self.counts: torch.Tensor | None = None
        self.streaming_inertia = 0.0  # sum of squared distances at assignment time
        self.seen = 0

    def partial_fit(self, batch: torch.Tensor) -> "OnlineKMeans":
        batch = batch.float()
        if self.centres is None:
            self.centres = kmeans_plus_plus(batch, self.k, self.generator)
            self.counts = torch.zeros(self.k, dtype=torch.float64, device=batch.device)
        labels, dist = assign(batch, self.centres)
        self.streaming_inertia += float(dist.double().sum())
        self.seen += batch.shape[0]
        sums = torch.zeros_like(self.centres).index_add_(0, labels, batch)
        n = torch.bincount(labels, minlength=self.k).to(torch.float64)
        hit = n > 0
        total = self.counts + n
        # sequential updates with eta = 1/count compose to the count-weighted mean of old centre and new points
        old_w = (self.counts / total.clamp_min(1)).to(batch.dtype)[:, None]
        new = self.centres * old_w + sums / total.clamp_min(1).to(batch.dtype)[:, None]
        self.centres = torch.where(hit[:, None], new, self.centres)
        self.counts = total
        return self


def lloyd_accumulate(x: torch.Tensor, centres: torch.Tensor, sums: torch.Tensor, counts: torch.Tensor) -> float:
    """Add one batch to the running per-centre sums/counts (in place); return the batch's inertia."""
    x = x.float()
    labels, dist = assign(x, centres)
    # sum the batch in float32, accumulate the small per-centre sums in the running (float64) totals
    sums += torch.zeros(centres.shape, dtype=x.dtype, device=x.device).index_add_(0, labels, x).to(sums.dtype)
    counts.add_(torch.bincount(labels, minlength=centres.shape[0]).to(counts.dtype))
    return float(dist.double().sum())


def lloyd_update(centres: torch.Tensor, sums: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """New centres = mean of their points; a centre that received no point stays where it was."""
    mean = sums / counts.clamp_min(1)[:, None].to(sums.dtype)
    return torch.where((counts > 0)[:, None], mean.to(centres.dtype), centres)
