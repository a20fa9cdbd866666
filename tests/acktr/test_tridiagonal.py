"""Block-tridiagonal K-FAC against dense matrices built independently from the same factors, and
against the exact Gauss-Newton matrix of deep linear networks (float64)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

import acktr
from acktr.tridiagonal import TridiagonalKFACPreconditioner
from tests.acktr.exact import block_slices, exact_gauss_newton

pytestmark = pytest.mark.usefixtures("float64")


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.norm(a - b) / torch.linalg.norm(b))


def mlp(widths: list[int], act: type[nn.Module] | None = nn.Tanh) -> tuple[nn.Module, list]:
    layers = [nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:], strict=False)]
    mods: list[nn.Module] = []
    for i, layer in enumerate(layers):
        mods.append(layer)
        if act is not None and i < len(layers) - 1:
            mods.append(act())
    return nn.Sequential(*mods), layers


def record_exact(pre: acktr.KFACPreconditioner, model: nn.Module, x: torch.Tensor) -> None:
    """Exact Gauss-Newton statistics (one backward pass per output)."""
    out = model(x)
    with pre.record_stats():
        for loss in acktr.gauss_newton_losses(out):
            loss.backward(retain_graph=True)


def damped(a: torch.Tensor, g: torch.Tensor, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Factored Tikhonov damping, written out here (Martens & Grosse 2015, section 6.3)."""
    pi = math.sqrt(float((a.trace() / a.shape[0]) / (g.trace() / g.shape[0])))
    return a + pi * math.sqrt(lam) * torch.eye(len(a)), g + math.sqrt(lam) / pi * torch.eye(len(g))


def band_blocks(
    pre: TridiagonalKFACPreconditioner, lam: float
) -> dict[tuple[int, int], torch.Tensor]:
    """The blocks of F~ the approximation keeps: damped diagonal blocks kron(G, A), and the
    first off-diagonal blocks kron(G_{i,i+1}, A_{i-1,i}) (and their transposes)."""
    out = {}
    for k, block in enumerate(pre.chain):
        a, g = damped(block.A, block.G, lam) if lam else (block.A, block.G)
        out[k, k] = torch.kron(g, a)
    for k in range(len(pre.chain) - 1):
        out[k, k + 1] = torch.kron(pre.cross_g[k], pre.cross_a[k])
        out[k + 1, k] = out[k, k + 1].T
    return out


def completion(blocks: dict[tuple[int, int], torch.Tensor], n: int) -> list[list[torch.Tensor]]:
    """The dense F^ that agrees with the band and whose inverse is block-tridiagonal: the far
    blocks of the maximum-determinant completion, F^_{i,j} = F_{i,i+1} F_{i+1,i+1}^-1 F^_{i+1,j}
    (j > i + 1), computed with dense solves."""
    f = [[blocks.get((i, j)) for j in range(n)] for i in range(n)]
    for gap in range(2, n):
        for i in range(n - gap):
            j = i + gap
            f[i][j] = f[i][i + 1] @ torch.linalg.solve(f[i + 1][i + 1], f[i + 1][j])
            f[j][i] = f[i][j].T
    return f


def setup(widths=(3, 4, 5, 2), lam=1e-2, act=nn.Tanh, n=40):
    model, layers = mlp(list(widths), act)
    pre = TridiagonalKFACPreconditioner(model, damping=lam, stat_decay=0.0)
    x = torch.randn(n, widths[0])
    record_exact(pre, model, x)
    pre.refresh()
    return model, layers, pre, x


def split(pre: TridiagonalKFACPreconditioner) -> list[slice]:
    sizes = [b.dim_g * b.dim_a for b in pre.chain]
    starts = [sum(sizes[:k]) for k in range(len(sizes) + 1)]
    return [slice(starts[k], starts[k + 1]) for k in range(len(sizes))]


