"""ExactNGD (Bernacchia et al. 2018) against the exact Fisher of tiny deep linear networks."""

from __future__ import annotations

import functools
import math

import pytest
import torch
from torch import nn

from acktr.exact_ngd import ExactNGD, damped_pinv, levenberg_marquardt, mlp_layers
from acktr.losses import fisher_loss, gauss_newton_losses
from tests.acktr.exact import exact_gauss_newton, per_example_jacobians

pytestmark = pytest.mark.usefixtures("float64")


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.norm(a - b) / torch.linalg.norm(b))


def mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return 0.5 * ((out - y) ** 2).sum(-1).mean()


def linear_net(widths: list[int], bias: bool = False) -> tuple[nn.Sequential, list[nn.Linear]]:
    layers = [nn.Linear(a, b, bias=bias) for a, b in zip(widths[:-1], widths[1:], strict=True)]
    return nn.Sequential(*layers), layers


def backward_stats_and_loss(
    opt: ExactNGD, out: torch.Tensor, y: torch.Tensor, exact: bool = False
) -> torch.Tensor:
    """Record the statistics of ``out`` (a Fisher loss with sampled targets, or with ``exact``
    the Gauss-Newton losses), then backpropagate the training loss into ``.grad``; returns it."""
    with opt.record_stats():
        stats_losses = gauss_newton_losses(out) if exact else [fisher_loss(out, "gaussian")]
        for stats_loss in stats_losses:
            stats_loss.backward(retain_graph=True)
    opt.zero_grad()
    loss = mse(out, y)
    loss.backward()
    return loss


def ngd_update(
    widths: list[int], bias: bool = False, damping: float = 0.0, n: int = 200
) -> tuple[nn.Sequential, list[nn.Linear], torch.Tensor, torch.Tensor, torch.Tensor, dict]:
    """One ExactNGD step (lr 1) from exact Gauss-Newton statistics of a batch; returns the model
    (before the step), its layers, x, y, the flat update D (theta_before - theta_after) and the
    optimizer's metrics."""
    model, layers = linear_net(widths, bias)
    x, y = torch.randn(n, widths[0]), torch.randn(n, widths[-1])
    opt = ExactNGD(model, lr=1.0, damping=damping)
    out = model(x)
    backward_stats_and_loss(opt, out, y, exact=True)
    before = flat_params(layers)
    state = [p.detach().clone() for p in model.parameters()]
    opt.step()
    delta = before - flat_params(layers)
    with torch.no_grad():
        for p, s in zip(model.parameters(), state, strict=True):
            p.copy_(s)
    return model, layers, x, y, delta, opt.metrics()


def flat_params(layers: list[nn.Linear]) -> torch.Tensor:
    """Every layer's ``[W | b]`` flattened row-major, in the order of tests.acktr.exact."""
    pieces = []
    for m in layers:
        w = m.weight.detach()
        if m.bias is not None:
            w = torch.cat([w, m.bias.detach().unsqueeze(1)], 1)
        pieces.append(w.flatten())
    return torch.cat(pieces)


def flat_gradient(model: nn.Module, layers: list[nn.Linear], x, y) -> torch.Tensor:
    model.zero_grad()
    mse(model(x), y).backward()
    pieces = []
    for m in layers:
        g = m.weight.grad
        if m.bias is not None:
            g = torch.cat([g, m.bias.grad.unsqueeze(1)], 1)
        pieces.append(g.flatten())
    return torch.cat(pieces)


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("widths", [[4, 4, 4, 4], [3, 5, 6, 4, 3]], ids=["square", "expand"])
def test_update_is_an_exact_fisher_natural_gradient(widths, bias):
    """Eq. 10 solves F D = grad for the singular exact Fisher, so its function-space step equals
    that of the Moore-Penrose natural gradient F^+ grad; it is a different generalized inverse,
    so D itself differs from F^+ grad by a null-space vector of F."""
    model, layers, x, y, delta, _ = ngd_update(widths, bias)
    fisher = exact_gauss_newton(model, layers, x)
    grad = flat_gradient(model, layers, x, y)
    assert torch.linalg.matrix_rank(fisher) < fisher.shape[0]  # singular, as the paper says
    assert rel_err(fisher @ delta, grad) < 1e-8
    moore_penrose = torch.linalg.pinv(fisher, hermitian=True) @ grad
    jac = per_example_jacobians(model, layers, x).reshape(-1, fisher.shape[0])
    assert rel_err(jac @ delta, jac @ moore_penrose) < 1e-8
    assert rel_err(delta, moore_penrose) > 0.1  # not the minimum-norm solution


