"""KFAC optimizer: the least-squares property, trust region, momentum, robustness, state."""

from __future__ import annotations

import copy
import math
import warnings

import pytest
import torch
from torch import nn

import acktr
from tests.acktr.exact import ScaledLinear


def ill_conditioned_regression(n: int = 2000, d_in: int = 6, d_out: int = 3, seed: int = 0):
    """Inputs with covariance condition number 1e3 (random rotation), a noisy linear teacher."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d_in, d_in, generator=g, dtype=torch.float64))
    scales = torch.logspace(0, -1.5, d_in, dtype=torch.float64)  # variances 1 .. 1e-3
    x = (torch.randn(n, d_in, generator=g, dtype=torch.float64) * scales) @ q.T + 2.0
    w = torch.randn(d_out, d_in, generator=g, dtype=torch.float64)
    y = x @ w.T + 0.1 * torch.randn(n, d_out, generator=g, dtype=torch.float64)
    return x, y


def mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The convention: batch mean of per-example losses (summed over outputs)."""
    return 0.5 * ((out - y) ** 2).sum(-1).mean()


def optimum_loss(x: torch.Tensor, y: torch.Tensor) -> float:
    xa = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)
    sol = torch.linalg.lstsq(xa, y).solution
    return float(mse(xa @ sol, y))


def kfac_step(opt, model, x, y, exact: bool = False) -> float:
    out = model(x)
    if opt.stats_due:
        with opt.record_stats():
            if exact:
                for loss in acktr.gauss_newton_losses(out):
                    loss.backward(retain_graph=True)
            else:
                acktr.fisher_loss(out, "gaussian").backward(retain_graph=True)
    opt.zero_grad()
    loss = mse(out, y)
    loss.backward()
    opt.step()
    return float(loss.detach())


def test_one_exact_gauss_newton_step_lands_on_least_squares_solution():
    x, y = ill_conditioned_regression()
    torch.manual_seed(0)
    model = nn.Linear(6, 3).double()
    opt = acktr.KFAC(model, lr=1.0, momentum=0.0, damping=1e-12)
    kfac_step(opt, model, x, y, exact=True)
    assert float(mse(model(x), y).detach()) == pytest.approx(optimum_loss(x, y), rel=1e-8)


def test_sampled_fisher_reaches_optimum_within_three_steps_while_sgd_is_far_off():
    x, y = ill_conditioned_regression()
    best = optimum_loss(x, y)
    torch.manual_seed(0)
    model = nn.Linear(6, 3).double()
    init = copy.deepcopy(model.state_dict())
    opt = acktr.KFAC(model, lr=1.0, momentum=0.0, damping=1e-8)
    for _ in range(3):
        kfac_step(opt, model, x, y)
    kfac_loss = float(mse(model(x), y).detach())
    assert kfac_loss <= 1.01 * best

    sgd_losses = {}
    for lr in [0.001, 0.003, 0.01, 0.03, 0.1]:  # 0.1 diverges: the largest curvature is ~ 40
        model.load_state_dict(init)
        sgd = torch.optim.SGD(model.parameters(), lr=lr)
        for _ in range(3):
            sgd.zero_grad()
            mse(model(x), y).backward()
            sgd.step()
        sgd_losses[lr] = float(mse(model(x), y).detach())
    best_sgd = min(v for v in sgd_losses.values() if math.isfinite(v))
    print(f"optimum {best:.4f}  K-FAC after 3 steps {kfac_loss:.4f}  best SGD {best_sgd:.4f}")
    assert best_sgd > 10 * best


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"lr": -1.0}, "lr must be"),
        ({"lr": 0.0}, "lr must be"),
        ({"damping": 0.0}, "damping must be"),
        ({"damping": -1e-3}, "damping must be"),
        ({"stat_decay": 1.0}, r"stat_decay must be in \[0, 1\)"),
        ({"stat_decay": -0.1}, "stat_decay"),
        ({"momentum": 1.5}, "momentum"),
        ({"kl_clip": 0.0}, "kl_clip"),
        ({"inverse_every": 0}, "inverse_every"),
        ({"stats_every": 1.5}, "stats_every"),
        ({"weight_decay": -1.0}, "weight_decay"),
        ({"damping_scheme": "levenberg"}, "damping_scheme must be one of 'eigen', 'tikhonov'"),
        ({"inverse_method": "inverse"}, "needs damping_scheme='tikhonov'"),
        ({"cold_start_steps": -1}, "cold_start_steps"),
        ({"fallback": "adam"}, "fallback"),
    ],
)
def test_invalid_hyperparameters_are_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        acktr.KFAC(nn.Linear(2, 2), **kwargs)


