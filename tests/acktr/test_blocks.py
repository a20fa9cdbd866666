"""Curvature blocks: preconditioning equals a dense damped solve; robustness; state."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import acktr
from acktr.blocks import KroneckerBlock, tikhonov_pi
from acktr.layers import LinearHelper
from acktr.linalg import CurvatureLinAlgError, damped_inverse, safe_eigh
from tests.acktr.exact import ScaledLinear

pytestmark = pytest.mark.usefixtures("float64")


def filled_block(out_features: int = 3, in_features: int = 4, bias: bool = True) -> KroneckerBlock:
    """A block with random (ill-conditioned) PSD factors."""
    block = KroneckerBlock("fc", LinearHelper(nn.Linear(in_features, out_features, bias=bias)))
    a_rows = torch.randn(50, in_features) * torch.logspace(0, -2, in_features)
    g_rows = torch.randn(50, out_features)
    block.accumulate_inputs(a_rows, 50)
    block.accumulate_grads(g_rows, 1.0)
    a_new, g_new = block.pending_stats()
    block.update_factors(a_new, g_new, decay=0.9)
    return block


@pytest.mark.parametrize("scheme", ["eigen", "tikhonov"])
@pytest.mark.parametrize("damping", [1e-3, 0.1])
def test_precondition_equals_dense_damped_solve(scheme, damping):
    block = filled_block()
    assert block.refresh(damping, scheme, "eigen")
    grad = torch.randn(3, 5)
    dense = block.to_dense(damping, scheme)
    expected = torch.linalg.solve(dense, grad.flatten()).reshape(3, 5)
    torch.testing.assert_close(block.precondition(grad, damping, scheme), expected)


def test_eigen_and_inverse_paths_agree_for_tikhonov():
    block = filled_block()
    grad = torch.randn(3, 5)
    block.refresh(0.01, "tikhonov", "eigen")
    via_eigen = block.precondition(grad, 0.01, "tikhonov")
    block.eig = None
    block.refresh(0.01, "tikhonov", "inverse")
    via_inverse = block.precondition(grad, 0.01, "tikhonov")
    torch.testing.assert_close(via_eigen, via_inverse)


def test_tikhonov_damping_uses_pi_correction():
    block = filled_block()
    pi = tikhonov_pi(block.A.trace(), 5, block.G.trace(), 3)
    eye_a, eye_g = torch.eye(5), torch.eye(3)
    expected = torch.kron(block.G + 0.1 / pi * eye_g, block.A + pi * 0.1 * eye_a)
    torch.testing.assert_close(block.to_dense(0.01, "tikhonov"), expected)


def test_first_update_initialises_ema_then_averages():
    block = KroneckerBlock("fc", LinearHelper(nn.Linear(2, 2, bias=False)))
    ones, twos = torch.ones(2, 2), 2 * torch.ones(2, 2)
    block.update_factors(ones, ones, decay=0.9)
    torch.testing.assert_close(block.A, ones)
    block.update_factors(twos, twos, decay=0.9)
    torch.testing.assert_close(block.A, 1.1 * ones)


def test_nonfinite_statistics_are_skipped_without_corrupting_factors():
    block = filled_block()
    a_before, g_before = block.A.clone(), block.G.clone()
    bad = torch.full_like(block.A, float("nan"))
    block.update_factors(bad, block.G.clone(), decay=0.5)
    torch.testing.assert_close(block.A, a_before)
    torch.testing.assert_close(block.G, g_before)
    assert int(block.n_skipped) == 1 and int(block.n_updates) == 1


def test_safe_eigh_retries_in_float64_with_jitter(monkeypatch):
    m = torch.randn(5, 5)
    m = (m @ m.T).float()
    real = torch.linalg.eigh
    calls = []

    def flaky(x):
        calls.append(x.dtype)
        if x.dtype == torch.float32:
            raise torch.linalg.LinAlgError("simulated failure")
        return real(x)

    monkeypatch.setattr(torch.linalg, "eigh", flaky)
    evals, evecs = safe_eigh(m)
    assert calls == [torch.float32, torch.float64]
    assert evals.dtype == torch.float32 and bool((evals >= 0).all())
    recon = evecs @ torch.diag(evals) @ evecs.T
    torch.testing.assert_close(recon, m, atol=1e-3, rtol=1e-4)


def test_safe_eigh_clamps_negative_roundoff_and_fails_loudly_on_nan():
    m = torch.diag(torch.tensor([1.0, -1e-12, 0.5]))
    evals, _ = safe_eigh(m)
    assert bool((evals >= 0).all())
    with pytest.raises(CurvatureLinAlgError):
        safe_eigh(torch.full((3, 3), float("nan")))


def test_failed_refresh_keeps_previous_eigenbasis_and_warns():
    block = filled_block()
    block.refresh(0.01, "eigen", "eigen")
    eig_before = [t.clone() for t in block.eig]
    block.A.fill_(float("nan"))
    with pytest.warns(RuntimeWarning, match="keeping its previous eigenbasis"):
        assert not block.refresh(0.01, "eigen", "eigen")
    for before, after in zip(eig_before, block.eig, strict=False):
        torch.testing.assert_close(before, after)
    assert block.n_refresh_failures == 1


def test_damped_inverse_is_the_inverse():
    m = torch.randn(4, 4)
    m = m @ m.T
    torch.testing.assert_close(damped_inverse(m, 0.1) @ (m + 0.1 * torch.eye(4)), torch.eye(4))


def test_block_state_dict_round_trip_and_shape_check():
    block = filled_block()
    block.refresh(0.01, "eigen", "eigen")
    other = KroneckerBlock("fc", LinearHelper(nn.Linear(4, 3)))
    other.load_state_dict(block.state_dict())
    grad = torch.randn(3, 5)
    torch.testing.assert_close(
        other.precondition(grad, 0.01, "eigen"), block.precondition(grad, 0.01, "eigen")
    )
    wrong = KroneckerBlock("fc", LinearHelper(nn.Linear(5, 3)))
    with pytest.raises(ValueError, match="different model"):
        wrong.load_state_dict(block.state_dict())


def test_diagonal_fallback_estimates_the_diagonal_fisher():
    """A learned output scale (no Kronecker block) gets a diagonal Fisher estimate whose
    expectation is the exact diagonal: here, for y ~ N(s * f(x), 1), F_ss = E[f(x)^2]."""

    model = ScaledLinear()
    # EMA over ~1000 contexts: each context's estimate is a scaled chi-square(1) (relative
    # std sqrt(2)), so the average has a relative std of about 4.5%.
    pre = acktr.KFACPreconditioner(model, stat_decay=0.998)
    assert pre.assignments()["scale"] == "diagonal"
    x = torch.randn(256, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(2000):
            out = model(x)
            with pre.record_stats():
                acktr.fisher_loss(out, "gaussian").backward()
    with torch.no_grad():
        exact = (model.fc(x) ** 2).mean(0)
    torch.testing.assert_close(pre.diagonal_blocks["scale"].F, exact, rtol=0.15, atol=0.0)
