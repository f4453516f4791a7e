"""The optimizer's learning-rate schedule."""

import pytest

from kd.optim import cosine


def test_cosine_runs_from_one_to_zero():
    assert cosine(0, 100) == 1.0 and cosine(100, 100) == pytest.approx(0.0, abs=1e-12)
    assert cosine(50, 100) == pytest.approx(0.5) and cosine(150, 100) == pytest.approx(0.0, abs=1e-12)