def test_model_without_supported_layers_is_a_clear_error():
    with pytest.raises(ValueError, match="no supported layer.*Linear, Conv2d"):
        acktr.KFAC(nn.Sequential(nn.LayerNorm(3)))
    with pytest.raises(TypeError, match="torch.nn.Module"):
        acktr.KFAC([torch.zeros(2, requires_grad=True)])  # type: ignore[arg-type]


def test_step_before_statistics_is_a_clear_error():
    model = nn.Linear(2, 2)
    opt = acktr.KFAC(model)
    model(torch.randn(4, 2)).sum().backward()
    with pytest.raises(RuntimeError, match="before any curvature statistics"):
        opt.step()


def test_layer_missing_from_the_fisher_loss_is_a_clear_error():
    model = nn.ModuleDict({"used": nn.Linear(2, 2), "unused": nn.Linear(2, 2)})
    opt = acktr.KFAC(model)
    out = model["used"](torch.randn(4, 2))
    with opt.record_stats():
        acktr.fisher_loss(out, "gaussian").backward(retain_graph=True)
    out.sum().backward()
    with pytest.raises(RuntimeError, match=r"\['unused'\] received no curvature statistics"):
        opt.step()


def test_record_stats_leaves_gradients_untouched():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    opt = acktr.KFAC(model)
    x = torch.randn(8, 3)
    out = model(x)
    out.pow(2).sum().backward(retain_graph=True)
    before = [p.grad.clone() for p in model.parameters()]
    with opt.record_stats():
        acktr.fisher_loss(out, "gaussian").backward()
    for b, p in zip(before, model.parameters(), strict=False):
        torch.testing.assert_close(p.grad, b)


def test_trust_region_bounds_the_approximate_kl():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 4))
    x, y = torch.randn(64, 5), torch.randint(0, 4, (64,))
    opt = acktr.KFAC(model, lr=1.0, kl_clip=1e-4, momentum=0.0)
    out = model(x)
    with opt.record_stats():
        acktr.fisher_loss(out, "categorical").backward(retain_graph=True)
    opt.zero_grad()
    nn.functional.cross_entropy(out, y).backward()
    opt.step()
    m = opt.metrics()
    assert m["trust_scale"] < 1.0  # the bound was active
    assert m["approx_kl"] == pytest.approx(1e-4, rel=1e-5)


def test_trust_region_quadratic_is_twice_the_true_kl_when_the_fisher_is_exact():
    """For a linear layer with a unit-variance Gaussian output, KL(p_old || p_new) is
    0.5 * mean ||delta out||^2 = 0.5 * delta^T F delta exactly, and the quantity the trust
    region bounds, lr^2 nu^2 Delta^T F Delta, must be twice it."""
    x, y = ill_conditioned_regression(n=500)
    torch.manual_seed(0)
    model = nn.Linear(6, 3).double()
    opt = acktr.KFAC(model, lr=1.0, kl_clip=1e-3, momentum=0.0, damping=1e-10)
    with torch.no_grad():
        before = model(x)
    kfac_step(opt, model, x, y, exact=True)
    with torch.no_grad():
        kl = 0.5 * float(((model(x) - before) ** 2).sum(-1).mean())
    m = opt.metrics()
    assert m["trust_scale"] < 1.0
    assert 2 * kl == pytest.approx(m["approx_kl"], rel=1e-6)
    assert m["approx_kl"] == pytest.approx(1e-3, rel=1e-9)


