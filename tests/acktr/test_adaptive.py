"""Adaptive K-FAC (Martens & Grosse 2015, sections 6-7) against dense computations in float64."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import acktr
from acktr.adaptive import (
    AdaptiveSettings,
    QuadraticModel,
    levenberg_marquardt,
    solve_quadratic_model,
)
from acktr.curvature import (
    fisher_output_product,
    ggn_vector_product,
    jacobian_vector_products,
    loss_output_product,
    quadratic_forms,
)
from tests.acktr.exact import layer_coordinates, per_example_jacobians
from tests.acktr.test_optimizer import ill_conditioned_regression, mse, optimum_loss

KINDS = ["gaussian", "categorical", "bernoulli"]


def nll(kind: str, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The negative log-likelihood of ``kind`` under the library's convention (batch mean)."""
    if kind == "gaussian":
        return 0.5 * (out - y).pow(2).sum(-1).mean()
    if kind == "categorical":
        return F.cross_entropy(out, y)
    return F.binary_cross_entropy_with_logits(out, y, reduction="sum") / out.shape[0]


def targets(kind: str, b: int, k: int) -> torch.Tensor:
    if kind == "categorical":
        return torch.randint(0, k, (b,))
    if kind == "bernoulli":
        return torch.randint(0, 2, (b, k)).double()
    return torch.randn(b, k)


def dense_ggn(model: nn.Module, layers: list[nn.Module], x: torch.Tensor, kind: str):
    """``mean_b J_b^T H_b J_b`` from per-example Jacobians, ``H`` the output Fisher of ``kind``."""
    j = per_example_jacobians(model, layers, x)
    with torch.no_grad():
        z = model(x)
    k = z.shape[1]
    if kind == "gaussian":
        h = torch.eye(k).expand(len(x), k, k)
    elif kind == "categorical":
        p = torch.softmax(z, -1)
        h = torch.diag_embed(p) - p.unsqueeze(2) * p.unsqueeze(1)
    else:
        s = torch.sigmoid(z)
        h = torch.diag_embed(s * (1 - s))
    return torch.einsum("bkp,bkl,blq->pq", j, h, j) / len(x)


def flat_coords(vectors: list[torch.Tensor], layers: list[nn.Module]) -> torch.Tensor:
    """Parameter-shaped tensors (weight, bias per layer) to the dense matrices' coordinates."""
    out, i = [], 0
    for m in layers:
        w = vectors[i].reshape(m.weight.shape[0], -1)
        i += 1
        if m.bias is not None:
            w = torch.cat([w, vectors[i].unsqueeze(1)], 1)
            i += 1
        out.append(w.flatten())
    return torch.cat(out)


def tiny_net(k: int = 3) -> tuple[nn.Module, list[nn.Module]]:
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, k))
    return model, [model[0], model[2]]


