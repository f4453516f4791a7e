"""kd_loss against numbers worked out by hand, and the T^2 factor's purpose."""

import math

import pytest
import torch
import torch.nn.functional as F

from kd.losses import ce_grad, kd_grad, kd_loss, kd_terms, soft_kl, soft_targets

# Worked by hand (see comments): student [1, 2, 3], teacher [3, 2, 1], target 2, T = 2.
# CE = log(e + e^2 + e^3) - 3 = 0.40760596
# softmax(t/2) = [0.50648039, 0.30719589, 0.18632372]; softmax(s/2) is the same reversed,
# so log(p_t / p_s) = [1, 0, -1] and KL = 0.50648039 - 0.18632372 = 0.32015667.
CE_1 = 0.40760596
KL_1 = 0.32015667
S1, T1, Y1 = [[1.0, 2.0, 3.0]], [[3.0, 2.0, 1.0]], [2]


def t(x, dtype=torch.float64):
    return torch.tensor(x, dtype=dtype)


def test_single_example_matches_hand_computation():
    loss = kd_loss(t(S1), t(T1), t(Y1, torch.long), temperature=2.0, alpha=0.5)
    assert loss.item() == pytest.approx(0.5 * CE_1 + 0.5 * 4 * KL_1, abs=1e-7)  # 0.84411632


def test_terms_are_weighted_and_sum_to_the_loss():
    terms = kd_terms(t(S1), t(T1), t(Y1, torch.long), temperature=2.0, alpha=0.25)
    assert terms["ce"].item() == pytest.approx(0.75 * CE_1, abs=1e-7)
    assert terms["soft"].item() == pytest.approx(0.25 * 4 * KL_1, abs=1e-7)
    total = kd_loss(t(S1), t(T1), t(Y1, torch.long), 2.0, 0.25)
    assert total.item() == pytest.approx(terms["ce"].item() + terms["soft"].item(), abs=1e-12)


def test_kl_is_averaged_over_the_batch_not_over_classes():
    # second example: all-zero logits for both -> KL 0, CE log 3 = 1.09861229
    s, te, y = t(S1 + [[0.0, 0.0, 0.0]]), t(T1 + [[0.0, 0.0, 0.0]]), t([2, 0], torch.long)
    loss = kd_loss(s, te, y, temperature=2.0, alpha=0.5)
    expected = 0.5 * (CE_1 + 1.09861229) / 2 + 0.5 * 4 * KL_1 / 2  # batchmean: / B, not / (B * K)
    assert loss.item() == pytest.approx(expected, abs=1e-7)  # 0.69671123
    # The seed note's nn.KLDivLoss() default ('mean') divides by B*K = 6 instead: a different number.
    seed_kl = torch.nn.KLDivLoss()(F.log_softmax(s / 2, 1), F.softmax(te / 2, 1)).item()
    assert seed_kl == pytest.approx(KL_1 / 6, abs=1e-7)


def test_alpha_bounds_give_pure_terms():
    s, te, y = t(S1), t(T1), t(Y1, torch.long)
    assert kd_loss(s, te, y, 2.0, 0.0).item() == pytest.approx(CE_1, abs=1e-7)  # alpha 0: plain training
    assert kd_loss(s, te, y, 2.0, 1.0).item() == pytest.approx(4 * KL_1, abs=1e-7)


def test_soft_term_is_zero_when_student_equals_teacher_and_positive_otherwise():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 10, generator=g)
    assert soft_kl(logits, logits.clone(), 4.0).item() == pytest.approx(0.0, abs=1e-6)
    assert soft_kl(logits, torch.randn(16, 10, generator=g), 4.0).item() > 0.01


def _soft_grad_norm(temperature: float, scale_by_t2: bool) -> float:
    g = torch.Generator().manual_seed(1)
    student = torch.randn(256, 10, generator=g, dtype=torch.float64).mul(3).requires_grad_()
    teacher = torch.randn(256, 10, generator=g, dtype=torch.float64).mul(3)
    loss = soft_kl(student, teacher, temperature)
    if not scale_by_t2:
        loss = loss / temperature**2
    loss.backward()
    return student.grad.norm().item()