def test_square_update_equals_closed_form_eq16():
    """Square invertible layers: D_i = (1/L) (W_L..W_{i+1})^-1 <(x_L - y) x^T> Sigma^-1
    (W_{i-1}..W_1)^-1 (eq. 16), computed from the weights alone."""
    widths = [4, 4, 4, 4]
    model, layers, x, y, delta, _ = ngd_update(widths)
    ws = [m.weight.detach() for m in layers]
    eye = torch.eye(4)

    def chain(ms):  # ms in forward order -> W_last ... W_first
        return functools.reduce(lambda acc, w: w @ acc, ms, eye)

    sigma = x.T @ x / len(x)
    err = (model(x) - y).detach().T @ x / len(x)
    expected = [
        torch.linalg.inv(chain(ws[i + 1 :])) @ err @ torch.linalg.inv(sigma)
        @ torch.linalg.inv(chain(ws[:i])) / len(ws)
        for i in range(len(ws))
    ]
    assert rel_err(delta, torch.cat([e.flatten() for e in expected])) < 1e-8


def test_bottleneck_network_follows_projected_dynamics_eq19():
    """With a bottleneck the total map moves by (1/L) sum_i P^a_i E Sigma^-1 P^b_i (eq. 19, to
    first order), P^a_i / P^b_i the projections on the range of W_L..W_{i+1} / the row space of
    (W_{i-1}..W_1) Sigma^(1/2); this is not the Moore-Penrose (Gauss-Newton) step."""
    widths = [4, 3, 2, 3, 4]
    model, layers, x, y, delta, _ = ngd_update(widths)
    ws = [m.weight.detach() for m in layers]
    n_layers = len(ws)
    sigma = x.T @ x / len(x)
    evals, evecs = torch.linalg.eigh(sigma)
    root, root_inv = (evecs * evals.sqrt()) @ evecs.T, (evecs / evals.sqrt()) @ evecs.T
    err = (model(x) - y).detach().T @ x / len(x)

    def chain(ms, dim):
        return functools.reduce(lambda acc, w: w @ acc, ms, torch.eye(dim))

    expected = torch.zeros(4, 4)
    for i in range(n_layers):
        b = chain(ws[i + 1 :], ws[i].shape[0])
        c = chain(ws[:i], 4) @ root
        p_a = b @ torch.linalg.pinv(b)
        p_b = torch.linalg.pinv(c) @ c
        expected += p_a @ err @ root_inv @ p_b @ root_inv / n_layers
    jac = per_example_jacobians(model, layers, x)  # (B, out, P): first-order change of W x
    change = torch.einsum("bkp,p->bk", jac, delta)
    assert rel_err(change, x @ expected.T) < 1e-8
    fisher = exact_gauss_newton(model, layers, x)
    grad = flat_gradient(model, layers, x, y)
    gauss_newton = torch.einsum("bkp,p->bk", jac, torch.linalg.pinv(fisher, hermitian=True) @ grad)
    assert rel_err(change, gauss_newton) > 0.05