def test_momentum_is_an_average_of_steps_and_cold_start_is_sgd():
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    ref = copy.deepcopy(model)
    opt = acktr.KFAC(model, lr=0.5, momentum=0.9, cold_start_steps=2)
    sgd = torch.optim.SGD(ref.parameters(), lr=0.5 * (1 - 0.9), momentum=0.9)
    x = torch.randn(16, 3)
    for _ in range(2):
        for m, o in ((model, opt), (ref, sgd)):
            out = m(x)
            if o is opt:
                with opt.record_stats():
                    acktr.fisher_loss(out, "gaussian").backward(retain_graph=True)
            o.zero_grad()
            out.pow(2).sum(-1).mean().backward()
            o.step()
    for a, b in zip(model.parameters(), ref.parameters(), strict=False):
        torch.testing.assert_close(a, b)
    assert opt.preconditioner.blocks["Linear"].recorded  # statistics kept during cold start


def test_schedules_are_callables_of_the_step():
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    opt = acktr.KFAC(model, lr=lambda k: 0.1 / (k + 1), damping=lambda k: 0.1 * (k + 1))
    x = torch.randn(16, 3)
    for k in range(3):
        assert opt.damping == pytest.approx(0.1 * (k + 1))
        out = model(x)
        with opt.record_stats():
            acktr.fisher_loss(out, "gaussian").backward(retain_graph=True)
        opt.zero_grad()
        out.pow(2).sum(-1).mean().backward()
        opt.step()
        assert opt.param_groups[0]["lr"] == pytest.approx(0.1 / (k + 1))
    opt2 = acktr.KFAC(model, lr=lambda k: 0.1 - 0.2 * k)  # turns negative at step 1
    kfac_step(opt2, model, x, torch.zeros(16, 2))
    with pytest.raises(ValueError, match="lr must be a finite number > 0, got -0.1"):
        kfac_step(opt2, model, x, torch.zeros(16, 2))


def test_nonfinite_gradient_skips_the_step_with_a_warning_and_training_continues():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2))
    opt = acktr.KFAC(model, lr=0.1, inverse_every=1)
    x, y = torch.randn(32, 3), torch.randn(32, 2)
    kfac_step(opt, model, x, y)
    params = [p.clone() for p in model.parameters()]
    bufs = [opt.state[p]["momentum_buffer"].clone() for p in model.parameters()]
    factors = [b.A.clone() for b in opt.preconditioner.blocks.values()]
    out = model(x)
    with opt.record_stats():
        acktr.fisher_loss(out, "gaussian").backward(retain_graph=True)
    opt.zero_grad()
    mse(out, y).backward()
    model[0].weight.grad[0, 0] = float("nan")
    with pytest.warns(RuntimeWarning, match="skipped 1 step"):
        opt.step()
    for p, q in zip(model.parameters(), params, strict=False):
        torch.testing.assert_close(p, q)
    for p, b in zip(model.parameters(), bufs, strict=False):
        torch.testing.assert_close(opt.state[p]["momentum_buffer"], b)
    for blk, _a in zip(opt.preconditioner.blocks.values(), factors, strict=False):
        assert bool(torch.isfinite(blk.A).all())
    losses = [kfac_step(opt, model, x, y) for _ in range(20)]
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]
    assert opt.metrics()["skipped_steps"] == 1.0


def test_nonfinite_fisher_statistics_are_skipped_with_a_warning():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2))
    opt = acktr.KFAC(model, lr=0.1, inverse_every=1)
    x, y = torch.randn(32, 3), torch.randn(32, 2)
    kfac_step(opt, model, x, y)
    a_before = opt.preconditioner.blocks["2"].A.clone()
    out = model(x)
    with opt.record_stats():
        (acktr.fisher_loss(out, "gaussian") * float("inf")).backward(retain_graph=True)
    opt.zero_grad()
    mse(out, y).backward()
    with pytest.warns(RuntimeWarning, match="curvature-statistics update"):
        opt.step()
    torch.testing.assert_close(opt.preconditioner.blocks["2"].A, a_before)
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())


