"""Arithmetic floor of a K-FAC iteration relative to an SGD iteration, counted layer by layer.

    python benchmarks/kfac_flops.py                       # digits AE, MNIST-sized AE, digits CNN
    python benchmarks/kfac_flops.py --model mnist-ae --batch-size 1000
    python benchmarks/kfac_flops.py --model atari --batch-size 320   # ACKTR's Atari network

Counts the multiply-adds (2 flops each) of the matrix products that an iteration cannot avoid,
for every K-FAC layer (``nn.Linear``, ``nn.Conv2d``) of the benchmark models of
``benchmarks/kfac_step_time.py`` and of the ACKTR Atari actor-critic (``atari``: Nature-DQN
trunk shared by the policy and value heads, 6 actions; there "SGD" is the A2C update's
arithmetic). ``R`` is the number of rows of a layer (batch x positions), ``d_in`` its fan-in
(``C kh kw`` for a convolution), ``d_a = d_in + 1`` with a bias, ``d_g`` its outputs:

- forward ``2 R d_in d_g``; backward: weight gradient ``2 R d_in d_g``, input gradient the same
  (not for the first layer, whose input needs no gradient);
- Fisher backward: the same as the training backward (``.backward()`` computes the weight
  gradients too), or only the input gradients when it stops at the layer outputs;
- statistics ``2 R (d_a^2 + d_g^2)`` (``A`` and ``G``);
- preconditioning in the eigenbases: 4 products, ``4 (d_g^2 d_a + d_g d_a^2)``;
- refresh: two symmetric eigendecompositions, about ``9 (d_a^3 + d_g^3)`` (Golub & Van Loan,
  symmetric QR with eigenvectors), once per ``inverse_every`` steps.

SGD = forward + backward. K-FAC = SGD + (Fisher backward + statistics) / ``stats_every`` +
preconditioning + refresh / ``inverse_every``. Elementwise work, sampling and the Python and
kernel-launch overheads that dominate small models in practice are left out, so the ratio is a
lower bound on what a timer can show (``benchmarks/kfac_step_time.py`` measures that).

As a check of the counts against the implementation, ``torch.utils.flop_counter`` also counts
the matrix products of one real SGD iteration and one real K-FAC iteration (statistics step, no
refresh) of ``acktr.KFAC``; both are printed.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import acktr
from acktr.layers import helper_for

try:  # run as a script (python benchmarks/kfac_flops.py) or as a module
    from benchmarks.kfac_step_time import MODELS, build
except ModuleNotFoundError:  # pragma: no cover
    from kfac_step_time import MODELS, build  # type: ignore[no-redef]


@dataclass(frozen=True)
class LayerShape:
    """One K-FAC layer as the counts need it."""

    rows: int
    d_in: int
    d_g: int
    bias: bool
    first: bool

    @property
    def d_a(self) -> int:
        return self.d_in + int(self.bias)


@dataclass(frozen=True)
class Flops:
    """Per-iteration flops of each phase (refresh: per refresh, not amortized)."""

    forward: float
    backward: float
    fisher_backward_outputs_only: float
    statistics: float
    precondition: float
    refresh: float

    @property
    def fisher_backward(self) -> float:
        """A full ``.backward()`` of the Fisher loss: the training backward's work."""
        return self.backward


def layer_shapes(model: nn.Module, x: torch.Tensor) -> list[LayerShape]:
    """Rows and widths of every K-FAC layer, read from one forward pass of ``x``."""
    shapes: list[LayerShape] = []
    hooks = []
    for module in model.modules():
        helper = helper_for(module)
        if helper is None:
            continue

        def hook(mod, inputs, output, helper=helper):
            rows, _ = helper.input_rows(inputs[0].detach())
            shapes.append(LayerShape(rows.shape[0], helper.in_features,
                                     helper.out_features, helper.has_bias, not shapes))

        hooks.append(module.register_forward_hook(hook))
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return shapes


def count(shapes: list[LayerShape]) -> Flops:
    """Sum the phase counts of the module docstring over layers."""
    fwd = bwd = fisher_out = stats = pre = refresh = 0.0
    for s in shapes:
        product = 2.0 * s.rows * s.d_in * s.d_g
        fwd += product
        input_grad = 0.0 if s.first else product
        bwd += product + input_grad
        fisher_out += input_grad
        stats += 2.0 * s.rows * (s.d_a**2 + s.d_g**2)
        pre += 4.0 * (s.d_g**2 * s.d_a + s.d_g * s.d_a**2)
        refresh += 9.0 * (s.d_a**3 + s.d_g**3)
    return Flops(fwd, bwd, fisher_out, stats, pre, refresh)


