"""Per-element CPU time of the policies' activations, measured side by side in one run.

    python -m benchmarks.activation_time                      # 20000 x 64 float32, 1 thread
    python -m benchmarks.activation_time --rows 2500 --threads 2

Times, as medians over ``--repeats`` interleaved repeats, the forward of ``torch.tanh``,
``torch.sigmoid``, our ``agents.activations.Tanh`` (``2 sigmoid(2x) - 1``), ``F.elu`` and
``F.relu`` on one ``rows x width`` float32 batch, and the forward + backward of ``nn.Tanh``,
our ``Tanh`` and ``nn.ELU``; prints ns per element, the ratio to ``torch.tanh`` and the largest
absolute difference between ``torch.tanh`` and our ``Tanh``. The batch of the default is the
MuJoCo critic's hidden layer in one K-FAC critic step (8 envs x 2500 steps, 64 units).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from agents.activations import Tanh


def _forward_cases() -> dict[str, Callable[[Tensor], Tensor]]:
    ours = Tanh()
    return {
        "torch.tanh": torch.tanh,
        "torch.sigmoid": torch.sigmoid,
        "agents Tanh": ours,
        "F.elu": F.elu,
        "F.relu": F.relu,
    }


def _backward_cases() -> dict[str, nn.Module]:
    return {"nn.Tanh fwd+bwd": nn.Tanh(), "agents Tanh fwd+bwd": Tanh(), "nn.ELU fwd+bwd": nn.ELU()}


def _time_once(fn: Callable[[], object], inner: int) -> float:
    start = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - start) / inner


def measure(rows: int, width: int, repeats: int, inner: int) -> dict[str, float]:
    """Median seconds per call of every case, the cases interleaved in each repeat."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(rows, width, generator=gen) * 2.0
    xg = x.clone().requires_grad_(True)
    grad = torch.randn(rows, width, generator=gen)
    calls: dict[str, Callable[[], object]] = {
        name: (lambda f=f: f(x)) for name, f in _forward_cases().items()
    }
    for name, module in _backward_cases().items():
        calls[name] = lambda m=module: torch.autograd.grad(m(xg), xg, grad)
    for call in calls.values():  # warm-up
        _time_once(call, inner)
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            samples[name].append(_time_once(call, inner))
    return {name: statistics.median(s) for name, s in samples.items()}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20000, help="batch rows (default 20000)")
    parser.add_argument("--width", type=int, default=64, help="hidden units (default 64)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--repeats", type=int, default=21, help="timed repeats (default 21)")
    parser.add_argument("--inner", type=int, default=20, help="calls per repeat (default 20)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    x = torch.randn(args.rows, args.width) * 2.0
    max_diff = float((Tanh()(x) - torch.tanh(x)).abs().max())
    times = measure(args.rows, args.width, args.repeats, args.inner)
    elements = args.rows * args.width
    print(f"{args.rows} x {args.width} float32, {args.threads} torch thread(s), torch "
          f"{torch.__version__}; medians of {args.repeats} repeats x {args.inner} calls")
    print("| op | ns / element | / torch.tanh |")
    print("|---|---|---|")
    base = times["torch.tanh"]
    for name, seconds in times.items():
        print(f"| {name} | {seconds / elements * 1e9:.3f} | {seconds / base:.2f}x |")
    print(f"max |agents Tanh - torch.tanh| = {max_diff:.2e}")


if __name__ == "__main__":
    main()