def test_state_dict_round_trip_resumes_identically():
    def make():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2))
        return model, acktr.KFAC(model, lr=0.2, inverse_every=3, kl_clip=0.01)

    x, y = torch.randn(32, 3), torch.randn(32, 2)
    model, opt = make()
    for _ in range(4):
        kfac_step(opt, model, x, y)
    saved_model = copy.deepcopy(model.state_dict())
    saved_opt = copy.deepcopy(opt.state_dict())
    torch.manual_seed(123)
    for _ in range(4):
        kfac_step(opt, model, x, y)

    model2, opt2 = make()
    model2.load_state_dict(saved_model)
    opt2.load_state_dict(saved_opt)
    assert opt2.steps == 4 and opt2.preconditioner.steps == 4
    torch.manual_seed(123)
    for _ in range(4):
        kfac_step(opt2, model2, x, y)
    for a, b in zip(model.parameters(), model2.parameters(), strict=False):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_state_dict_survives_torch_save_with_weights_only(tmp_path):
    model = nn.Linear(3, 2)
    opt = acktr.KFAC(model)
    kfac_step(opt, model, torch.randn(8, 3), torch.randn(8, 2))
    torch.save(opt.state_dict(), tmp_path / "opt.pt")
    state = torch.load(tmp_path / "opt.pt", weights_only=True)
    opt.load_state_dict(state)
    with pytest.raises(ValueError, match="not a KFAC state dict"):
        opt.load_state_dict(torch.optim.SGD(model.parameters(), lr=1).state_dict())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtypes_follow_the_parameters(dtype):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2)).to(dtype)
    opt = acktr.KFAC(model)
    x, y = torch.randn(32, 3, dtype=dtype), torch.randn(32, 2, dtype=dtype)
    kfac_step(opt, model, x, y)
    for block in opt.preconditioner.blocks.values():
        assert block.A.dtype == dtype and block.eig[1].dtype == dtype
    assert all(p.dtype == dtype for p in model.parameters())


def test_preconditioner_with_sgd_equals_kfac_without_momentum():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 3))
    twin = copy.deepcopy(model)
    pre = acktr.KFACPreconditioner(model, damping=0.01)
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    kfac = acktr.KFAC(twin, lr=0.1, momentum=0.0, damping=0.01)
    x, y = torch.randn(128, 4), torch.randint(0, 3, (128,))
    for step in range(5):
        for m, o, p in ((model, sgd, pre), (twin, kfac, kfac)):
            torch.manual_seed(step)
            out = m(x)
            with p.record_stats():
                acktr.fisher_loss(out, "categorical").backward(retain_graph=True)
            o.zero_grad()
            nn.functional.cross_entropy(out, y).backward()
            if o is sgd:
                quad = pre.step()
                assert quad.dim() == 0 and float(quad) > 0
            o.step()
    for a, b in zip(model.parameters(), twin.parameters(), strict=False):
        torch.testing.assert_close(a, b)


def test_preconditioner_composes_with_adam():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 3))
    pre = acktr.KFACPreconditioner(model, damping=0.01)
    adam = torch.optim.Adam(model.parameters(), lr=3e-2)
    x = torch.randn(128, 4)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    losses = []
    for _ in range(30):
        out = model(x)
        if pre.stats_due:
            with pre.record_stats():
                acktr.fisher_loss(out, "categorical").backward(retain_graph=True)
        adam.zero_grad()
        loss = nn.functional.cross_entropy(out, y)
        loss.backward()
        pre.step()
        adam.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]


def test_stats_every_skips_capture_between_statistics_steps():
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    opt = acktr.KFAC(model, stats_every=3)
    x, y = torch.randn(16, 3), torch.randn(16, 2)
    due = []
    for _ in range(6):
        due.append(opt.stats_due)
        kfac_step(opt, model, x, y)
    assert due == [True, False, False, True, False, False]
    assert int(opt.preconditioner.blocks["Linear"].n_updates) == 2


