"""The report's t-SNE shows its iterations as a progress bar (issue 25) and computes what it computed before."""

import numpy as np


def test_tsne_shows_progress_and_is_unchanged(capsys):
    from sklearn.manifold import TSNE

    from d4m.report.figures import tsne_embedding

    x = np.random.RandomState(0).randn(60, 8).astype(np.float32)
    xy = tsne_embedding(x, seed=0)
    err = capsys.readouterr()
    assert "t-SNE of 60 points" in err.err and "1000/1000" in err.err and "[t-SNE]" not in err.out
    plain = TSNE(n_components=2, perplexity=float(min(30.0, max(2.0, 59 / 3))), init="pca",
                 random_state=0).fit_transform(x)
    assert np.allclose(xy, plain)
