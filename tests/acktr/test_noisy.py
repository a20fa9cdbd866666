"""Noisy natural gradient (NoisyAdam, NoisyKFAC) and Bayes by Backprop, against closed forms."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from acktr.losses import fisher_loss
from acktr.noisy import BayesByBackprop, NoisyAdam, NoisyKFAC
from acktr.noisy.diagonal import DiagonalFisher
from acktr.noisy.regression import BayesianMLP, FitConfig, evaluate, fit

N_DATA = 50


def data(n: int = 8, d_in: int = 3, d_out: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d_in, generator=g, dtype=torch.float64)
    y = torch.randn(n, d_out, generator=g, dtype=torch.float64)
    y_fisher = torch.randn(n, d_out, generator=g, dtype=torch.float64)
    return x, y, y_fisher


def mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return 0.5 * ((out - y) ** 2).sum(-1).mean()


def train_step(opt, model, x, y, y_fisher=None) -> list[torch.Tensor]:
    """One step; the Fisher targets are given (deterministic) or sampled. Returns the sample."""
    with opt.sample():
        sample = [p.detach().clone() for p in model.parameters()]
        out = model(x)
        with opt.record_stats():
            fisher_loss(out, "gaussian", targets=y_fisher).backward(retain_graph=True)
        opt.zero_grad()
        mse(out, y).backward()
    opt.step()
    return sample


def augmented(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)


def flat(model: nn.Linear) -> torch.Tensor:
    return torch.cat([model.weight.detach(), model.bias.detach().unsqueeze(1)], 1).flatten()


def empirical_cov(opt, model: nn.Linear, n: int) -> torch.Tensor:
    samples = []
    for _ in range(n):
        with opt.sample():
            samples.append(flat(model))
    s = torch.stack(samples)
    return torch.cov(s.T)


# ---------------------------------------------------------------------- posterior covariance
def test_noisy_adam_samples_have_the_diagonal_posterior_covariance(float64):
    x, y, yf = data()
    model = nn.Linear(3, 2)
    opt = NoisyAdam(model, N_DATA, lr=1e-3, kl_weight=0.5, prior_var=2.0)
    train_step(opt, model, x, y, yf)
    f = torch.cat([opt.blocks["weight"].F, opt.blocks["bias"].F.unsqueeze(1)], 1).flatten()
    expected = 0.5 / N_DATA / (f + 0.5 / (N_DATA * 2.0))  # (lambda/N) (f + gamma_in)^-1
    cov = empirical_cov(opt, model, 6000)  # sampling error of a variance: sqrt(2/6000) = 1.8%
    assert torch.allclose(cov.diagonal(), expected, rtol=0.08)
    off = cov - torch.diag(cov.diagonal())
    assert off.abs().max() < 0.07 * expected.max()


def test_noisy_kfac_samples_have_the_kronecker_posterior_covariance(float64):
    x, y, yf = data()
    model = nn.Linear(3, 2)
    lam, eta = 0.5, 2.0
    opt = NoisyKFAC(model, N_DATA, lr=1e-3, kl_weight=lam, prior_var=eta)
    train_step(opt, model, x, y, yf)
    # Closed form from the statistics, computed here: A = mean a_bar a_bar^T, S = mean g g^T.
    a = augmented(x).T @ augmented(x) / len(x)
    block = opt.blocks["Linear"]
    assert torch.allclose(block.A, a)
    s = block.G
    gamma_in = lam / (N_DATA * eta)
    pi = math.sqrt((a.trace() / 4) / (s.trace() / 2))
    cov_s = torch.linalg.inv(s + math.sqrt(gamma_in) / pi * torch.eye(2))
    cov_a = torch.linalg.inv(a + pi * math.sqrt(gamma_in) * torch.eye(4))
    expected = lam / N_DATA * torch.kron(cov_s, cov_a)  # vec(W) row-major: kron(S^-1, A^-1)
    assert torch.allclose(opt.posterior_covariance("Linear"), expected, rtol=1e-10, atol=0)
    cov = empirical_cov(opt, model, 8000)  # sampling error ~ 1.1% of the largest variance
    assert (cov - expected).abs().max() < 0.06 * expected.diagonal().max()


def test_before_any_statistics_the_posterior_has_std_init_std(float64):
    model = nn.Linear(3, 2)
    for opt in (NoisyAdam(model, N_DATA, init_std=0.1), NoisyKFAC(model, N_DATA, init_std=0.1)):
        cov = empirical_cov(opt, model, 4000)
        assert torch.allclose(cov.diagonal(), torch.full((8,), 0.01), rtol=0.1)


def test_sample_context_restores_the_means(float64):
    model = nn.Linear(3, 2)
    before = flat(model)
    opt = NoisyKFAC(model, N_DATA)
    with opt.sample():
        assert not torch.equal(flat(model), before)
    assert torch.equal(flat(model), before)


# ---------------------------------------------------------------------- hand-computed steps
def test_noisy_kfac_step_matches_a_dense_damped_solve(float64):
    x, y, yf = data()
    model = nn.Linear(3, 2)
    lr, lam, eta, gamma_ex = 0.3, 1.0, 1.0, 1e-2
    opt = NoisyKFAC(model, N_DATA, lr=lr, kl_weight=lam, prior_var=eta, damping_ex=gamma_ex)
    mu = flat(model)
    sample = train_step(opt, model, x, y, yf)
    w = torch.cat([sample[0], sample[1].unsqueeze(1)], 1)
    xa = augmented(x)
    out = xa @ w.T
    grad = (out - y).T @ xa / len(x)  # d mse / dW at the sample
    g = out - yf  # per-example output gradients of the Fisher loss
    a, s = xa.T @ xa / len(x), g.T @ g / len(x)
    gamma_in = lam / (N_DATA * eta)
    gamma = gamma_in + gamma_ex
    pi = math.sqrt((a.trace() / 4) / (s.trace() / 2))
    root = math.sqrt(gamma)
    damped = torch.kron(s + root / pi * torch.eye(2), a + pi * root * torch.eye(4))
    v = (grad + gamma_in * w).flatten()
    expected = mu - lr * torch.linalg.solve(damped, v)
    assert torch.allclose(flat(model), expected, rtol=1e-10, atol=1e-12)


def test_noisy_adam_two_steps_match_algorithm_1(float64):
    x, y, yf = data()
    model = nn.Linear(3, 2)
    lr, (b1, b2), gamma_ex = 0.05, (0.9, 0.999), 1e-2
    opt = NoisyAdam(model, N_DATA, lr=lr, betas=(b1, b2), damping_ex=gamma_ex)
    gamma_in = 1.0 / N_DATA
    mu = flat(model)
    m = torch.zeros_like(mu)
    f = None
    for k in (1, 2):
        x_k, y_k, yf_k = data(seed=k)
        sample = train_step(opt, model, x_k, y_k, yf_k)
        w = torch.cat([sample[0], sample[1].unsqueeze(1)], 1)
        xa = augmented(x_k)
        out = xa @ w.T
        grad = ((out - y_k).T @ xa / len(x_k)).flatten()
        per_example = torch.einsum("no,ni->noi", out - yf_k, xa).reshape(len(x_k), -1)
        f_new = (per_example**2).mean(0)  # exact per-example diagonal Fisher
        f = f_new if f is None else f + max(1 - b2, 1 / k) * (f_new - f)  # running-mean warm-up
        m = b1 * m + (1 - b1) * (grad + gamma_in * w.flatten())
        mu = mu - lr * (m / (1 - b1**k)) / (f + gamma_in + gamma_ex)
        assert torch.allclose(flat(model), mu, rtol=1e-10, atol=1e-12)


def test_diagonal_fisher_is_the_mean_squared_per_example_gradient(float64):
    torch.manual_seed(0)
    scale = nn.Parameter(torch.tensor(1.5))
    net = nn.Sequential(nn.Conv2d(2, 3, 2), nn.Tanh(), nn.Flatten(), nn.Linear(12, 2))

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.net, self.scale = net, scale

        def forward(self, x):
            return self.scale * self.net(x)

    model = Model()
    x = torch.randn(5, 2, 3, 3)
    yf = torch.randn(5, 2)
    fisher = DiagonalFisher(model)
    with fisher.record(decay=0.9):
        fisher_loss(model(x), "gaussian", targets=yf).backward()
    assert fisher.exact == {"net.0.weight", "net.0.bias", "net.3.weight", "net.3.bias"}
    per_example = []
    for i in range(5):
        loss = 0.5 * ((model(x[i : i + 1]) - yf[i : i + 1]) ** 2).sum()
        per_example.append(torch.autograd.grad(loss, list(model.parameters())))
    names = [n for n, _ in model.named_parameters()]
    for j, name in enumerate(names):
        exact = torch.stack([g[j] ** 2 for g in per_example]).mean(0)
        got = fisher.blocks[name].F
        if name in fisher.exact:
            assert torch.allclose(got, exact, rtol=1e-10, atol=1e-14), name
        else:  # the scale gets the unbiased B * mean_grad^2 estimate
            mean_grad = torch.stack([g[j] for g in per_example]).mean(0)
            assert torch.allclose(got, 5 * mean_grad**2, rtol=1e-10), name


def test_bbb_gradients_equal_autograd_of_the_one_sample_objective(float64):
    x, y, _ = data()
    model = nn.Linear(3, 2)
    lam, eta = 0.7, 1.5
    opt = BayesByBackprop(model, N_DATA, lr=1e-3, kl_weight=lam, prior_var=eta, init_std=0.2)
    mu = [p.detach().clone().requires_grad_() for p in model.parameters()]
    rho = [r.clone().requires_grad_() for r in opt.rhos]
    torch.manual_seed(3)
    with opt.sample():
        opt.zero_grad()
        mse(model(x), y).backward()
    eps = opt._eps
    opt.step()
    sig = [torch.nn.functional.softplus(r) for r in rho]
    w = [m + s * e for m, s, e in zip(mu, sig, eps, strict=True)]
    kl = sum(
        0.5 * ((s**2 + m**2) / eta - 1 - torch.log(s**2 / eta)).sum()
        for m, s in zip(mu, sig, strict=True)
    )
    objective = mse(x @ w[0].T + w[1], y) + lam / N_DATA * kl
    grads = torch.autograd.grad(objective, mu + rho)
    for p, g in zip(list(model.parameters()) + opt.rhos, grads, strict=True):
        assert torch.allclose(p.grad, g, rtol=1e-10, atol=1e-14)


# ---------------------------------------------------------------------- exact posterior
@pytest.mark.medium
@pytest.mark.parametrize("cls", [NoisyAdam, NoisyKFAC])
def test_bayesian_linear_regression_reaches_the_exact_posterior(float64, cls):
    """One linear layer, Gaussian likelihood with known precision: the ELBO optimum of the MVG
    family is the exact posterior N(m, (tau X^T X + I/eta)^-1); both methods get close (the
    inputs are isotropic, so the exact posterior is nearly diagonal)."""
    n, d, tau = 200, 4, 4.0
    x = torch.randn(n, d)
    y = x @ torch.randn(d) + tau**-0.5 * torch.randn(n)
    xa = augmented(x)
    cov = torch.linalg.inv(tau * xa.T @ xa + torch.eye(d + 1))
    mean = cov @ (tau * xa.T @ y)
    model = nn.Linear(d, 1)
    opt = cls(model, n, lr=0.05 if cls is NoisyKFAC else 0.01)
    for _ in range(40):
        for idx in torch.randperm(n).split(10):
            with opt.sample():
                out = model(x[idx]).squeeze(-1)
                with opt.record_stats():
                    dist = torch.distributions.Normal(out, tau**-0.5)
                    fisher_loss(dist).backward(retain_graph=True)
                opt.zero_grad()
                (0.5 * tau * (out - y[idx]) ** 2).mean().backward()
            opt.step()
    assert (flat(model) - mean).norm() < 0.05 * mean.norm()
    if cls is NoisyKFAC:
        var = opt.posterior_covariance("Linear").diagonal()
    else:
        v = opt.posterior_variance()
        var = torch.cat([v["weight"].flatten(), v["bias"]])
    assert torch.allclose(var, cov.diagonal(), rtol=0.2)


# ---------------------------------------------------------------------- regression helper
def test_fit_and_evaluate_run_every_method_and_the_loss_falls():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(60, 3, generator=g)
    y = torch.sin(x[:, 0]) + 0.1 * torch.randn(60, generator=g)
    for method in ("bbb", "noisy_adam", "noisy_kfac"):
        model, opt, hist = fit(x, y, FitConfig(method=method, epochs=8, lr=1e-2), seed=0)
        assert hist[-1] < hist[0], method
        res = evaluate(model, opt, x, y, y_scale=2.0, n_samples=5)
        assert math.isfinite(res["rmse"]) and math.isfinite(res["loglik"])


# ---------------------------------------------------------------------- errors
@pytest.mark.parametrize("cls", [NoisyAdam, NoisyKFAC, BayesByBackprop])
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_data": 0}, "n_data"),
        ({"n_data": 2.5}, "n_data"),
        ({"kl_weight": 0.0}, "kl_weight"),
        ({"prior_var": -1.0}, "prior_var"),
        ({"prior_var": float("inf")}, "prior_var"),
        ({"lr": 0.0}, "lr"),
    ],
)
def test_invalid_hyperparameters_raise(cls, kwargs, match):
    args = {"n_data": 10, **kwargs}
    with pytest.raises(ValueError, match=match):
        cls(nn.Linear(2, 1), **args)


def test_invalid_optimizer_specific_hyperparameters_raise():
    m = nn.Linear(2, 1)
    with pytest.raises(ValueError, match="damping_ex"):
        NoisyKFAC(m, 10, damping_ex=-1.0)
    with pytest.raises(ValueError, match="betas"):
        NoisyAdam(m, 10, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="init_std"):
        NoisyAdam(m, 10, init_std=0.0)
    with pytest.raises(ValueError, match="init_std"):
        BayesByBackprop(m, 10, init_std=-1.0)
    with pytest.raises(ValueError, match="inverse_every"):
        NoisyKFAC(m, 10, inverse_every=0)
    with pytest.raises(ValueError, match="hidden"):
        BayesianMLP(3, hidden=0)


def test_noisy_kfac_rejects_parameters_outside_kfac_layers():
    model = nn.Sequential(nn.Linear(2, 3), nn.LayerNorm(3), nn.Linear(3, 1))
    with pytest.raises(ValueError, match=r"\['1.bias', '1.weight'\].*NoisyAdam"):
        NoisyKFAC(model, 10)
    NoisyAdam(model, 10)  # the factorized posterior handles any parameter


@pytest.mark.parametrize("cls", [NoisyAdam, NoisyKFAC, BayesByBackprop])
def test_step_without_a_sample_raises(cls):
    model = nn.Linear(2, 1)
    opt = cls(model, 10)
    model(torch.randn(4, 2)).sum().backward()
    with pytest.raises(RuntimeError, match="sample"):
        opt.step()


def test_noisy_adam_step_without_statistics_raises():
    model = nn.Linear(2, 1)
    opt = NoisyAdam(model, 10)
    with opt.sample():
        model(torch.randn(4, 2)).sum().backward()
    with pytest.raises(RuntimeError, match="record_stats"):
        opt.step()


@pytest.mark.parametrize("cls", [NoisyAdam, NoisyKFAC])
def test_state_dict_round_trip_gives_the_same_next_step(float64, cls):
    x, y, yf = data()
    model = nn.Linear(3, 2)
    opt = cls(model, N_DATA, lr=0.1)
    for _ in range(3):
        train_step(opt, model, x, y, yf)
    state = copy.deepcopy(opt.state_dict())  # state_dict() holds references, as torch's
    clone = nn.Linear(3, 2)
    clone.load_state_dict(model.state_dict())
    opt2 = cls(clone, N_DATA, lr=0.1)
    opt2.load_state_dict(state)
    torch.manual_seed(5)
    train_step(opt, model, x, y, yf)
    torch.manual_seed(5)
    train_step(opt2, clone, x, y, yf)
    assert torch.allclose(flat(model), flat(clone), rtol=1e-12)