def test_t_squared_keeps_the_soft_gradient_of_the_same_order_across_temperatures():
    temps = [1, 2, 4, 8, 12, 20]
    with_t2 = [_soft_grad_norm(T, True) for T in temps]
    without = [_soft_grad_norm(T, False) for T in temps]
    # With T^2 the gradient stays within a small factor from T = 1 to 20 ...
    assert max(with_t2) / min(with_t2) < 3, with_t2
    # ... without it, it shrinks roughly as 1/T^2 (by two orders of magnitude at T = 20).
    assert without[0] / without[-1] > 100, without
    assert math.isclose(with_t2[-1], without[-1] * 400, rel_tol=1e-9)


@pytest.mark.parametrize("temperature, alpha", [(1.0, 0.5), (4.0, 0.9), (20.0, 0.0), (2.0, 1.0)])
def test_the_written_out_gradient_equals_autograd_on_the_composed_loss(temperature, alpha):
    g = torch.Generator().manual_seed(3)
    s = torch.randn(32, 10, generator=g, dtype=torch.float64).mul(4).requires_grad_()
    te = torch.randn(32, 10, generator=g, dtype=torch.float64).mul(4)
    y = torch.randint(0, 10, (32,), generator=g)
    ref = kd_terms(s, te, y, temperature, alpha)
    (want,) = torch.autograd.grad(ref["ce"] + ref["soft"], s)
    grad = kd_grad(s, soft_targets(te, temperature), y, temperature, alpha)
    assert not grad.requires_grad  # no graph was built
    torch.testing.assert_close(grad, want, rtol=1e-10, atol=1e-14)


def test_the_cross_entropy_gradient_equals_autograd():
    g = torch.Generator().manual_seed(5)
    s = torch.randn(16, 7, generator=g, dtype=torch.float64).requires_grad_()
    y = torch.randint(0, 7, (16,), generator=g)
    (want,) = torch.autograd.grad(0.3 * F.cross_entropy(s, y), s)
    torch.testing.assert_close(ce_grad(s, y, 0.3), want, rtol=1e-10, atol=1e-14)


def _with_grad() -> list[str]:
    from kd.methods import METHODS

    return [k for k in METHODS.keys() if hasattr(METHODS.get(k), "grad")]


