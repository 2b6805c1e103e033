import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from dcrepro.metrics import METRICS, acc, ari, confusion, evaluate, get_metric, nmi


def test_acc_hand_computed():
    # classes 0,0,1,1,2,2 ; clusters permuted and one error: best map 5 -> 0, 3 -> 1, 4 -> 2
    y = [0, 0, 1, 1, 2, 2]
    p = [5, 5, 3, 4, 4, 4]
    assert acc(y, p) == pytest.approx(5 / 6)


def test_acc_invariant_to_label_permutation():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 5000)
    p = np.where(rng.random(5000) < 0.3, rng.integers(0, 10, 5000), y)
    perm = rng.permutation(10)
    assert acc(y, p) == pytest.approx(acc(y, perm[p]))
    assert acc(y, perm[y]) == 1.0


def test_acc_rectangular_more_and_fewer_clusters():
    y = np.array([0, 0, 0, 1, 1, 1])
    # 3 clusters for 2 classes: cluster 2 maps to nothing -> its sample counts as an error
    assert acc(y, [0, 0, 2, 1, 1, 1]) == pytest.approx(5 / 6)
    # 1 cluster for 2 classes: only one class can be matched
    assert acc(y, [0] * 6) == pytest.approx(0.5)


def test_nmi_variants_match_sklearn():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 5, 1000)
    p = np.where(rng.random(1000) < 0.4, rng.integers(0, 7, 1000), y)
    assert nmi(y, p) == pytest.approx(normalized_mutual_info_score(y, p))
    assert nmi(y, p, "geometric") == pytest.approx(normalized_mutual_info_score(y, p, average_method="geometric"))
    assert nmi(y, p, "geometric") != pytest.approx(nmi(y, p))  # the two normalisations really differ here
    with pytest.raises(ValueError, match="arithmetic"):
        nmi(y, p, "max-ish")


def test_nmi_hand_computed():
    # perfect split of a balanced 2-class problem into 2 clusters: NMI 1; independent: 0
    assert nmi([0, 0, 1, 1], [1, 1, 0, 0]) == pytest.approx(1.0)
    assert nmi([0, 1, 0, 1], [0, 0, 1, 1]) == pytest.approx(0.0, abs=1e-12)


def test_ari_matches_sklearn_and_confusion_counts():
    y = [0, 0, 1, 1, 2, 2, 2]
    p = [1, 1, 0, 0, 0, 2, 2]
    assert ari(y, p) == pytest.approx(adjusted_rand_score(y, p))
    c = confusion(y, p)
    assert c.sum() == 7 and c.shape == (3, 3)
    assert c.tolist() == [[0, 2, 0], [2, 0, 0], [1, 0, 2]]


def test_metric_registry_facts():
    assert get_metric("acc").higher_is_better and get_metric("acc").scale == "fraction"
    assert not get_metric("time_s").higher_is_better
    with pytest.raises(KeyError, match="valid metrics"):
        get_metric("f1")
    assert set(evaluate([0, 1], [1, 0])) >= {"acc", "nmi", "nmi_geo", "ari"}


def test_confusion_matches_sklearn_on_140k_labels():
    from sklearn.metrics.cluster import contingency_matrix

    rng = np.random.default_rng(2)
    y = rng.integers(0, 20, 140_000)
    p = rng.integers(0, 25, 140_000)
    assert (confusion(y, p) == contingency_matrix(y, p)).all()
    assert len(METRICS) >= 4
