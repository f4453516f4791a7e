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


@pytest.mark.parametrize("method", ["none", "kd"])
def test_every_methods_grad_matches_autograd_on_its_own_terms(method):
    """The trainer trusts grad(); for each registered method it must agree with __call__."""
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


def test_every_registered_method_is_covered_by_the_gradient_check():
    from kd.methods import METHODS
    assert sorted(METHODS.keys()) == ["kd", "none"]  # a new method: add it to the test above


def test_in_float32_the_written_out_gradient_agrees_to_float_precision():
    g = torch.Generator().manual_seed(4)
    s = torch.randn(64, 10, generator=g).mul(5).requires_grad_()
    te, y = torch.randn(64, 10, generator=g).mul(5), torch.randint(0, 10, (64,), generator=g)
    (want,) = torch.autograd.grad(kd_loss(s, te, y, 4.0, 0.9), s)
    torch.testing.assert_close(kd_grad(s, soft_targets(te, 4.0), y, 4.0, 0.9), want, rtol=1e-4, atol=1e-6)
