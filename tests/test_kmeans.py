"""d4m's k-means against scikit-learn on the same data (inertia within 5%), and its streaming invariants."""

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans, MiniBatchKMeans

from d4m.prototypes.kmeans import OnlineKMeans, inertia, kmeans_plus_plus, lloyd_accumulate, lloyd_update


def blobs(n=1300, d=256, k=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(k, d, generator=g) * 3
    labels = torch.randint(k, (n,), generator=g)
    return centres[labels] + torch.randn(n, d, generator=g)


def sk_inertia(x, centres):
    return inertia(x, torch.as_tensor(centres, dtype=torch.float32))


@pytest.mark.parametrize("k", [10, 50])
def test_online_matches_minibatch_kmeans(k):
    x = blobs(k=10 if k == 10 else 40)
    batch = 10 * k
    km = OnlineKMeans(k, torch.Generator().manual_seed(0))
    for i in range(0, len(x), batch):
        km.partial_fit(x[i : i + batch])
    ours = inertia(x, km.centres)
    sk = MiniBatchKMeans(n_clusters=k, random_state=0, batch_size=batch, n_init="auto")
    for i in range(0, len(x) - batch + 1, batch):  # the official pattern: full buffers only
        sk.partial_fit(x[i : i + batch].numpy())
    theirs = sk_inertia(x, sk.cluster_centers_)
    assert ours <= 1.05 * theirs, (ours, theirs)
    assert km.seen == len(x)  # no point left out, the last partial mini-batch included
    assert float(km.counts.sum()) == len(x)


def test_full_streaming_lloyd_matches_kmeans():
    x = blobs(k=10)
    g = torch.Generator().manual_seed(0)
    centres = kmeans_plus_plus(x, 10, g)
    for _ in range(30):
        sums = torch.zeros_like(centres, dtype=torch.float64)
        counts = torch.zeros(10, dtype=torch.float64)
        for i in range(0, len(x), 128):  # streamed in batches: the full data is never concatenated
            lloyd_accumulate(x[i : i + 128], centres, sums, counts)
        centres = lloyd_update(centres, sums, counts)
    ours = inertia(x, centres)
    sk = KMeans(n_clusters=10, random_state=0, n_init=1).fit(x.numpy())
    assert ours <= 1.05 * sk_inertia(x, sk.cluster_centers_)


def test_online_update_is_the_count_weighted_mean():
    x = torch.tensor([[0.0], [10.0], [1.0], [11.0], [2.0], [12.0]])
    km = OnlineKMeans(2, torch.Generator().manual_seed(0))
    km.partial_fit(x[:2])
    km.partial_fit(x[2:])
    got = sorted(km.centres[:, 0].tolist())
    np.testing.assert_allclose(got, [1.0, 11.0], atol=1e-6)  # eta = 1/count: each centre is its points' mean
    assert km.counts.tolist() in ([3.0, 3.0],)


def test_kmeans_plus_plus_is_seeded():
    x = blobs(n=300, d=16)
    a = kmeans_plus_plus(x, 5, torch.Generator().manual_seed(1))
    b = kmeans_plus_plus(x, 5, torch.Generator().manual_seed(1))
    c = kmeans_plus_plus(x, 5, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
