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


def _stream_with_outliers(seed=0, n=1000, d=8):
    """Three blobs and, in the first mini-batch, a few far outliers that k-means++ picks as centres."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(3, d, generator=g) * 4
    x = centres[torch.randint(3, (n,), generator=g)] + torch.randn(n, d, generator=g)
    x[[5, 17, 33]] = torch.randn(3, d, generator=g) * 40
    return x


@pytest.mark.parametrize("batch", [100, 60])
def test_km_reassign_follows_minibatch_kmeans_step_by_step(batch):
    """--km-reassign: the same stream through sklearn's partial_fit (same init, same random draws) and d4m."""
    from d4m.prototypes.kmeans import kmeans_plus_plus

    k, x = 10, _stream_with_outliers()
    init = kmeans_plus_plus(x[:batch].float(), k, torch.Generator().manual_seed(1))
    draws = np.random.RandomState(0)  # sklearn's random_state=0 is used by nothing but the reassignment draws
    ours = OnlineKMeans(k, torch.Generator().manual_seed(1), reassign_ratio=0.01,
                        choose=lambda n, m: draws.choice(n, replace=False, size=m))
    plain = OnlineKMeans(k, torch.Generator().manual_seed(1))
    sk = MiniBatchKMeans(n_clusters=k, init=init.numpy(), n_init=1, random_state=0, batch_size=batch,
                         reassignment_ratio=0.01)
    for i in range(0, len(x) - batch + 1, batch):
        ours.partial_fit(x[i : i + batch])
        plain.partial_fit(x[i : i + batch])
        sk.partial_fit(x[i : i + batch].numpy())
        np.testing.assert_allclose(ours.centres.numpy(), sk.cluster_centers_, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(ours.counts.numpy(), sk._counts, rtol=1e-6)
    assert ours.reassigned >= 3  # the outlier centres moved (the check would be vacuous otherwise)
    assert not torch.allclose(plain.centres, ours.centres, atol=1e-2)  # and without the option they stay


def test_reassign_small_uses_at_most_half_the_batch():
    from d4m.prototypes.kmeans import reassign_small

    centres = torch.zeros(5, 2)
    counts = torch.tensor([0.0, 0.0, 3.0, 0.0, 500.0], dtype=torch.float64)
    batch = torch.arange(8.0).view(4, 2) + 1
    new, new_counts, moved = reassign_small(centres, counts, batch, 0.01, lambda n, m: list(range(m)))
    assert moved == 2  # 4 nearly empty centres, a batch of 4: only 2, the smallest counts first (ties by index)
    assert torch.equal(new[:2], batch[:2]) and torch.equal(new[2:], centres[2:])
    assert new_counts.tolist() == [0.0, 0.0, 3.0, 0.0, 500.0]  # the moved ones take the smallest kept count (0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run on the lent GPU machine)")
def test_online_kmeans_on_cuda_with_a_cpu_generator_matches_the_cpu_run():
    # the prototype stage seeds k-means with a CPU generator whatever the device; the latents may live on the GPU
    x = blobs(k=10)
    runs = {}
    for dev in ("cpu", "cuda"):
        km = OnlineKMeans(10, torch.Generator().manual_seed(0), reassign_ratio=0.01)
        for i in range(0, len(x), 100):
            km.partial_fit(x[i : i + 100].to(dev))
        assert km.centres.device.type == dev
        runs[dev] = km
    assert torch.equal(runs["cpu"].counts, runs["cuda"].counts.cpu())
    assert torch.allclose(runs["cpu"].centres, runs["cuda"].centres.cpu(), atol=1e-4)