@pytest.mark.parametrize("method", _with_grad())
def test_every_methods_grad_matches_autograd_on_its_own_terms(method):
    """A written-out gradient is an optional fast path: where a method offers grad(), the trainer
    trusts it, so it must agree with autograd on the method's own __call__."""
    from kd.config import RunConfig
    from kd.methods import METHODS, build

    assert method in METHODS.keys()
    m = build(RunConfig(method=method, temperature=3.0, alpha=0.7))
    g = torch.Generator().manual_seed(6)
    s = torch.randn(64, 10, generator=g, dtype=torch.float64).mul(3).requires_grad_()
    t = m.prepare(torch.randn(64, 10, generator=g, dtype=torch.float64).mul(3)) if m.uses_teacher else None
    y = torch.randint(0, 10, (64,), generator=g)
    (want,) = torch.autograd.grad(sum(m(s, y, t).values()), s)
    torch.testing.assert_close(m.grad(s, y, t), want, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("method", _with_grad())
def test_every_methods_grad_takes_stacked_students_with_their_own_knobs(method):
    """Students in lockstep (kd/lockstep.py, kd.fastpath.GroupMLPStep) call prepare() and grad()
    once for K students: logits (K, B, C), class-major in memory, and each float knob a (K, 1, 1)
    tensor. Each student's slice equals the method's answer for that student alone, and so do its
    loss terms on class-major logits (kd.fastpath's written-out softmaxes)."""
    from kd.config import RunConfig
    from kd.methods import build

    knobs = [dict(temperature=1.0, alpha=0.5), dict(temperature=4.0, alpha=0.9), dict(temperature=8.0, alpha=0.1)]
    alone = [build(RunConfig(method=method, **k)) for k in knobs]
    stacked = build(RunConfig(method=method))
    for name in ("temperature", "alpha"):
        if isinstance(getattr(stacked, name, None), float):
            setattr(stacked, name, torch.tensor([getattr(m, name) for m in alone]).view(-1, 1, 1))
    g = torch.Generator().manual_seed(8)
    s = torch.randn(3, 10, 64, generator=g).mul(3).transpose(1, 2)  # (K, B, C), class-major
    raw = torch.randn(3, 10, 64, generator=g).mul(3).transpose(1, 2)
    y = torch.randint(0, 10, (3, 64), generator=g)
    t = stacked.prepare(raw) if stacked.uses_teacher else None
    grad = stacked.grad(s, y, t)
    for j, m in enumerate(alone):
        tj = m.prepare(raw[j].contiguous()) if m.uses_teacher else None
        if tj is not None:
            torch.testing.assert_close(t[j], tj, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(grad[j], m.grad(s[j].contiguous(), y[j], tj), rtol=1e-5, atol=1e-7)
        want = m(s[j].contiguous(), y[j], tj)
        got = m(s[j], y[j], t[j] if t is not None else None)  # class-major slices
        for name in want:
            torch.testing.assert_close(got[name], want[name], rtol=1e-5, atol=1e-6)


def test_the_fast_path_stays_where_it_pays_and_autograd_serves_the_rest():
    from kd.methods import METHODS

    assert {"kd", "none"} <= set(_with_grad()) and set(_with_grad()) < set(METHODS.keys())


def test_in_float32_the_written_out_gradient_agrees_to_float_precision():
    g = torch.Generator().manual_seed(4)
    s = torch.randn(64, 10, generator=g).mul(5).requires_grad_()
    te, y = torch.randn(64, 10, generator=g).mul(5), torch.randint(0, 10, (64,), generator=g)
    (want,) = torch.autograd.grad(kd_loss(s, te, y, 4.0, 0.9), s)
    torch.testing.assert_close(kd_grad(s, soft_targets(te, 4.0), y, 4.0, 0.9), want, rtol=1e-4, atol=1e-6)


# -- DKD, DIST, logit standardization, CTKD ------------------------------------------------------
# Each against numbers worked out by hand and against a plain NumPy writing of the paper's formula.
import numpy as np  # noqa: E402

from kd.losses import (  # noqa: E402
    GlobalTemperature,
    GradientReversal,
    ctkd_lambda,
    ctkd_temperature,
    dist_loss,
    dist_terms,
    dkd_loss,
    dkd_terms,
    dkd_warmup,
    standardize,
)


def _np_softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def _np_kl(p, q):
    return float(np.sum(p * np.log(p / q)))


def _dkd_plain(s, te, y, alpha, beta, T):
    """DKD per example, the non-target distribution taken by removing the target class."""
    tckd = nckd = 0.0
    for zs, zt, c in zip(s, te, y):
        ps, pt = _np_softmax(zs / T), _np_softmax(zt / T)
        tckd += _np_kl(np.array([pt[c], 1 - pt[c]]), np.array([ps[c], 1 - ps[c]]))
        keep = np.arange(len(zs)) != c
        nckd += _np_kl(_np_softmax(zt[keep] / T), _np_softmax(zs[keep] / T))
    return alpha * T**2 * tckd / len(s), beta * T**2 * nckd / len(s)


def test_dkd_matches_hand_computation():
    # Student logits 0 (uniform 1/3); teacher 2*[ln 3, 0, ln 4] at T = 2 gives [3/8, 1/8, 1/2]; target 2.
    # TCKD: KL([1/2, 1/2] || [1/3, 2/3]) = 1/2 ln(3/2) + 1/2 ln(3/4) = 1/2 ln(9/8)
    # NCKD: KL([3/4, 1/4] || [1/2, 1/2]) = 3/4 ln(3/2) + 1/4 ln(1/2)
    s = t([[0.0, 0.0, 0.0]])
    te = t([[2 * math.log(3), 0.0, 2 * math.log(4)]])
    y = t([2], torch.long)
    tckd, nckd = 0.5 * math.log(9 / 8), 0.75 * math.log(1.5) - 0.25 * math.log(2)
    terms = dkd_terms(s, te, y, alpha=1.0, beta=8.0, temperature=2.0)
    assert terms["tckd"].item() == pytest.approx(4 * tckd, abs=1e-9)  # 0.23556607
    assert terms["nckd"].item() == pytest.approx(8 * 4 * nckd, abs=1e-9)  # 4.18598514
    assert dkd_loss(s, te, y, 1.0, 8.0, 2.0).item() == pytest.approx(4 * tckd + 32 * nckd, abs=1e-9)


def test_dkd_matches_a_plain_implementation_on_random_logits():
    g = torch.Generator().manual_seed(10)
    s = torch.randn(16, 7, generator=g, dtype=torch.float64).mul(3)
    te = torch.randn(16, 7, generator=g, dtype=torch.float64).mul(3)
    y = torch.randint(0, 7, (16,), generator=g)
    for alpha, beta, T in [(1.0, 8.0, 4.0), (0.5, 2.0, 1.0)]:
        want_t, want_n = _dkd_plain(s.numpy(), te.numpy(), y.numpy(), alpha, beta, T)
        terms = dkd_terms(s, te, y, alpha, beta, T)
        assert terms["tckd"].item() == pytest.approx(want_t, rel=1e-9)
        assert terms["nckd"].item() == pytest.approx(want_n, rel=1e-9)
    want = sum(_dkd_plain(s.numpy(), te.numpy(), y.numpy(), 1.0, 8.0, 4.0))
    assert dkd_loss(s, te, y).item() == pytest.approx(want, rel=1e-9)  # the defaults: 1, 8, T = 4


def test_dkd_terms_recompose_the_kd_loss_for_each_example():
    # The paper's decomposition: KD = TCKD + (1 - p_t[y]) * NCKD, example by example.
    g = torch.Generator().manual_seed(11)
    s, te = torch.randn(4, 6, generator=g, dtype=torch.float64), torch.randn(4, 6, generator=g, dtype=torch.float64)
    y = torch.randint(0, 6, (4,), generator=g)
    for i in range(4):
        si, ti, yi = s[i : i + 1], te[i : i + 1], y[i : i + 1]
        terms = dkd_terms(si, ti, yi, 1.0, 1.0, 3.0)
        p_target = torch.softmax(ti / 3.0, 1)[0, yi].item()
        assert soft_kl(si, ti, 3.0).item() == pytest.approx(
            terms["tckd"].item() + (1 - p_target) * terms["nckd"].item(), rel=1e-9
        )


def test_dkd_is_zero_when_student_equals_teacher_and_the_gradient_flows():
    g = torch.Generator().manual_seed(12)
    te, y = torch.randn(8, 5, generator=g), torch.randint(0, 5, (8,), generator=g)
    s = te.clone().requires_grad_()
    loss = dkd_loss(s, te, y)
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-5)
    assert s.grad.abs().max().item() < 1e-5
    s2 = torch.randn(8, 5, generator=g).requires_grad_()
    dkd_loss(s2, te, y).backward()
    assert torch.isfinite(s2.grad).all() and s2.grad.abs().sum().item() > 1e-3


def test_dkd_stays_finite_for_a_confident_student_in_float32():
    # The student puts all mass on the target: 1 - p_s[y] underflows to 0 in float32, where the
    # reference's log(sum of probabilities) is -inf and its loss inf. In log space it is finite.
    s = torch.tensor([[200.0, 0.0, 0.0]])
    te = torch.tensor([[2.0, 1.0, 0.0]])
    y = torch.tensor([0])
    got = dkd_terms(s, te, y, 1.0, 8.0, 1.0)["tckd"].item()
    # By hand: p_t[y] = e^2 / (e^2 + e + 1); log p_s[y] = 0 and log(1 - p_s[y]) = ln 2 - 200 to far
    # below float precision, so TCKD = p ln p + (1 - p) (ln(1 - p) - ln 2 + 200).
    p = math.exp(2) / (math.exp(2) + math.e + 1)
    want = p * math.log(p) + (1 - p) * (math.log(1 - p) - math.log(2) + 200)
    assert math.isfinite(got) and got == pytest.approx(want, rel=1e-5)  # 66.0823


def test_dkd_warmup_is_the_references_linear_ramp():
    assert [dkd_warmup(e) for e in (1, 10, 20, 21, 240)] == [0.05, 0.5, 1.0, 1.0, 1.0]
    assert dkd_warmup(5, warmup=10) == 0.5


def _pearson_plain(u, v):
    return float(np.corrcoef(u, v)[0, 1])


def _dist_plain(s, te, beta, gamma, T):
    ys = np.stack([_np_softmax(r / T) for r in s])
    yt = np.stack([_np_softmax(r / T) for r in te])
    inter = 1 - np.mean([_pearson_plain(ys[i], yt[i]) for i in range(ys.shape[0])])
    intra = 1 - np.mean([_pearson_plain(ys[:, k], yt[:, k]) for k in range(ys.shape[1])])
    return beta * T**2 * inter, gamma * T**2 * intra


def test_dist_matches_hand_computation():
    # Two classes: a row's Pearson correlation is +1 if both put more mass on the same class, else -1.
    # Row 0: student favours class 1, teacher class 0 -> -1; row 1: both class 1 -> +1; inter = 1 - 0 = 1.
    # Columns: class 0 falls from row 0 to row 1 for both (0.27 -> 0.12, 0.73 -> 0.12) -> +1; intra = 0.
    s, te = t([[0.0, 1.0], [0.0, 2.0]]), t([[1.0, 0.0], [0.0, 2.0]])
    terms = dist_terms(s, te, beta=1.0, gamma=1.0, temperature=1.0)
    assert terms["inter"].item() == pytest.approx(1.0, abs=1e-6)
    assert terms["intra"].item() == pytest.approx(0.0, abs=1e-6)
    # The same orderings at T = 2, times T^2 = 4, times beta = 3.
    assert dist_loss(s, te, beta=3.0, gamma=5.0, temperature=2.0).item() == pytest.approx(12.0, abs=1e-5)


def test_dist_matches_a_plain_implementation_on_random_logits():
    g = torch.Generator().manual_seed(13)
    s = torch.randn(16, 10, generator=g, dtype=torch.float64).mul(3)
    te = torch.randn(16, 10, generator=g, dtype=torch.float64).mul(3)
    for beta, gamma, T in [(1.0, 1.0, 1.0), (2.0, 3.0, 4.0)]:
        want_inter, want_intra = _dist_plain(s.numpy(), te.numpy(), beta, gamma, T)
        terms = dist_terms(s, te, beta, gamma, T)
        # the reference's 1e-8 in the denominator is the only difference
        assert terms["inter"].item() == pytest.approx(want_inter, rel=1e-5, abs=1e-6)
        assert terms["intra"].item() == pytest.approx(want_intra, rel=1e-5, abs=1e-6)
        assert dist_loss(s, te, beta, gamma, T).item() == pytest.approx(want_inter + want_intra, rel=1e-5)


def test_dist_is_zero_when_student_equals_teacher_and_the_gradient_flows():
    g = torch.Generator().manual_seed(14)
    te = torch.randn(8, 6, generator=g)
    assert dist_loss(te.clone(), te).item() == pytest.approx(0.0, abs=1e-5)
    s = torch.randn(8, 6, generator=g).requires_grad_()
    dist_loss(s, te, temperature=4.0).backward()
    assert torch.isfinite(s.grad).all() and s.grad.abs().sum().item() > 1e-4


def test_standardize_matches_hand_computation_with_the_unbiased_std():
    # [1, 2, 3]: mean 2, unbiased std 1 -> [-1, 0, 1] (the biased std, sqrt(2/3), would give +-1.2247)
    z = standardize(t([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0]]))
    torch.testing.assert_close(z, t([[-1.0, 0.0, 1.0], [-1.0, 0.0, 1.0]]), rtol=0, atol=1e-6)
    # [2, 4, 6, 8]: mean 5, unbiased std sqrt(20/3) = 2.5819889 -> +-3/2.5819889, +-1/2.5819889
    want = t([[-1.16189500, -0.38729833, 0.38729833, 1.16189500]])
    torch.testing.assert_close(standardize(t([[2.0, 4.0, 6.0, 8.0]])), want, rtol=0, atol=1e-6)


