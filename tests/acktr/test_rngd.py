"""RNGD (Sun & Nielsen 2017): relative Fisher blocks against the Fisher of each layer's
stochastic output, computed by autograd and exact expectations on tiny layers (float64)."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from acktr.rngd import RNGD, layer_activations, neuron_coefficient

pytestmark = pytest.mark.usefixtures("float64")


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.norm(a - b) / torch.linalg.norm(b))


def flat_grad(layer: nn.Linear, scalar: torch.Tensor) -> torch.Tensor:
    """d scalar / d [W | b], flattened row-major (the optimizer's order)."""
    gw, gb = torch.autograd.grad(scalar, [layer.weight, layer.bias], retain_graph=True)
    return torch.cat([gw, gb.unsqueeze(1)], 1).flatten()


def fisher_discrete(layer: nn.Linear, x: torch.Tensor, log_probs) -> torch.Tensor:
    """``mean_k sum_y p(y|x_k) grad log p grad log p^T`` by enumerating every output ``y``;
    ``log_probs(t)`` lists ``(log p(y), y)`` for one example's pre-activations ``t``."""
    total = 0
    for xk in x:
        t = layer(xk)
        for logp in log_probs(t):
            g = flat_grad(layer, logp)
            total = total + logp.exp().detach() * torch.outer(g, g)
    return total / len(x)


def fisher_gaussian(layer: nn.Linear, x: torch.Tensor, f) -> torch.Tensor:
    """Unit-variance Gaussian output around ``f(t)``: ``mean_k J_k^T J_k``,
    ``J_k = d f(W x_k + b) / d [W | b]`` by autograd."""
    total = 0
    for xk in x:
        out = f(layer(xk))
        jac = torch.stack([flat_grad(layer, out[i]) for i in range(len(out))])
        total = total + jac.T @ jac
    return total / len(x)


def bernoulli_tanh(t):  # p(y = +-1) = (1 +- tanh t) / 2, independent units
    for ys in itertools.product([-1.0, 1.0], repeat=len(t)):
        y = torch.tensor(ys)
        yield torch.log((1 + y * torch.tanh(t)) / 2).sum()


def bernoulli_sigmoid(t):
    for ys in itertools.product([0.0, 1.0], repeat=len(t)):
        y = torch.tensor(ys)
        yield (y * F.logsigmoid(t) + (1 - y) * F.logsigmoid(-t)).sum()


def categorical(t):
    for c in range(len(t)):
        yield torch.log_softmax(t, 0)[c]


def smooth_leaky_relu(leak: float, omega: float):
    """``f(t) = iota t + omega softplus((1 - iota) t / omega)``: ``f' = iota + (1 - iota)
    sigmoid((1 - iota) t / omega)``, tending to the leaky relu as omega -> 0."""
    return lambda t: leak * t + omega * F.softplus((1 - leak) * t / omega)


def recorded_optimizer(model: nn.Module, x: torch.Tensor, **kw) -> RNGD:
    opt = RNGD(model, **kw)
    with opt.record_stats():
        out = model(x)
    out.sum().backward()
    opt.step()
    return opt


CASES = [
    (nn.Tanh(), lambda layer, x: fisher_discrete(layer, x, bernoulli_tanh)),
    (nn.Sigmoid(), lambda layer, x: fisher_discrete(layer, x, bernoulli_sigmoid)),
    (nn.ReLU(), lambda layer, x: fisher_gaussian(layer, x, smooth_leaky_relu(0.0, 0.5))),
    (nn.LeakyReLU(0.2), lambda layer, x: fisher_gaussian(layer, x, smooth_leaky_relu(0.2, 0.5))),
    (nn.ELU(alpha=0.7), lambda layer, x: fisher_gaussian(layer, x, lambda t: F.elu(t, 0.7))),
    (nn.Identity(), lambda layer, x: fisher_gaussian(layer, x, lambda t: t)),
]


@pytest.mark.parametrize("act, exact", CASES, ids=lambda c: type(c).__name__ if isinstance(
    c, nn.Module) else "")
def test_hidden_layer_block_equals_fisher_of_its_stochastic_output(act, exact):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2), act, nn.Linear(2, 3))
    with torch.no_grad():
        model[0].weight.mul_(3.0)  # pre-activations on both sides of 0
    x = torch.randn(6, 3)
    opt = recorded_optimizer(model, x, relu_smoothness=0.5)
    block = opt.blocks["0"]
    layer = nn.Linear(3, 2)
    layer.load_state_dict(_weights_at_record(opt, "0", model[0]))
    assert rel_err(block.to_dense(), exact(layer, x)) < 1e-10