def test_small_cnn_trains_with_default_hyperparameters():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, padding=1),
        nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 10),
    )
    opt = acktr.KFAC(model)
    x = torch.randn(256, 1, 8, 8)
    y = (x[:, 0, :4].sum((1, 2)) > 0).long() + 2 * (x[:, 0, :, :4].sum((1, 2)) > 0).long()
    losses = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no skipped steps, no failed refreshes
        for _ in range(40):
            out = model(x)
            with opt.record_stats():
                acktr.fisher_loss(out, "categorical").backward(retain_graph=True)
            opt.zero_grad()
            loss = nn.functional.cross_entropy(out, y)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
    assert losses[-1] < 0.2 * losses[0]


def test_assignments_report_every_trainable_parameter():
    class Policy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Linear(3, 4)
            self.norm = nn.LayerNorm(4)
            self.log_std = nn.Parameter(torch.zeros(4))
            self.frozen = nn.Linear(4, 4)
            self.frozen.requires_grad_(False)

    opt = acktr.KFAC(Policy(), fallback="identity")
    assert opt.assignments() == {
        "body.weight": "kronecker:body",
        "body.bias": "kronecker:body",
        "norm.weight": "identity",
        "norm.bias": "identity",
        "log_std": "identity",
    }


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_step_matches_cpu():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2))
    gpu = copy.deepcopy(model).cuda()
    x, y = torch.randn(32, 3), torch.randn(32, 2)
    opt_c, opt_g = acktr.KFAC(model), acktr.KFAC(gpu)
    for _ in range(3):
        torch.manual_seed(1)
        kfac_step(opt_c, model, x, y)
        torch.manual_seed(1)
        out = gpu(x.cuda())
        with opt_g.record_stats():
            acktr.fisher_loss(out, "gaussian", targets=out.detach() + torch.randn(32, 2).cuda())\
                .backward(retain_graph=True)
        opt_g.zero_grad()
        mse(out, y.cuda()).backward()
        opt_g.step()
    assert opt_g.preconditioner.blocks["0"].A.is_cuda
    for a, b in zip(model.parameters(), gpu.parameters(), strict=False):
        torch.testing.assert_close(a, b.cpu(), rtol=1e-3, atol=1e-4)


def _mlp_run(steps: int, **kwargs):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2))
    opt = acktr.KFAC(model, lr=0.2, **kwargs)
    x, y = torch.randn(32, 3), torch.randn(32, 2)
    snapshots = {}
    for k in range(steps):
        if k % opt.preconditioner.inverse_every == 0:
            snapshots[k] = None  # filled after this step's statistics
        out = model(x)
        with opt.record_stats():
            acktr.fisher_loss(out, "gaussian").backward(retain_graph=True)
        if k in snapshots:
            snapshots[k] = opt.preconditioner.blocks["2"].A.clone()
        opt.zero_grad()
        mse(out, y).backward()
        opt.step()
    return model, opt, snapshots