def kfac_over_sgd(f: Flops, stats_every: int, inverse_every: int, outputs_only: bool) -> float:
    """K-FAC iteration flops / SGD iteration flops."""
    sgd = f.forward + f.backward
    fisher = f.fisher_backward_outputs_only if outputs_only else f.fisher_backward
    extra = (fisher + f.statistics) / stats_every + f.precondition + f.refresh / inverse_every
    return (sgd + extra) / sgd


MODELS_HERE = (*MODELS, "atari")


def build_any(name: str, batch: int) -> tuple[nn.Module, torch.Tensor, torch.Tensor, Callable,
                                               Callable]:
    """``(model, x, y, loss(out, x, y), fisher_loss(out))`` for a model of this script."""
    if name == "atari":
        import gymnasium as gym

        from agents.policies import NatureCNNActorCritic

        gen = torch.Generator().manual_seed(0)
        model = NatureCNNActorCritic((4, 84, 84), gym.spaces.Discrete(6))
        x = torch.randint(0, 256, (batch, 4, 84, 84), generator=gen, dtype=torch.uint8)
        y = torch.randint(0, 6, (batch,), generator=gen)

        def loss(out, x, y):
            dist, value = out
            return -dist.log_prob(y).mean() + value.pow(2).mean()

        def fisher(out):
            dist, value = out
            return -dist.log_prob(dist.sample()).mean() + acktr.fisher_loss(value, "gaussian")

        return model, x, y, loss, fisher
    model, x, y, loss, kind = build(name, batch)
    return model, x, y, loss, lambda out: acktr.fisher_loss(out, kind)


def counted_by_torch(model_name: str, batch: int) -> tuple[float, float]:
    """``(SGD, K-FAC)`` flops of one real iteration each, by ``torch.utils.flop_counter``
    (K-FAC: a statistics step whose eigenbases are already there, so no refresh)."""
    model, x, y, loss, fisher = build_any(model_name, batch)
    opt = acktr.KFAC(model, inverse_every=10**9)

    def kfac_iteration() -> None:
        out = model(x)
        with opt.record_stats():
            fisher(out).backward(retain_graph=True)
        opt.zero_grad()
        loss(out, x, y).backward()
        opt.step()

    kfac_iteration()  # the first step computes the eigenbases
    with FlopCounterMode(display=False) as sgd:
        loss(model(x), x, y).backward()
    with FlopCounterMode(display=False) as kfac:
        kfac_iteration()
    return float(sgd.get_total_flops()), float(kfac.get_total_flops())


def report(model_name: str, batch: int, inverse_every: int) -> None:
    model, x, _, _, _ = build_any(model_name, batch)
    f = count(layer_shapes(model, x))
    sgd = f.forward + f.backward
    torch_sgd, torch_kfac = counted_by_torch(model_name, batch)
    ours = sgd + f.fisher_backward + f.statistics + f.precondition
    print(f"\n{model_name}, batch {batch}: SGD iteration {sgd / 1e6:.1f} Mflop")
    print(f"  check with torch.utils.flop_counter: SGD {torch_sgd / 1e6:.1f} Mflop, K-FAC "
          f"statistics step without refresh {torch_kfac / 1e6:.1f} Mflop (counted here: "
          f"{ours / 1e6:.1f})")
    for phase in ("fisher_backward", "statistics", "precondition"):
        print(f"  {phase:16s} {getattr(f, phase) / 1e6:9.1f} Mflop = {getattr(f, phase) / sgd:5.2f}"
              " x SGD")
    print(f"  {'refresh':16s} {f.refresh / 1e6:9.1f} Mflop = {f.refresh / sgd:5.2f} x SGD "
          f"(/{inverse_every} amortized: {f.refresh / inverse_every / sgd:.2f})")
    print("  K-FAC / SGD floor (inverse_every="
          f"{inverse_every}):  stats_every   full Fisher backward   stopping at layer outputs")
    for every in (1, 2, 5, 10):
        full = kfac_over_sgd(f, every, inverse_every, outputs_only=False)
        fast = kfac_over_sgd(f, every, inverse_every, outputs_only=True)
        print(f"  {'':52s}{every:3d}   {full:19.2f}x   {fast:24.2f}x")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", choices=MODELS_HERE, nargs="+", default=list(MODELS_HERE))
    p.add_argument("--batch-size", type=int, nargs="+", default=None,
                   help="one per model (default: 512, 1000, 256 as in docs/benchmarks.md, 320 "
                        "for atari as in benchmarks/update_time.py)")
    p.add_argument("--inverse-every", type=int, default=10)
    args = p.parse_args()
    defaults = {"digits-ae": 512, "mnist-ae": 1000, "cnn": 256, "atari": 320}
    batches = args.batch_size or [defaults[m] for m in args.model]
    if len(batches) != len(args.model):
        p.error(f"--batch-size takes one value per model ({len(args.model)}), got {len(batches)}")
    for name, batch in zip(args.model, batches, strict=True):
        report(name, batch, args.inverse_every)


if __name__ == "__main__":
    main()