def _weights_at_record(opt: RNGD, name: str, module: nn.Linear) -> dict:
    """The weights the block was computed at: the step subtracted lr * .grad from them."""
    lr = opt.param_groups[0]["lr"]
    return {
        "weight": (module.weight + lr * module.weight.grad).detach(),
        "bias": (module.bias + lr * module.bias.grad).detach(),
    }


def test_softmax_output_block_equals_categorical_fisher():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3))
    x = torch.randn(5, 3)
    opt = recorded_optimizer(model, x)
    layer = nn.Linear(4, 3)
    layer.load_state_dict(_weights_at_record(opt, "2", model[2]))
    first = _weights_at_record(opt, "0", model[0])
    hidden = torch.tanh(F.linear(x, first["weight"], first["bias"]))
    exact = fisher_discrete(layer, hidden, categorical)
    assert opt.blocks["2"].kind == "softmax"
    assert rel_err(opt.blocks["2"].to_dense(), exact) < 1e-10


def test_step_is_damped_relative_natural_gradient():
    """W <- W - lr (g_bar + eps I)^-1 (grad + wd W), with g_bar computed independently."""
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(3, 2), nn.Sigmoid(), nn.Linear(2, 2))
    x, y = torch.randn(7, 3), torch.tensor([0, 1, 1, 0, 1, 0, 0])
    lr, eps, wd = 0.3, 0.05, 0.01
    before = [(m.weight.detach().clone(), m.bias.detach().clone()) for m in (model[0], model[2])]
    opt = RNGD(model, lr=lr, damping=eps, weight_decay=wd)
    with opt.record_stats():
        out = model(x)
    F.cross_entropy(out, y).backward()
    grads = [torch.cat([m.weight.grad, m.bias.grad.unsqueeze(1)], 1).flatten()
             for m in (model[0], model[2])]
    hidden_layer, out_layer = nn.Linear(3, 2), nn.Linear(2, 2)
    hidden_layer.load_state_dict({"weight": before[0][0], "bias": before[0][1]})
    out_layer.load_state_dict({"weight": before[1][0], "bias": before[1][1]})
    exact = [
        fisher_discrete(hidden_layer, x, bernoulli_sigmoid),
        fisher_discrete(out_layer, torch.sigmoid(hidden_layer(x)).detach(), categorical),
    ]
    opt.step()
    for m, (w0, b0), g, fisher in zip((model[0], model[2]), before, grads, exact, strict=True):
        theta = torch.cat([w0, b0.unsqueeze(1)], 1).flatten()
        delta = torch.linalg.solve(fisher + eps * torch.eye(len(theta)), g + wd * theta)
        after = torch.cat([m.weight, m.bias.unsqueeze(1)], 1).flatten().detach()
        assert rel_err(after, theta - lr * delta) < 1e-10


def test_inverse_refreshed_every_t_minibatches():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3))
    opt = RNGD(model, lr=0.1, inverse_every=3)
    snapshots = []
    for _ in range(7):
        x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
        assert opt.stats_due == (opt.steps % 3 == 0)
        with opt.record_stats():
            out = model(x)
        opt.zero_grad()
        F.cross_entropy(out, y).backward()
        opt.step()
        snapshots.append(opt.blocks["0"].inverse.clone())
    changed = [not torch.equal(a, b) for a, b in zip(snapshots[:-1], snapshots[1:], strict=True)]
    assert changed == [False, False, True, False, False, True]