def test_inverse_is_block_tridiagonal_and_agrees_with_the_factors_on_the_band():
    """The defining properties of F^ (section 4.3): F^^-1 is block-tridiagonal, and F^ equals
    the Kronecker-factored F~ (damped diagonal blocks) on the diagonal and first off-diagonal."""
    _, _, pre, _ = setup()
    inv = pre.dense_inverse()
    f_hat = torch.linalg.inv(inv)
    band = band_blocks(pre, 1e-2)
    s = split(pre)
    for i in range(len(s)):
        for j in range(len(s)):
            if abs(i - j) > 1:
                assert inv[s[i], s[j]].abs().max() < 1e-12 * inv.abs().max()
            else:
                assert rel_err(f_hat[s[i], s[j]], band[i, j]) < 1e-10
    assert torch.allclose(inv, inv.T, atol=1e-12)
    assert float(torch.linalg.eigvalsh(inv).min()) > 0


def test_inverse_and_step_equal_dense_solves_with_the_completed_matrix():
    """Four layers (so F^ has blocks two and three apart): F^^-1 equals the inverse of the
    dense completion, and step() equals a dense solve with it."""
    model, _, pre, x = setup(widths=(3, 4, 5, 3, 2))
    n = len(pre.chain)
    f_hat = torch.cat([torch.cat(row, 1) for row in completion(band_blocks(pre, 1e-2), n)], 0)
    assert rel_err(pre.dense_inverse(), torch.linalg.inv(f_hat)) < 1e-9

    model.zero_grad()
    (0.5 * (model(x) - torch.randn(len(x), 2)).pow(2).sum(1).mean()).backward()
    grad = torch.cat([b.helper.grad_matrix().flatten() for b in pre.chain])
    quad = pre.step()
    delta = torch.cat([b.helper.grad_matrix().flatten() for b in pre.chain])
    expected = torch.linalg.solve(f_hat, grad)
    assert rel_err(delta, expected) < 1e-9
    assert abs(float(quad) - float(grad @ expected)) < 1e-9 * abs(float(grad @ expected))


def test_cross_factors_equal_the_exact_off_diagonal_blocks_of_a_deep_linear_network():
    """In a deep linear net with Gaussian output, g does not depend on the input, so every block
    of the Gauss-Newton matrix, between layers too, is exactly kron(G_{i,j}, A_{i-1,j-1}):
    the cross factors must reproduce the exact off-diagonal blocks."""
    model, layers, pre, x = setup(act=None)
    exact = exact_gauss_newton(model, layers, x)
    s = block_slices(layers)
    for k in range(len(layers) - 1):
        cross = torch.kron(pre.cross_g[k], pre.cross_a[k])
        assert rel_err(cross, exact[s[k], s[k + 1]]) < 1e-8


@pytest.mark.parametrize("lam", [1e-3, 1e-1])
def test_tridiagonal_is_closer_than_block_diagonal_to_the_exact_inverse(lam):
    """Deep linear net, exact Gauss-Newton matrix F. Reference: F with the same factored
    Tikhonov damping on its diagonal blocks (exact there), inverted densely; also (F + lam I)^-1.
    The block-tridiagonal inverse is closer to both than the block-diagonal one."""
    model, layers, pre, x = setup(widths=(4, 6, 6, 6, 3), lam=lam, act=None, n=200)
    exact = exact_gauss_newton(model, layers, x)
    s = split(pre)
    damped_exact, diag = exact.clone(), torch.zeros_like(exact)
    for k, block in enumerate(pre.chain):
        a, g = damped(block.A, block.G, lam)
        damped_exact[s[k], s[k]] = torch.kron(g, a)
        diag[s[k], s[k]] = torch.linalg.inv(torch.kron(g, a))
    tri = pre.dense_inverse()
    errors = {}
    plain = exact + lam * torch.eye(len(exact))
    for name, ref in [("same damping", damped_exact), ("F + lam I", plain)]:
        ref_inv = torch.linalg.inv(ref)
        errors[name] = (rel_err(diag, ref_inv), rel_err(tri, ref_inv))
        assert errors[name][1] < errors[name][0]
    print(f"deep linear 4-6-6-6-3, lambda={lam}: relative error of the inverse "
          f"(block-diagonal, block-tridiagonal): {errors}")


