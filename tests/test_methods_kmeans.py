"""k-means on raw inputs: outputs, determinism per seed, explicit n_init, bad params."""
import numpy as np
import pytest

from dcrepro.methods import RunContext, get_method


class _Data:
    def __init__(self):
        rng = np.random.default_rng(0)
        self.y = np.repeat(np.arange(3), 50)
        self.X = (rng.normal(size=(150, 4, 4, 1)) * 10 + self.y[:, None, None, None] * 60 + 20).clip(0, 255).astype(np.uint8)
        self.n_classes = 3


def test_kmeans_recovers_blobs_and_is_deterministic():
    from dcrepro.metrics import acc

    fn = get_method("kmeans")
    a = fn(_Data(), {"n_init": 2}, RunContext(seed=3, n_clusters=3))["kmeans"]
    b = fn(_Data(), {"n_init": 2}, RunContext(seed=3, n_clusters=3))["kmeans"]
    assert (a.labels == b.labels).all()
    assert acc(_Data().y, a.labels) == 1.0
    assert a.info["n_iter"] >= 1


def test_kmeans_bad_param_names_valid_ones():
    with pytest.raises(ValueError, match="valid parameters: .*n_init"):
        get_method("kmeans")(_Data(), {"ninit": 2}, RunContext(seed=0, n_clusters=3))