def test_neuron_coefficients_match_slides_table():
    t = torch.linspace(-3, 3, 13)
    assert torch.allclose(neuron_coefficient("tanh", t), 1 / torch.cosh(t) ** 2)
    s = torch.sigmoid(t)
    assert torch.allclose(neuron_coefficient("sigmoid", t), s * (1 - s))
    assert torch.allclose(neuron_coefficient("relu", t, smoothness=2.0), torch.sigmoid(t / 2) ** 2)
    elu = neuron_coefficient("elu", t, alpha=1.3)
    assert torch.allclose(elu, torch.where(t >= 0, 1.0, (1.3 * torch.exp(t)) ** 2))
    with pytest.raises(ValueError, match="no per-neuron coefficient"):
        neuron_coefficient("softmax", t)


def test_activations_read_from_sequential_or_given_explicitly():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ELU(0.5), nn.Linear(3, 3),
                          nn.Linear(3, 2))
    kinds = [(k, p) for _, _, k, p in layer_activations(model, None, "softmax")]
    assert kinds == [("elu", {"alpha": 0.5}), ("linear", {}), ("softmax", {})]
    kinds = [k for _, _, k, _ in layer_activations(model, None, "linear")]
    assert kinds[-1] == "linear"

    class Custom(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 3), nn.Linear(3, 2)

        def forward(self, x):
            return self.b(torch.tanh(self.a(x)))

    given = layer_activations(Custom(), ["tanh", "softmax"], "softmax")
    assert [k for _, _, k, _ in given] == ["tanh", "softmax"]
    with pytest.raises(ValueError, match="cannot read the activations of a Custom"):
        RNGD(Custom())


def test_rngd_trains_a_small_classifier():
    torch.manual_seed(4)
    x = torch.randn(512, 6)
    y = (x[:, 0] * x[:, 1] > 0).long() + (x[:, 2] > 0.5).long()
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(),
                          nn.Linear(16, 3))
    opt = RNGD(model, lr=0.1, damping=0.1, inverse_every=10)
    first = float(F.cross_entropy(model(x), y).detach())
    for step in range(200):
        idx = torch.arange(step * 32, step * 32 + 32) % 512
        with opt.record_stats():
            out = model(x[idx])
        opt.zero_grad()
        F.cross_entropy(out, y[idx]).backward()
        opt.step()
    assert float(F.cross_entropy(model(x), y).detach()) < 0.5 * first


def test_state_dict_round_trip():
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    opt = recorded_optimizer(model, torch.randn(8, 3), inverse_every=5)
    other = RNGD(model, inverse_every=5)
    other.load_state_dict(opt.state_dict())
    assert other.steps == 1
    assert torch.equal(other.blocks["2"].inverse, opt.blocks["2"].inverse)
    with pytest.raises(ValueError, match="not an RNGD state dict"):
        other.load_state_dict(torch.optim.SGD(model.parameters(), lr=0.1).state_dict())


@pytest.mark.parametrize(
    "model, kwargs, match",
    [
        (nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)), {}, "BatchNorm1d"),
        (nn.Sequential(nn.Linear(3, 4), nn.Dropout(), nn.Linear(4, 2)), {}, "Dropout"),
        (nn.Sequential(nn.Linear(3, 4), nn.GELU(), nn.Linear(4, 2)), {}, "GELU"),
        (nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2)), {"activations": ["relu"]},
         "activations has 1 entries"),
        (nn.Sequential(nn.Linear(3, 2)), {"activations": ["swish"]}, "activation must be one"),
        (nn.Sequential(nn.Linear(3, 2)), {"damping": 0.0}, "damping must be"),
        (nn.Sequential(nn.Linear(3, 2)), {"inverse_every": 0}, "inverse_every must be"),
        (nn.Sequential(nn.Linear(3, 2)), {"output": "tanh"}, "output must be one"),
        (nn.Sequential(nn.Linear(3, 2)), {"lr": -1.0}, "lr must be"),
    ],
)
def test_bad_input_is_a_clear_error(model, kwargs, match):
    with pytest.raises(ValueError, match=match):
        RNGD(model, **kwargs)


def test_step_without_recorded_forward_is_a_clear_error():
    model = nn.Sequential(nn.Linear(3, 2))
    opt = RNGD(model)
    model(torch.randn(4, 3)).sum().backward()
    with pytest.raises(RuntimeError, match="record_stats"):
        opt.step()
    with pytest.raises(ValueError, match=r"\(batch, features\)"), opt.record_stats():
        model(torch.randn(2, 4, 3))