def test_damped_step_matches_eq20():
    """Delta W_i = -(alpha/L) (Lt_i + sqrt(lam) I)^-1 grad_i (L_i + sqrt(lam) I)^-1 with the
    covariances of eqs. 14-15 computed from the weights."""
    widths, lam, alpha = [3, 5, 4, 2], 0.3, 0.7
    model, layers = linear_net(widths)
    ws = [m.weight.detach().clone() for m in layers]
    x, y = torch.randn(64, 3), torch.randn(64, 2)
    opt = ExactNGD(model, lr=alpha, damping=lam)
    out = model(x)
    backward_stats_and_loss(opt, out, y, exact=True)
    grads = [m.weight.grad.clone() for m in layers]
    opt.step()
    sigma = x.T @ x / len(x)
    for i, m in enumerate(layers):
        b = functools.reduce(lambda acc, w: w @ acc, ws[i + 1 :], torch.eye(widths[i + 1]))
        c = functools.reduce(lambda acc, w: w @ acc, ws[:i], torch.eye(3))
        lt = b.T @ b + math.sqrt(lam) * torch.eye(widths[i + 1])
        la = c @ sigma @ c.T + math.sqrt(lam) * torch.eye(widths[i])
        expected = ws[i] - alpha / 3 * torch.linalg.solve(lt, grads[i]) @ torch.linalg.inv(la)
        assert rel_err(m.weight.detach(), expected) < 1e-10


def test_sampled_targets_estimate_the_error_covariance():
    """K sampled targets in one context: G tends to <e e^T>_model = W_L^T W_L (eq. 14)."""
    model, layers = linear_net([3, 4, 2])
    x = torch.randn(500, 3)
    opt = ExactNGD(model)
    out = model(x)
    with opt.record_stats():
        for _ in range(20):  # K = 20
            fisher_loss(out, "gaussian").backward(retain_graph=True)
    w2 = layers[1].weight.detach()
    g = opt.blocks["0"].G
    assert rel_err(g, w2.T @ w2) < 0.05


def test_levenberg_marquardt_rule_eq21():
    assert levenberg_marquardt(1.0, 0.1) == 1.5
    assert levenberg_marquardt(1.0, float("nan")) == 1.5
    assert levenberg_marquardt(1.0, 0.5) == 1.0
    assert levenberg_marquardt(1.0, 0.9) == pytest.approx(2 / 3)


def test_closure_gives_rho_and_adapts_damping():
    """rho = (L_after - L_before) / ((-a + a^2/2) sum_i <D_i, grad_i>), all recomputed here."""
    model, layers = linear_net([3, 3, 2])
    x, y = torch.randn(50, 3), torch.randn(50, 2)
    opt = ExactNGD(model, lr=0.8, damping=0.05)
    out = model(x)
    loss = backward_stats_and_loss(opt, out, y)
    grads = [m.weight.grad.clone() for m in layers]
    directions = opt.natural_gradient()
    quad = sum(float((directions[n] * g).sum()) for n, g in zip(("0", "1"), grads, strict=True))
    before = float(loss.detach())
    opt.step(lambda: mse(model(x), y))
    after = float(mse(model(x), y).detach())
    rho = (after - before) / ((-0.8 + 0.32) * quad)
    m = opt.metrics()
    assert m["rho"] == pytest.approx(rho, rel=1e-10)
    assert m["next_damping"] == pytest.approx(levenberg_marquardt(0.05, rho))


def test_deep_linear_network_converges_to_least_squares_and_sgd_does_not():
    """Correlated inputs (variances 1 .. e^-5): NGD with adaptive damping is within 1% of the
    least-squares loss in 20 steps; SGD at a stable rate is far above after 20 steps."""
    g = torch.Generator().manual_seed(0)
    n0 = 6
    q, _ = torch.linalg.qr(torch.randn(n0, n0, generator=g))
    x = (torch.randn(2000, n0, generator=g) * torch.exp(-2.5 * torch.arange(n0) / n0)) @ q.T
    y = x @ torch.randn(n0, 4, generator=g) + 1e-3 * torch.randn(2000, 4, generator=g)
    best = float(mse(x @ torch.linalg.lstsq(x, y).solution, y))
    results = {}
    for name in ("ngd", "sgd"):
        torch.manual_seed(1)
        model, _ = linear_net([6, 8, 8, 8, 4])
        opt = ExactNGD(model, damping=1e-4) if name == "ngd" else torch.optim.SGD(
            model.parameters(), lr=0.05
        )
        for _ in range(20):
            out = model(x)
            if name == "ngd":
                with opt.record_stats():
                    fisher_loss(out, "gaussian").backward(retain_graph=True)
            opt.zero_grad()
            loss = mse(out, y)
            loss.backward()
            if name == "ngd":
                opt.step(lambda m=model: mse(m(x), y), loss=loss)
            else:
                opt.step()
        results[name] = float(mse(model(x), y).detach())
    assert results["ngd"] < 1.01 * best
    assert results["sgd"] > 10 * best


