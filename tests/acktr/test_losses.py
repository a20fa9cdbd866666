"""Fisher losses: their per-example gradients have the Fisher of the output distribution as
second moment, and zero mean (targets are sampled from the model)."""

from __future__ import annotations

import pytest
import torch

import acktr


def per_example_output_grads(loss_fn, outputs: torch.Tensor, n: int) -> torch.Tensor:
    """``n`` independent samples of the per-example Fisher-loss gradients w.r.t. the outputs
    (one pass over the batch repeated ``n`` times; gradients times the batch size, as under the
    mean convention); shape ``(n, B, K)``."""
    out = outputs.detach().repeat(n, 1).requires_grad_(True)
    (g,) = torch.autograd.grad(loss_fn(out), out)
    return (g * out.shape[0]).reshape(n, *outputs.shape)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_gaussian_fisher_loss_gives_identity_second_moment():
    outputs = torch.randn(4, 3, dtype=torch.float64)
    g = per_example_output_grads(lambda o: acktr.fisher_loss(o, "gaussian"), outputs, 4000)
    second = torch.einsum("nbi,nbj->ij", g, g) / (g.shape[0] * g.shape[1])
    torch.testing.assert_close(second, torch.eye(3, dtype=torch.float64), atol=0.03, rtol=0)
    assert g.mean((0, 1)).abs().max() < 0.03


def test_categorical_fisher_loss_gives_softmax_fisher():
    logits = torch.tensor([[1.0, 0.0, -1.0]], dtype=torch.float64).repeat(8, 1)
    g = per_example_output_grads(lambda o: acktr.fisher_loss(o, "categorical"), logits, 3000)
    second = torch.einsum("nbi,nbj->ij", g, g) / (g.shape[0] * g.shape[1])
    p = torch.softmax(logits[0], -1)
    torch.testing.assert_close(second, torch.diag(p) - torch.outer(p, p), atol=0.01, rtol=0)


def test_bernoulli_fisher_loss_gives_logistic_fisher():
    logits = torch.tensor([[0.5, -2.0]], dtype=torch.float64).repeat(8, 1)
    g = per_example_output_grads(lambda o: acktr.fisher_loss(o, "bernoulli"), logits, 3000)
    p = torch.sigmoid(logits[0])
    torch.testing.assert_close((g**2).mean((0, 1)), p * (1 - p), atol=0.01, rtol=0)


def test_distribution_path_scores_a_sample_and_matches_the_gaussian_kind():
    mean = torch.randn(5, 2, dtype=torch.float64, requires_grad=True)
    torch.manual_seed(1)
    via_dist = acktr.fisher_loss(torch.distributions.Normal(mean, 1.0))
    (g1,) = torch.autograd.grad(via_dist, mean)
    torch.manual_seed(1)
    via_kind = acktr.fisher_loss(mean, "gaussian")
    (g2,) = torch.autograd.grad(via_kind, mean)
    torch.testing.assert_close(g1, g2)


def test_empirical_fisher_is_an_explicit_option():
    logits = torch.randn(6, 4, requires_grad=True)
    y = torch.randint(0, 4, (6,))
    expected = torch.nn.functional.cross_entropy(logits, y)
    torch.testing.assert_close(acktr.fisher_loss(logits, "categorical", targets=y), expected)


def test_gauss_newton_losses_give_exact_identity():
    outputs = torch.randn(7, 3, dtype=torch.float64)
    total = torch.zeros(3, 3, dtype=torch.float64)
    out = outputs.requires_grad_(True)
    losses = acktr.gauss_newton_losses(out)
    assert len(losses) == 3
    for loss in losses:
        (g,) = torch.autograd.grad(loss, out, retain_graph=True)
        g = g * 7
        total += g.T @ g / 7
    torch.testing.assert_close(total / 3, torch.eye(3, dtype=torch.float64))


def test_bad_kind_and_nonfinite_outputs():
    with pytest.raises(ValueError, match="kind must be one of"):
        acktr.fisher_loss(torch.zeros(2, 2), "poisson")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="either a Distribution"):
        acktr.fisher_loss(torch.distributions.Normal(0.0, 1.0), "gaussian")
    nan = torch.tensor([[float("nan"), 0.0]])
    assert torch.isnan(acktr.fisher_loss(nan, "categorical"))  # no crash: the step is skipped