# ---------------------------------------------------------------------------- curvature products
@pytest.mark.parametrize("kind", KINDS)
def test_curvature_vector_product_equals_dense_ggn_times_v(float64, kind):
    model, layers = tiny_net()
    x, y = torch.randn(6, 4), targets(kind, 6, 3)
    params = [p for m in layers for p in layer_coordinates(m)]
    v = [torch.randn_like(p) for p in params]
    dense = dense_ggn(model, layers, x, kind) @ flat_coords(v, layers)
    out = model(x)
    # the loss's own output Hessian (what adaptive mode uses) and the closed form agree
    for product in (loss_output_product(nll(kind, out, y), out), fisher_output_product(out, kind)):
        gv = ggn_vector_product(out, params, v, product)
        torch.testing.assert_close(flat_coords(gv, layers), dense, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_quadratic_forms_equal_dense_v_ggn_w(float64, kind):
    model, layers = tiny_net()
    x, y = torch.randn(6, 4), targets(kind, 6, 3)
    params = [p for m in layers for p in layer_coordinates(m)]
    vs = [[torch.randn_like(p) for p in params] for _ in range(3)]
    out = model(x)
    jvs = jacobian_vector_products(out, params, vs)
    got = quadratic_forms(jvs, loss_output_product(nll(kind, out, y), out))
    g = dense_ggn(model, layers, x, kind)
    flat = torch.stack([flat_coords(v, layers) for v in vs])
    torch.testing.assert_close(got, flat @ g @ flat.T, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------- the 2x2 solve
def test_solve_is_the_dense_two_by_two_solve_with_weight_decay_and_damping(float64):
    a = torch.randn(7, 7)
    fisher = a @ a.T
    grad, delta, prev = torch.randn(7), torch.randn(7), torch.randn(7)
    eta, lam = 0.03, 0.2
    v = torch.stack([delta, prev])
    model = QuadraticModel(v @ fisher @ v.T, v @ v.T, eta * v @ v.T, v @ grad)
    sol = solve_quadratic_model(model, lam)
    big = fisher + (lam + eta) * torch.eye(7)
    want = -torch.linalg.solve(v @ big @ v.T, v @ grad)
    torch.testing.assert_close(sol.coefficients, want, rtol=1e-12, atol=1e-12)
    step = want @ v  # the model value without lambda (for rho), and with it
    undamped = fisher + eta * torch.eye(7)
    assert sol.change == pytest.approx(float(0.5 * step @ undamped @ step + grad @ step), rel=1e-12)
    assert sol.damped_change == pytest.approx(float(0.5 * step @ big @ step + grad @ step),
                                              rel=1e-12)
    # parallel directions (or delta_0 = 0): the 1-D solve of section 6.4
    par = QuadraticModel(*(torch.stack([delta, 2 * delta]) @ m @ torch.stack([delta, 2 * delta]).T
                           for m in (fisher, torch.eye(7), eta * torch.eye(7))),
                         torch.stack([delta, 2 * delta]) @ grad)
    w = solve_quadratic_model(par, lam).coefficients
    assert w[1] == 0
    assert float(w[0]) == pytest.approx(float(-(delta @ grad) / (delta @ big @ delta)), rel=1e-12)


def _regression_step_by_hand(opt, model, x, y, eta):
    """What the optimizer's second step must be, computed densely: the gradient of h, and the
    dense GGN (a linear model with Gaussian output: the exact Hessian of the loss)."""
    params = [model.weight, model.bias]
    theta = [p.detach().clone() for p in params]
    loss = mse(model(x), y)
    grads = torch.autograd.grad(loss, params)
    g = flat_coords([gr + eta * t for gr, t in zip(grads, theta, strict=True)], [model])
    ggn = dense_ggn(model, [model], x, "gaussian")
    return theta, g, ggn, float(loss.detach())


@pytest.mark.parametrize("scheme", ["tikhonov", "eigen"])
def test_alpha_mu_and_predicted_reduction_equal_the_dense_quadratic_model(float64, scheme):
    x, y = ill_conditioned_regression(n=200)
    model = nn.Linear(6, 3)
    eta = 1e-2
    opt = acktr.KFAC(model, adaptive=True, damping_scheme=scheme, weight_decay=eta)
    opt.step(lambda: mse(model(x), y))
    prev = flat_coords([opt.state[p]["adaptive_delta"] for p in (model.weight, model.bias)],
                       [model])
    lam = opt.metrics()["lambda"]  # step 1 is not an LM step: this lambda is the one it uses
    theta, g, ggn, _ = _regression_step_by_hand(opt, model, x, y, eta)
    opt.step(lambda: mse(model(x), y))
    m = opt.metrics()
    assert m["lambda"] == lam and m["rejected_steps"] == 0
    nat = flat_coords([model.weight.grad, model.bias.grad], [model])  # F~^-1 g, left in .grad
    v = torch.stack([-nat, prev])
    big = ggn + (lam + eta) * torch.eye(len(g))
    alpha, mu = (-torch.linalg.solve(v @ big @ v.T, v @ g)).tolist()
    assert m["alpha"] == pytest.approx(alpha, rel=1e-8)
    assert m["mu"] == pytest.approx(mu, rel=1e-8)
    step = flat_coords([p.detach() - t for p, t in zip((model.weight, model.bias), theta,
                                                        strict=True)], [model])
    torch.testing.assert_close(step, alpha * v[0] + mu * v[1], rtol=1e-9, atol=1e-12)
    predicted = float(0.5 * step @ (ggn + eta * torch.eye(len(g))) @ step + g @ step)
    assert m["predicted_change"] == pytest.approx(predicted, rel=1e-9)
    # h is quadratic here (linear model, squared error, L2): the model is exact, rho = 1
    assert m["rho"] == pytest.approx(1.0, abs=1e-9)


# ---------------------------------------------------------------------------- LM rule, safeguards
def test_levenberg_marquardt_moves_lambda_the_right_way():
    omega = AdaptiveSettings().omega1
    assert omega == pytest.approx((19 / 20) ** 5)
    assert levenberg_marquardt(1.0, 0.9, omega) == pytest.approx(omega)  # good model: less
    assert levenberg_marquardt(1.0, 0.1, omega) == pytest.approx(1 / omega)  # poor: more
    assert levenberg_marquardt(1.0, -3.0, omega) == pytest.approx(1 / omega)
    assert levenberg_marquardt(1.0, 0.5, omega) == 1.0  # in between: unchanged
    assert levenberg_marquardt(1.0, math.nan, omega) == pytest.approx(1 / omega)
    assert AdaptiveSettings().omega2 == pytest.approx(math.sqrt(19 / 20) ** 20)


def _net_and_data():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
    return model, torch.randn(32, 4), torch.randn(32, 3)


@pytest.mark.parametrize("rho_wanted, direction", [(0.9, -1), (0.1, 1), (0.5, 0)])
def test_lm_step_of_the_optimizer_follows_rho(float64, monkeypatch, rho_wanted, direction):
    """Constructed rho: the closure's loss after the step is set so that rho is the wanted value;
    lambda moves down, up or not at all at the LM step (step 0)."""
    model, x, y = _net_and_data()
    opt = acktr.KFAC(model, adaptive=True)
    calls = {"n": 0}
    state = {}

    def closure():
        calls["n"] += 1
        loss = mse(model(x), y)
        if calls["n"] == 2:  # the evaluation after the step
            st = opt._adaptive.state
            return torch.tensor(st.loss + rho_wanted * st.predicted_change)
        return loss

    lam0 = opt.metrics()["lambda"]
    opt.step(closure)
    state.update(opt.metrics())
    assert state["rho"] == pytest.approx(rho_wanted, rel=1e-9)
    omega = AdaptiveSettings().omega1
    assert state["lambda"] == pytest.approx(lam0 * omega ** (-direction))


@pytest.mark.parametrize("bad", ["nan_after", "increase_after", "nan_before"])
def test_nonfinite_or_increased_loss_is_survived(float64, bad):
    model, x, y = _net_and_data()
    opt = acktr.KFAC(model, adaptive=True)
    for _ in range(10):  # until a step stands, so that there is a previous update
        opt.step(lambda: mse(model(x), y))
        if opt._adaptive.state.in_a_row == 0 and "adaptive_delta" in opt.state[model[0].weight]:
            break
    lam = opt.metrics()["lambda"]
    rejected = opt.metrics()["rejected_steps"]
    before = [p.detach().clone() for p in model.parameters()]
    prev_delta = [opt.state[p]["adaptive_delta"].clone() for p in model.parameters()]
    calls = {"n": 0}

    def closure():
        calls["n"] += 1
        loss = mse(model(x), y)
        if bad == "nan_before" or (calls["n"] == 2 and bad == "nan_after"):
            return loss * float("nan")
        if calls["n"] == 2:
            return loss.detach() + 10.0
        return loss

    opt.step(closure)
    m = opt.metrics()
    assert m["rejected_steps"] == rejected + 1
    omega = AdaptiveSettings().omega1
    assert m["lambda"] == pytest.approx(lam / omega)  # lambda grows
    after = [p.detach() for p in model.parameters()]
    if bad == "nan_before":  # the previous step, which led to the NaN, is undone
        for a, b, d in zip(after, before, prev_delta, strict=True):
            torch.testing.assert_close(a, b - d, rtol=0, atol=1e-14)
    else:  # this step is undone, the previous update is still the momentum direction
        for a, b in zip(after, before, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-14)
        for p, d in zip(model.parameters(), prev_delta, strict=True):
            assert torch.equal(opt.state[p]["adaptive_delta"], d)
    for _ in range(5):  # and training goes on
        opt.step(lambda: mse(model(x), y))
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert float(mse(model(x), y)) < float(mse(model(x) * 0 + model(x).detach(), y)) + 1e-12


# ---------------------------------------------------------------------------- end to end
def test_least_squares_reaches_the_optimum_in_a_few_steps_without_hyperparameters():
    x, y = ill_conditioned_regression()
    best = optimum_loss(x, y)
    torch.manual_seed(0)
    model = nn.Linear(6, 3).double()
    opt = acktr.KFAC(model, adaptive=True)
    gaps = []
    for _ in range(5):
        opt.step(lambda: mse(model(x), y))
        gaps.append(float(mse(model(x), y).detach()) / best - 1)
    print("relative gap to the optimum after each step:", [f"{g:.1e}" for g in gaps])
    assert gaps[-1] < 0.01


@pytest.mark.parametrize("loss_fn, kind, scale", [
    (lambda out, y: F.cross_entropy(out, y.argmax(1)), "categorical", 1.0),
    (lambda out, y: 0.5 * (out - y).pow(2).sum(1).mean(), "gaussian", 1.0),
    (lambda out, y: F.mse_loss(out, y), "gaussian", 2 / 3),
    (lambda out, y: F.binary_cross_entropy_with_logits(out, (y > 0).double()), "bernoulli", 1 / 3),
])
def test_loss_kind_and_scale_are_recognised(float64, loss_fn, kind, scale):
    model, x, y = _net_and_data()
    opt = acktr.KFAC(model, adaptive=True)
    opt.step(lambda: loss_fn(model(x), y))
    st = opt._adaptive.state
    assert st.loss_kind == kind
    assert st.loss_scale == pytest.approx(scale, rel=1e-9)


def test_unrecognised_loss_asks_for_loss_kind(float64):
    model, x, y = _net_and_data()
    opt = acktr.KFAC(model, adaptive=True)
    with pytest.raises(ValueError, match="pass loss_kind="):
        opt.step(lambda: (model(x) - y).pow(4).mean())
    opt = acktr.KFAC(model, adaptive=True, loss_kind="gaussian")  # given: a warning, no error
    with pytest.warns(RuntimeWarning, match="not the Fisher of a 'gaussian'"):
        opt.step(lambda: (model(x) - y).pow(4).mean())


def test_closure_that_runs_backward_itself_gives_the_same_step(float64):
    model, x, y = _net_and_data()
    twin = copy.deepcopy(model)
    a = acktr.KFAC(model, adaptive=True, loss_kind="gaussian")
    b = acktr.KFAC(twin, adaptive=True, loss_kind="gaussian")

    def lbfgs_style():
        b.zero_grad()
        loss = mse(twin(x), y)
        loss.backward()
        return loss

    for step in range(3):
        torch.manual_seed(step)
        a.step(lambda: mse(model(x), y))
        torch.manual_seed(step)
        b.step(lbfgs_style)
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12)


def test_state_dict_round_trip_resumes_identically(float64, tmp_path):
    model, x, y = _net_and_data()
    opt = acktr.KFAC(model, adaptive=True, stats_every=2, inverse_every=3)
    for _ in range(4):
        opt.step(lambda: mse(model(x), y))
    path = tmp_path / "ckpt.pt"
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(),
                "rng": torch.random.get_rng_state()}, path)
    for _ in range(7):
        opt.step(lambda: mse(model(x), y))
    want = [p.detach().clone() for p in model.parameters()]
    want_metrics = opt.metrics()

    ckpt = torch.load(path, weights_only=True)
    model2, _, _ = _net_and_data()
    opt2 = acktr.KFAC(model2, adaptive=True, stats_every=2, inverse_every=3)
    model2.load_state_dict(ckpt["model"])
    opt2.load_state_dict(ckpt["opt"])
    torch.random.set_rng_state(ckpt["rng"])
    for _ in range(7):
        opt2.step(lambda: mse(model2(x), y))
    for p, q in zip(model2.parameters(), want, strict=True):
        assert torch.equal(p, q)
    got = opt2.metrics()
    for key in ("alpha", "mu", "rho", "lambda", "gamma"):
        assert got[key] == want_metrics[key]


