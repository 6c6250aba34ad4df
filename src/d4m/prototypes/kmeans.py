"""K-means on flattened latents, as pure tensor functions (no I/O).

``OnlineKMeans`` is D4M's mini-batch k-means (the official code's scikit-learn MiniBatchKMeans fed by
partial_fit): centres initialised by k-means++ on the first mini-batch, then every mini-batch assigns each point to
its nearest centre and moves the centre by z_c <- (1 - eta) z_c + eta z with eta = 1 / (points absorbed so far).
Unlike the official code, the last, partial mini-batch of a class is used too.

With ``reassign_ratio`` > 0 (``--km-reassign``), ``partial_fit`` also does what scikit-learn's does by default
(reassignment_ratio 0.01) and d4m's plain update leaves out: ``reassign_small`` moves nearly empty centres onto
random points of the mini-batch, on sklearn's schedule (``reassign_due``).

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
        # drawn on the generator's device (a CPU generator for data on a GPU), so every device draws the same u
        u = torch.rand(trials, generator=generator, dtype=torch.float64, device=generator.device) * total
        u = u.to(closest.device)
        candidates = torch.searchsorted(closest.cumsum(0), u).clamp_max(n - 1)
        cand_d = squared_distances(x, x[candidates]).double()  # [n, trials]
        new_closest = torch.minimum(closest[:, None], cand_d)
        best = int(new_closest.sum(0).argmin())
        centres.append(x[candidates[best]])
        closest = new_closest[:, best]
    return torch.stack(centres).clone()


def reassign_due(counts: torch.Tensor, since: int, step: int, k: int) -> tuple[bool, int]:
    """sklearn's schedule, checked before each mini-batch: (reassign after it?, points counted since the last one).

    ``step`` is sklearn's ``_batch_size``: min(batch_size, first mini-batch), added once per mini-batch; a
    reassignment is due once 10 k points have passed, or whenever a centre has no point yet.
    """
    since += step
    if bool((counts == 0).any()) or since >= 10 * k:
        return True, 0
    return False, since


def reassign_small(centres: torch.Tensor, counts: torch.Tensor, batch: torch.Tensor, ratio: float,
                   choose) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Centres whose count is below ``ratio`` x the largest move onto distinct random points of ``batch``.

    At most half the mini-batch is used (the centres with the smallest counts win; ties by index). The moved
    centres' counts become the smallest count of those kept, so they are not moved again at once (sklearn's rule,
    which also slows their learning rate). ``choose(n, m)`` draws m distinct indices of n. Returns
    (centres, counts, number moved).
    """
    small = counts < ratio * counts.max()
    half = int(0.5 * batch.shape[0])
    if int(small.sum()) > 0.5 * batch.shape[0]:
        small[torch.argsort(counts, stable=True)[half:]] = False
    moved = int(small.sum())
    centres, counts = centres.clone(), counts.clone()
    if moved:
        picks = torch.as_tensor(choose(batch.shape[0], moved), dtype=torch.long, device=batch.device)
        centres[small] = batch[picks].to(centres.dtype)
    if bool((~small).any()):
        counts[small] = counts[~small].min()
    return centres, counts, moved


class OnlineKMeans:
    """One-pass mini-batch k-means with per-centre learning rate 1/count; optional sklearn-style reassignment.

    ``batch_size`` is the nominal mini-batch (sklearn's ``batch_size``; default: the first mini-batch's size) and
    ``choose(n, m)`` the reassignment's draw of m distinct points (default: a permutation from ``generator``).
    """

    def __init__(self, k: int, generator: torch.Generator, reassign_ratio: float = 0.0,
                 batch_size: int | None = None, choose=None):
        self.k = k
        self.generator = generator
        self.centres: torch.Tensor | None = None
        self.counts: torch.Tensor | None = None
        self.streaming_inertia = 0.0  # sum of squared distances at assignment time
        self.seen = 0
        self.reassign_ratio, self.batch_size = float(reassign_ratio), batch_size
        self.choose = choose or (lambda n, m: torch.randperm(n, generator=self.generator)[:m])
        self.since_reassign = 0
        self.reassigned = 0  # centres moved so far

    def partial_fit(self, batch: torch.Tensor) -> "OnlineKMeans":
        batch = batch.float()
        if self.centres is None:
            self.centres = kmeans_plus_plus(batch, self.k, self.generator)
            self.counts = torch.zeros(self.k, dtype=torch.float64, device=batch.device)
            self.batch_size = min(self.batch_size or batch.shape[0], batch.shape[0])
        due = False
        if self.reassign_ratio > 0:
            due, self.since_reassign = reassign_due(self.counts, self.since_reassign, self.batch_size, self.k)
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
        if due:
            self.centres, self.counts, moved = reassign_small(self.centres, self.counts, batch, self.reassign_ratio,
                                                              self.choose)
            self.reassigned += moved
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