def test_async_inverse_is_stale_by_exactly_one_refresh_and_deterministic():
    model, opt, snaps = _mlp_run(7, inverse_every=3, async_inverse=True)
    # The eigenbasis used at steps 6.. comes from the factors recorded at step 3.
    d_a, q_a, _, _ = opt.preconditioner.blocks["2"].eig
    expected = q_a @ torch.diag(d_a) @ q_a.T
    torch.testing.assert_close(expected, snaps[3], atol=1e-5, rtol=1e-4)
    assert not torch.allclose(snaps[3], snaps[6])
    model2, _, _ = _mlp_run(7, inverse_every=3, async_inverse=True)
    sync_model, _, _ = _mlp_run(7, inverse_every=3)
    for a, b in zip(model.parameters(), model2.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert any(not torch.allclose(a, c) for a, c in
               zip(model.parameters(), sync_model.parameters(), strict=True))


def test_async_inverse_state_dict_carries_the_pending_refresh():
    model, opt, _ = _mlp_run(4, inverse_every=3, async_inverse=True)
    state = copy.deepcopy(opt.state_dict())
    assert state["kfac"]["pending"] is not None
    fresh = acktr.KFAC(model, lr=0.2, inverse_every=3, async_inverse=True)
    fresh.load_state_dict(state)
    with pytest.raises(ValueError, match="async_inverse=True"):
        acktr.KFAC(model, lr=0.2, inverse_every=3).load_state_dict(state)


def test_stats_batch_size_uses_a_random_subset_of_examples():
    torch.manual_seed(0)
    model = nn.Linear(3, 2).double()
    x = torch.randn(64, 3, dtype=torch.float64)
    noise = torch.randn(64, 2, dtype=torch.float64)
    pre = acktr.KFACPreconditioner(model, stat_decay=0.0, stats_batch_size=16)
    torch.manual_seed(5)
    out = model(x)
    with pre.record_stats():
        acktr.fisher_loss(out, "gaussian", targets=out.detach() - noise).backward()
    torch.manual_seed(5)
    idx = torch.randperm(64)[:16]
    xa = torch.cat([x[idx], torch.ones(16, 1, dtype=torch.float64)], 1)
    block = pre.blocks["Linear"]
    torch.testing.assert_close(block.A, xa.T @ xa / 16)
    torch.testing.assert_close(block.G, noise[idx].T @ noise[idx] / 16)
    with pytest.raises(ValueError, match="stats_batch_size"):
        acktr.KFACPreconditioner(model, stats_batch_size=0)


def test_diagonal_fallback_uses_the_full_batch_when_statistics_are_subsampled():
    torch.manual_seed(0)

    model = ScaledLinear().double()
    x = torch.randn(64, 3, dtype=torch.float64)
    noise = torch.randn(64, 2, dtype=torch.float64)
    pre = acktr.KFACPreconditioner(model, stat_decay=0.0, stats_batch_size=16)
    out = model(x)
    with pre.record_stats():
        acktr.fisher_loss(out, "gaussian", targets=out.detach() - noise).backward()
    (grad,) = torch.autograd.grad(acktr.fisher_loss(model(x), "gaussian",
                                                    targets=out.detach() - noise), model.scale)
    # batch * mean_grad^2 with the full batch of 64, not the 16-example subset.
    torch.testing.assert_close(pre.diagonal_blocks["scale"].F, 64 * grad**2)


def test_weight_decay_on_weights_leaves_biases_and_vectors_alone():
    """``weight_decay_on="weights"`` decays parameters with 2+ dims only (the original ACKTR
    decays dense weights, not biases or the log-std); ``"all"`` decays everything."""

    def one_step(mode: str) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(3, 2), acktr.BroadcastBias(2, init=0.5))
        opt = acktr.KFAC(model, lr=0.1, momentum=0.0, weight_decay=0.5, weight_decay_on=mode,
                         cold_start_steps=1)
        x = torch.randn(8, 3)
        with opt.record_stats():
            acktr.fisher_loss(model[0](x), "gaussian").backward()
        for p in model.parameters():
            p.grad = torch.zeros_like(p)  # only the decay moves the parameters
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        opt.step()  # a cold-start step: plain SGD, lr * (1 - momentum) = 0.1
        return {n: p.detach() - before[n] for n, p in model.named_parameters()}

    moved = one_step("weights")
    assert moved["0.weight"].abs().min() > 0
    assert torch.equal(moved["0.bias"], torch.zeros(2))
    assert torch.equal(moved["1.bias"], torch.zeros(2))
    moved_all = one_step("all")
    torch.testing.assert_close(moved_all["1.bias"], torch.full((2,), -0.1 * 0.5 * 0.5))
    with pytest.raises(ValueError, match="weight_decay_on"):
        acktr.KFAC(nn.Linear(2, 2), weight_decay_on="biases")  # type: ignore[arg-type]