def test_metrics_and_intervals(float64):
    model, x, y = _net_and_data()
    settings = AdaptiveSettings(damping_interval=2, gamma_interval=3, adapt_every=2)
    opt = acktr.KFAC(model, adaptive=settings, stats_every=3, inverse_every=4)
    first = float(mse(model(x), y))
    for _ in range(12):
        opt.step(lambda: mse(model(x), y))
    m = opt.metrics()
    for key in ("alpha", "mu", "rho", "lambda", "gamma"):
        assert math.isfinite(m[key]), key
    assert m["damping"] == m["lambda"]
    assert float(mse(model(x), y)) < 0.9 * first
    assert opt.preconditioner.steps == 12


@pytest.mark.parametrize("kwargs, match", [
    ({"lr": 0.1}, "do not pass lr"),
    ({"momentum": 0.5, "kl_clip": 0.01}, "do not pass momentum, kl_clip"),
    ({"inverse_method": "inverse", "damping_scheme": "tikhonov"}, "inverse_method='eigen'"),
    ({"structure": "block_tridiagonal"}, "structure='block_diagonal'"),
    ({"loss_kind": "poisson"}, "loss_kind must be one of"),
    ({"damping": -1.0}, "damping must be"),
])
def test_invalid_adaptive_options_are_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        acktr.KFAC(nn.Linear(2, 2), adaptive=True, **kwargs)