def test_nonlinear_mlp_trains():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 2))
    x = torch.randn(256, 4)
    y = torch.stack([torch.sin(x[:, 0]), x[:, 1] * x[:, 2]], 1)
    opt = ExactNGD(model, damping=1e-2)
    first = None
    for _ in range(30):
        out = model(x)
        loss = backward_stats_and_loss(opt, out, y)
        first = first if first is not None else float(loss.detach())
        opt.step(lambda: mse(model(x), y), loss=loss)
    assert float(mse(model(x), y).detach()) < 0.3 * first


def test_pseudo_inverse_cuts_round_off_eigenvalues():
    v = torch.randn(5, 2)
    m = v @ v.T + 1e-15 * torch.eye(5)  # rank 2 plus round-off
    assert rel_err(damped_pinv(m, 0.0, 1e-8), torch.linalg.pinv(v @ v.T)) < 1e-6
    assert rel_err(damped_pinv(m, 0.5, 1e-8), torch.linalg.inv(m + 0.5 * torch.eye(5))) < 1e-10


def test_state_dict_round_trip():
    model, _ = linear_net([3, 4, 2])
    x, y = torch.randn(20, 3), torch.randn(20, 2)
    opt = ExactNGD(model, damping=0.1, stat_decay=0.5)
    out = model(x)
    backward_stats_and_loss(opt, out, y)
    opt.step(lambda: mse(model(x), y))
    other = ExactNGD(model)
    other.load_state_dict(opt.state_dict())
    assert other.damping == opt.damping and other.steps == 1
    assert torch.equal(other.blocks["0"].G, opt.blocks["0"].G)
    with pytest.raises(ValueError, match="not an ExactNGD state dict"):
        other.load_state_dict(torch.optim.SGD(model.parameters(), lr=0.1).state_dict())


@pytest.mark.parametrize(
    "model, match",
    [
        (nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(8, 2)), "Conv2d"),
        (nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)), "BatchNorm1d"),
        (nn.Sequential(nn.Linear(3, 4), nn.Dropout(), nn.Linear(4, 2)), "Dropout"),
        (nn.Sequential(nn.Tanh()), "no trainable nn.Linear"),
    ],
)
def test_unsupported_models_are_clear_errors(model, match):
    with pytest.raises(ValueError, match=match):
        mlp_layers(model)
    with pytest.raises(ValueError, match=match):
        ExactNGD(model)


def test_bad_input_is_a_clear_error():
    model, _ = linear_net([3, 2])
    with pytest.raises(ValueError, match="damping must be"):
        ExactNGD(model, damping=-1.0)
    with pytest.raises(ValueError, match="lr must be"):
        ExactNGD(model, lr=0.0)
    with pytest.raises(ValueError, match="stat_decay"):
        ExactNGD(model, stat_decay=1.0)
    with pytest.raises(TypeError, match="torch.nn.Module"):
        ExactNGD("model")  # type: ignore[arg-type]
    opt = ExactNGD(model)
    model(torch.randn(4, 3)).sum().backward()
    with pytest.raises(RuntimeError, match="record_stats"):
        opt.step()
    with pytest.raises(ValueError, match=r"\(batch, features\)"):
        model(torch.randn(2, 4, 3))