def test_single_layer_equals_block_diagonal_tikhonov():
    model = nn.Linear(4, 3)
    x = torch.randn(30, 4)
    tri = TridiagonalKFACPreconditioner(model, damping=0.05, stat_decay=0.0)
    diag = acktr.KFACPreconditioner(model, damping=0.05, stat_decay=0.0, damping_scheme="tikhonov")
    record_exact(tri, model, x)
    record_exact(diag, model, x)
    grads = []
    for pre in (tri, diag):
        model.zero_grad()
        model(x).pow(2).sum().backward()
        pre.step()
        grads.append(torch.cat([model.weight.grad.flatten(), model.bias.grad]))
    assert rel_err(grads[0], grads[1]) < 1e-10


def test_large_damping_gives_the_scaled_gradient_and_schedules_refresh():
    model, _, pre, x = setup(lam=1e8)
    model.zero_grad()
    model(x).pow(2).sum().backward()
    grad = torch.cat([b.helper.grad_matrix().flatten() for b in pre.chain])
    pre.step()
    delta = torch.cat([b.helper.grad_matrix().flatten() for b in pre.chain])
    assert rel_err(1e8 * delta, grad) < 1e-3

    schedule = [0.3, 0.2, 0.1]
    model2, _ = mlp([3, 4, 2])
    pre2 = TridiagonalKFACPreconditioner(model2, damping=lambda k: schedule[k], inverse_every=100)
    record_exact(pre2, model2, x)
    for k in range(3):
        model2(x).sum().backward()
        pre2.step()
        assert pre2.inverse.damping == schedule[k]  # a new damping refactors right away


def test_damping_must_be_positive():
    model, _ = mlp([3, 4, 2])
    with pytest.raises(ValueError, match="damping must be a finite number > 0"):
        TridiagonalKFACPreconditioner(model, damping=0.0)


def test_kfac_option_trains_and_defaults():
    torch.manual_seed(1)
    model, _ = mlp([3, 8, 8, 1])
    opt = acktr.KFAC(model, structure="block_tridiagonal", lr=0.3)
    assert isinstance(opt.preconditioner, TridiagonalKFACPreconditioner)
    assert opt.preconditioner.damping_scheme == "tikhonov"
    assert acktr.KFAC(mlp([3, 2])[0]).preconditioner.damping_scheme == "eigen"
    x = torch.randn(128, 3)
    y = torch.sin(x.sum(1, keepdim=True))
    losses = []
    for _ in range(40):
        out = model(x)
        loss = 0.5 * (out - y).pow(2).sum(1).mean()
        with opt.record_stats():
            acktr.fisher_loss(out, "gaussian").backward(retain_graph=True)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.3 * losses[0]


def train_steps(opt: acktr.KFAC, model: nn.Module, x: torch.Tensor, steps: int) -> None:
    for _ in range(steps):
        out = model(x)
        with opt.record_stats():
            acktr.fisher_loss(out, "gaussian").backward(retain_graph=True)
        opt.zero_grad()
        out.pow(2).sum(1).mean().backward()
        opt.step()


def test_state_dict_round_trip():
    x = torch.randn(32, 3)
    model, _ = mlp([3, 5, 2])
    kw = {"structure": "block_tridiagonal", "lr": 0.1, "inverse_every": 3}
    opt = acktr.KFAC(model, **kw)
    train_steps(opt, model, x, 4)
    state = copy.deepcopy(opt.state_dict())  # as torch.save / torch.load would
    model2, _ = mlp([3, 5, 2])
    model2.load_state_dict(model.state_dict())
    opt2 = acktr.KFAC(model2, **kw)
    opt2.load_state_dict(state)
    pre, pre2 = opt.preconditioner, opt2.preconditioner
    for a, b in zip(pre.cross_a + pre.cross_g, pre2.cross_a + pre2.cross_g, strict=True):
        assert torch.equal(a, b)
    torch.manual_seed(5)
    train_steps(opt, model, x, 3)
    torch.manual_seed(5)
    train_steps(opt2, model2, x, 3)
    for p, q in zip(model.parameters(), model2.parameters(), strict=True):
        assert torch.equal(p, q)

    with pytest.raises(ValueError, match="no block-tridiagonal factors"):
        acktr.KFAC(model, structure="block_tridiagonal").load_state_dict(
            acktr.KFAC(model).state_dict()
        )
    other, _ = mlp([3, 6, 2])
    with pytest.raises(ValueError, match="cross_a has shapes"):
        acktr.KFAC(other, structure="block_tridiagonal").load_state_dict(state)