def test_adaptive_step_needs_a_closure_returning_the_loss(float64):
    model, x, y = _net_and_data()
    opt = acktr.KFAC(model, adaptive=True)
    with pytest.raises(ValueError, match="needs a closure"):
        opt.step()
    with pytest.raises(ValueError, match="called 2 times"):
        opt.step(lambda: mse(model(x), y) + mse(model(x), y))
    with pytest.raises(ValueError, match="scalar tensor"):
        opt.step(lambda: float(mse(model(x), y)))


def test_non_adaptive_defaults_unchanged():
    opt = acktr.KFAC(nn.Linear(2, 2))
    group = opt.param_groups[0]
    assert (group["lr"], group["momentum"], opt.damping) == (0.1, 0.9, 0.1)
    assert not opt.adaptive


@pytest.mark.parametrize("kwargs", [{"async_inverse": True}, {"fallback": "identity"},
                                    {"damping_scheme": "tikhonov", "weight_decay": 1e-3,
                                     "weight_decay_on": "weights"}])
def test_adaptive_with_fallback_parameters_and_options_trains(float64, kwargs):
    from tests.acktr.exact import ScaledLinear

    torch.manual_seed(0)
    model = ScaledLinear()  # a parameter no Kronecker block claims: the fallback's
    x = torch.randn(64, 3)
    y = model(x).detach() * 0.5 + 0.1 * torch.randn(64, 2)
    opt = acktr.KFAC(model, adaptive=True, inverse_every=3, **kwargs)
    first = float(mse(model(x), y))
    for _ in range(15):
        opt.step(lambda: mse(model(x), y))
    assert float(mse(model(x), y)) < 0.2 * first
    assert model.scale.grad is not None  # preconditioned like every other parameter
