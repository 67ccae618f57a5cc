"""benchmarks/identity_probe.py: the dual-form ridge regression against the primal one, R^2, and the
command line's refusals."""
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import identity_probe  # noqa: E402


@pytest.mark.parametrize("lam", [0.1, 10.0])
def test_the_dual_ridge_equals_the_primal_solution(lam):
    g = torch.Generator().manual_seed(0)
    a = torch.randn(30, 5, generator=g, dtype=torch.float64)
    b = torch.randn(30, 2, generator=g, dtype=torch.float64)
    new = torch.randn(4, 5, generator=g, dtype=torch.float64)
    ac, bc = a - a.mean(0), b - b.mean(0)                   # primal: (A^T A + lam I) w = A^T B
    w = torch.linalg.solve(ac.T @ ac + lam * torch.eye(5, dtype=torch.float64), ac.T @ bc)
    expected = (new - a.mean(0)) @ w + b.mean(0)
    assert torch.allclose(identity_probe.ridge_fit(a, b, lam)(new), expected)


def test_r_squared_is_one_for_a_perfect_fit_and_zero_for_the_mean():
    target = torch.tensor([[1.0], [2.0], [4.0]])
    mean = target.mean(0)
    assert identity_probe.r_squared(target, target, mean) == 1.0
    assert identity_probe.r_squared(mean.expand_as(target), target, mean) == 0.0


@pytest.mark.parametrize("argv,message", [
    ([], "one of the two"),
    (["mnist_nondoubling_small", "--checkpoint", "x"], "one of the two"),
    (["mnist_nondoubling_small", "--threads", "0"], "--threads"),
    (["mnist_doubling_small"], "not one")])
def test_bad_arguments_are_refused_with_what_to_do(argv, message, capsys):
    with pytest.raises(SystemExit):
        identity_probe.main(argv)
    assert message in capsys.readouterr().err
