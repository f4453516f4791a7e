"""RKD, attention transfer and FitNets losses against numbers worked out by hand and against
plain loop / NumPy writings of the papers' formulas."""

import itertools
import math

import numpy as np
import pytest
import torch

from kd.losses_features import at_loss, attention_map, fitnet_loss, pairwise_distances, rkd_loss, rkd_terms


def t(x, dtype=torch.float64):
    return torch.tensor(x, dtype=dtype)


def _smooth_l1(x):
    return 0.5 * x * x if abs(x) < 1 else abs(x) - 0.5


def _rkd_plain(s, te, wd, wa, squared=False):
    """RKD with loops: distances over all ordered pairs (0 on the diagonal), angles at vertex i."""

    def dist(e):
        n = len(e)
        d = np.zeros((n, n))
        for i, j in itertools.product(range(n), range(n)):
            if i != j:
                d[i, j] = np.sum((e[i] - e[j]) ** 2) if squared else np.linalg.norm(e[i] - e[j])
        return d / d[d > 0].mean()

    def cosines(e):
        n = len(e)
        c = np.zeros((n, n, n))
        for i, j, k in itertools.product(range(n), range(n), range(n)):
            if j != i and k != i:
                u, v = e[j] - e[i], e[k] - e[i]
                c[i, j, k] = u @ v / (np.linalg.norm(u) * np.linalg.norm(v))
        return c

    ds, dt = dist(s), dist(te)
    cs, ct = cosines(s), cosines(te)
    loss_d = np.mean([_smooth_l1(a - b) for a, b in zip(ds.ravel(), dt.ravel())])
    loss_a = np.mean([_smooth_l1(a - b) for a, b in zip(cs.ravel(), ct.ravel())])
    return wd * loss_d, wa * loss_a