def test_standardize_gives_rows_of_mean_0_and_std_1_whatever_their_scale_and_shift():
    g = torch.Generator().manual_seed(15)
    z = torch.randn(32, 10, generator=g, dtype=torch.float64).mul(5).add(3)
    out = standardize(z)
    torch.testing.assert_close(out.mean(1), torch.zeros(32, dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close(out.std(1), torch.ones(32, dtype=torch.float64), rtol=0, atol=1e-6)
    plain = np.stack([(r - r.mean()) / (r.std(ddof=1) + 1e-7) for r in z.numpy()])
    np.testing.assert_allclose(out.numpy(), plain, rtol=1e-12, atol=1e-12)
    # z-scores do not change when a row is scaled by a positive number and shifted
    torch.testing.assert_close(standardize(z * 7.5 - 2.0), out, rtol=0, atol=1e-6)


def test_standardized_kd_is_kd_on_z_scores_and_the_gradient_flows():
    g = torch.Generator().manual_seed(16)
    s = torch.randn(8, 10, generator=g).mul(4).requires_grad_()
    te = torch.randn(8, 10, generator=g).mul(9)
    loss = soft_kl(standardize(s), standardize(te), 2.0)
    zs, zt = standardize(s).detach().double().numpy(), standardize(te).double().numpy()
    want = 4 * np.mean([_np_kl(_np_softmax(b / 2), _np_softmax(a / 2)) for a, b in zip(zs, zt)])
    assert loss.item() == pytest.approx(want, rel=1e-5)
    loss.backward()
    assert torch.isfinite(s.grad).all() and s.grad.abs().sum().item() > 1e-4


def test_gradient_reversal_is_the_identity_forward_and_minus_lambda_backward():
    g = torch.Generator().manual_seed(17)
    x = torch.randn(5, 3, generator=g, dtype=torch.float64).requires_grad_()
    upstream = torch.randn(5, 3, generator=g, dtype=torch.float64)
    y = GradientReversal.apply(x, 0.37)
    torch.testing.assert_close(y, x, rtol=0, atol=0)
    y.backward(upstream)
    torch.testing.assert_close(x.grad, -0.37 * upstream, rtol=0, atol=1e-15)


def test_ctkd_lambda_is_the_references_cosine_ramp():
    assert ctkd_lambda(0, 10) == 0.0
    assert ctkd_lambda(5, 10) == pytest.approx(0.5, abs=1e-15)
    assert ctkd_lambda(10, 10) == pytest.approx(1.0, abs=1e-15)
    assert ctkd_lambda(240, 10) == pytest.approx(1.0, abs=1e-15)  # held after the ramp
    assert ctkd_lambda(-3, 10) == 0.0
    assert ctkd_lambda(5, 10, lambda_max=3.0, lambda_min=1.0) == pytest.approx(2.0, abs=1e-15)

    def reference_cosine_decay(i, max_value=0.0, min_value=-1.0, num_loops=10):
        # train_student.py's CosineDecay.get_value with the run script's values, written out
        i = min(max(i, 0), num_loops)
        return (math.cos(i * math.pi / num_loops) + 1.0) * 0.5 * (max_value - min_value) + min_value

    for epoch in range(0, 16):  # the reference multiplies by its (negative) value; the layer here by -lambda
        assert -ctkd_lambda(epoch, 10) == pytest.approx(reference_cosine_decay(epoch), abs=1e-12)


def test_global_temperature_starts_as_the_reference_and_climbs_the_loss_it_is_used_in():
    module = GlobalTemperature()
    T = module(0.5)
    assert T.shape == () and T.item() == pytest.approx(1 + 20 / (1 + math.exp(-1)), abs=1e-5)  # 15.6211716
    g = torch.Generator().manual_seed(18)
    s = torch.randn(8, 10, generator=g, dtype=torch.float64).mul(3).requires_grad_()
    te = torch.randn(8, 10, generator=g, dtype=torch.float64).mul(3)
    raw = torch.tensor([0.3], dtype=torch.float64, requires_grad=True)
    soft_kl(s, te, ctkd_temperature(raw, 0.8)).sum().backward()
    # the same loss with T as a plain leaf: dL/dT, then the chain rule through T = 1 + 20 sigmoid(raw)
    T_leaf = (1 + 20 * torch.sigmoid(raw.detach())).requires_grad_()
    soft_kl(s.detach().clone().requires_grad_(), te, T_leaf).sum().backward()
    sig = torch.sigmoid(raw.detach())
    torch.testing.assert_close(raw.grad, -0.8 * T_leaf.grad * 20 * sig * (1 - sig), rtol=1e-10, atol=1e-14)
    # the student's gradient is not reversed
    s_plain = s.detach().clone().requires_grad_()
    soft_kl(s_plain, te, T_leaf.detach()).backward()
    torch.testing.assert_close(s.grad, s_plain.grad, rtol=1e-10, atol=1e-14)