class Branches(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(3, 4)
        self.b = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.a(x), self.b(x)], 1)


def test_bad_structures_and_options_are_clear_errors():
    model, _ = mlp([3, 4, 2])
    with pytest.raises(ValueError, match="structure must be one of 'block_diagonal', "
                                         "'block_tridiagonal', got 'tridiagonal'"):
        acktr.KFAC(model, structure="tridiagonal")
    for kwargs in ({"damping_scheme": "eigen"}, {"async_inverse": True},
                   {"stats_batch_size": 8}, {"inverse_method": "inverse"}):
        key = next(iter(kwargs))
        with pytest.raises(ValueError, match=f"block_tridiagonal' supports {key}="):
            acktr.KFAC(model, structure="block_tridiagonal", **kwargs)
    conv = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2, 1))
    with pytest.raises(ValueError, match="layer '0' is Conv2d.*block_diagonal"):
        acktr.KFAC(conv, structure="block_tridiagonal")
    with pytest.raises(ValueError, match="layers 'a' .4 outputs. and 'b' .3 inputs. do not form"):
        acktr.KFAC(Branches(), structure="block_tridiagonal")


def test_layer_used_twice_is_a_clear_error():
    first, second = nn.Linear(3, 4), nn.Linear(4, 4)
    model = nn.Sequential(first, nn.Tanh(), second, nn.Tanh(), second)
    pre = TridiagonalKFACPreconditioner(model)
    out = model(torch.randn(8, 3))
    with pytest.raises(ValueError, match="layer '2' ran out of chain order.*block_diagonal"):
        with pre.record_stats():
            acktr.fisher_loss(out, "gaussian").backward()
    # The next, well-formed pass (a chain through both layers once) is recorded normally.
    chain = nn.Sequential(first, nn.Tanh(), second)
    pre2 = TridiagonalKFACPreconditioner(chain)
    with pre2.record_stats():
        acktr.fisher_loss(chain(torch.randn(8, 3)), "gaussian").backward()
    assert int(pre2.cross_updates) == 1


def test_layer_missing_from_the_fisher_loss_is_a_clear_error():
    model, layers = mlp([3, 4, 2])
    pre = TridiagonalKFACPreconditioner(model)
    h = layers[0](torch.randn(8, 3))
    _ = layers[1](torch.tanh(h))
    with pytest.raises(ValueError, match="different numbers of backward passes"):
        with pre.record_stats():
            h.pow(2).sum().backward()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_step_matches_cpu():
    """The same K-FAC steps on CUDA and on the CPU (exact Gauss-Newton statistics, so no
    sampling differs between the devices)."""
    model, _ = mlp([3, 6, 6, 2])
    x, y = torch.randn(64, 3), torch.randn(64, 2)
    params = []
    for device in ("cpu", "cuda"):
        m = copy.deepcopy(model).to(device)
        opt = acktr.KFAC(m, structure="block_tridiagonal", lr=0.5, inverse_every=2)
        xd, yd = x.to(device), y.to(device)
        for _ in range(3):
            out = m(xd)
            with opt.record_stats():
                for loss in acktr.gauss_newton_losses(out):
                    loss.backward(retain_graph=True)
            opt.zero_grad()
            (0.5 * (out - yd).pow(2).sum(1).mean()).backward()
            opt.step()
        params.append(torch.cat([p.detach().flatten().cpu() for p in m.parameters()]))
    assert rel_err(params[1], params[0]) < 1e-9