def test_rkd_matches_hand_computation_on_two_triangles():
    # Student: the 3-4-5 right triangle; teacher: an equilateral triangle (any size).
    # Distances / their mean (4): 0.75, 1, 1.25 against 1, 1, 1: two pairs off by 0.25, each twice
    # in the 3 x 3 matrix: 4 * 0.5 * 0.25^2 / 9 = 0.125 / 9.
    # Angles: cos 0 (right angle), 9/15 = 0.6 and 16/20 = 0.8 against 0.5: each twice (j, k and k, j):
    # 2 * 0.5 * (0.5^2 + 0.1^2 + 0.3^2) / 27 = 0.35 / 27. Entries with j = k are 1 = 1, with i in {j, k} 0 = 0.
    s = t([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
    te = t([[0.0, 0.0], [2.0, 0.0], [1.0, math.sqrt(3.0)]])
    terms = rkd_terms(s, te)
    assert terms["distance"].item() == pytest.approx(25 * 0.125 / 9, abs=1e-7)  # 0.34722222
    assert terms["angle"].item() == pytest.approx(50 * 0.35 / 27, abs=1e-7)  # 0.64814815
    assert rkd_loss(s, te, distance_weight=1.0, angle_weight=2.0).item() == pytest.approx(
        0.125 / 9 + 0.7 / 27, abs=1e-7
    )


@pytest.mark.parametrize("squared", [False, True])
def test_rkd_matches_a_plain_implementation_on_random_embeddings(squared):
    g = torch.Generator().manual_seed(20)
    s = torch.randn(6, 5, generator=g, dtype=torch.float64)
    te = torch.randn(6, 9, generator=g, dtype=torch.float64).mul(4)  # other width and scale
    want_d, want_a = _rkd_plain(s.numpy(), te.numpy(), 25.0, 50.0, squared)
    terms = rkd_terms(s, te, squared=squared)
    assert terms["distance"].item() == pytest.approx(want_d, rel=1e-9)
    assert terms["angle"].item() == pytest.approx(want_a, rel=1e-9)


def test_pairwise_distances_are_euclidean_with_a_zero_diagonal():
    e = t([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]])
    torch.testing.assert_close(pairwise_distances(e), t([[0, 5, 10], [5, 0, 5], [10, 5, 0]]), rtol=0, atol=1e-9)
    torch.testing.assert_close(pairwise_distances(e, squared=True), t([[0, 25, 100], [25, 0, 25], [100, 25, 0]]))


def test_rkd_is_zero_under_similarity_transforms_and_flattens_feature_maps():
    g = torch.Generator().manual_seed(21)
    te = torch.randn(7, 4, generator=g, dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(4, 4, generator=g, dtype=torch.float64))
    s = 3.0 * te @ q + 1.5  # rotated, scaled, shifted: same distance ratios and angles
    assert rkd_loss(s, te).item() == pytest.approx(0.0, abs=1e-10)
    maps = torch.randn(7, 2, 3, 3, generator=g, dtype=torch.float64)
    assert rkd_loss(maps, maps.reshape(7, -1)).item() == pytest.approx(0.0, abs=1e-10)


def test_rkd_gradient_reaches_the_student_and_not_the_teacher():
    g = torch.Generator().manual_seed(22)
    s = torch.randn(8, 6, generator=g).requires_grad_()
    te = torch.randn(8, 6, generator=g).requires_grad_()
    rkd_loss(s, te).backward()
    assert torch.isfinite(s.grad).all() and s.grad.abs().sum().item() > 1e-4
    assert te.grad is None


def _attention_plain(f, p):
    b = f.shape[0]
    a = (np.abs(f) ** p).mean(axis=1).reshape(b, -1)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def test_at_matches_hand_computation():
    # One channel, 2 x 2: the student's energy all at (0, 0), the teacher's at (0, 1):
    # maps [1, 0, 0, 0] and [0, 1, 0, 0], squared differences [1, 1, 0, 0], mean 0.5.
    s = t([[[[1.0, 0.0], [0.0, 0.0]]]])
    te = t([[[[0.0, -3.0], [0.0, 0.0]]]])
    assert at_loss(s, te).item() == pytest.approx(0.5, abs=1e-12)
    # Two channels: mean of squares [(1 + 0)/2, 0, 0, (0 + 4)/2] = [0.5, 0, 0, 2], norm sqrt(4.25)
    s2 = t([[[[1.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 2.0]]]])
    r = math.sqrt(4.25)
    torch.testing.assert_close(attention_map(s2), t([[0.5 / r, 0.0, 0.0, 2.0 / r]]))


@pytest.mark.parametrize("p", [2, 3])
def test_at_matches_a_plain_implementation_on_random_features(p):
    g = torch.Generator().manual_seed(23)
    s = torch.randn(4, 3, 5, 5, generator=g, dtype=torch.float64)
    te = torch.randn(4, 8, 5, 5, generator=g, dtype=torch.float64)  # channel counts may differ
    want = np.mean((_attention_plain(s.numpy(), p) - _attention_plain(te.numpy(), p)) ** 2)
    assert at_loss(s, te, p=p).item() == pytest.approx(want, rel=1e-10)


def test_at_pools_the_larger_map_to_the_smaller():
    g = torch.Generator().manual_seed(24)
    small = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64)
    large = torch.randn(2, 5, 8, 8, generator=g, dtype=torch.float64)
    # 8 x 8 -> 4 x 4 by averaging 2 x 2 blocks, written out in NumPy
    pooled = large.numpy().reshape(2, 5, 4, 2, 4, 2).mean(axis=(3, 5))
    want = np.mean((_attention_plain(small.numpy(), 2) - _attention_plain(pooled, 2)) ** 2)
    assert at_loss(small, large).item() == pytest.approx(want, rel=1e-10)  # teacher larger
    want_swapped = np.mean((_attention_plain(pooled, 2) - _attention_plain(small.numpy(), 2)) ** 2)
    assert at_loss(large, small).item() == pytest.approx(want_swapped, rel=1e-10)  # student larger


def test_at_is_zero_for_equal_features_and_the_gradient_flows():
    g = torch.Generator().manual_seed(25)
    te = torch.randn(2, 4, 6, 6, generator=g)
    assert at_loss(te.clone(), te).item() == 0.0
    assert at_loss(2.0 * te, te).item() == pytest.approx(0.0, abs=1e-12)  # the maps are normalised
    s = torch.randn(2, 4, 6, 6, generator=g).requires_grad_()
    at_loss(s, te).backward()
    assert torch.isfinite(s.grad).all() and s.grad.abs().sum().item() > 0


def test_fitnet_is_the_mean_squared_error_over_all_elements():
    s, te = t([[1.0, 2.0], [3.0, 4.0]]), torch.zeros(2, 2, dtype=torch.float64)
    assert fitnet_loss(s, te).item() == pytest.approx((1 + 4 + 9 + 16) / 4, abs=1e-12)  # 7.5
    g = torch.Generator().manual_seed(26)
    a = torch.randn(3, 4, 5, 5, generator=g, dtype=torch.float64).requires_grad_()
    b = torch.randn(3, 4, 5, 5, generator=g, dtype=torch.float64)
    loss = fitnet_loss(a, b)
    assert loss.item() == pytest.approx(np.mean((a.detach().numpy() - b.numpy()) ** 2), rel=1e-12)
    loss.backward()
    torch.testing.assert_close(a.grad, 2 * (a.detach() - b) / a.numel())
    assert fitnet_loss(b.clone(), b).item() == 0.0


def test_fitnet_refuses_hints_of_different_shapes():
    with pytest.raises(ValueError, match="adapt the student"):
        fitnet_loss(torch.zeros(2, 8, 4, 4), torch.zeros(2, 16, 4, 4))
