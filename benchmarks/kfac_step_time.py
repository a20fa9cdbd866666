"""Time of one K-FAC iteration vs one SGD iteration on the same model and batch.

K-FAC iteration: forward + Fisher backward (statistics) + training backward + ``step()``
(preconditioning, plus an eigendecomposition refresh every ``inverse_every`` steps).
SGD iteration: forward + backward + ``step()`` (momentum 0.9).

The optimizers are measured side by side, interleaved in one process: each round times
``inverse_every`` consecutive iterations of one optimizer (so every K-FAC round holds exactly one
refresh and its cost is amortized), then the same for the others, alternating the order. The
ratio of the medians over rounds is printed, in wall-clock and in process CPU time (the latter
is less disturbed by other processes competing for the cores), with the K-FAC phases.

``--fast-fisher`` adds a contender that measures a suggested optimizer change: K-FAC whose
Fisher backward stops at the layer outputs (``torch.autograd.grad(fisher, outputs)``), skipping
the weight gradients that the statistics pass computes and then discards.

Usage::

    python benchmarks/kfac_step_time.py --model digits-ae
    python benchmarks/kfac_step_time.py --model mnist-ae --batch-size 1000 --fast-fisher
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

import acktr
from acktr.examples.autoencoder import (
    DIGITS_LAYERS,
    MNIST_LAYERS,
    Autoencoder,
    reconstruction_loss,
)
from acktr.examples.cnn import SmallCNN, classification_loss
from acktr.examples.training import KFAC_EXAMPLE_DEFAULTS, make_optimizer, parse_kfac_option

MODELS = ("digits-ae", "mnist-ae", "cnn")
PHASES = ("forward", "fisher backward", "backward", "step")


def build(
    name: str, batch: int, device: str = "cpu"
) -> tuple[nn.Module, Tensor, Tensor, Callable, str]:
    """``(model, x, y, loss(out, x, y), fisher kind)`` for a benchmark model on random data."""
    gen = torch.Generator().manual_seed(0)
    if name == "cnn":
        x = torch.rand(batch, 1, 8, 8, generator=gen)
        y = torch.randint(0, 10, (batch,), generator=gen)
        model, loss, kind = SmallCNN(), lambda o, x, y: classification_loss(o, y), "categorical"
    else:
        widths = DIGITS_LAYERS if name == "digits-ae" else MNIST_LAYERS
        x = torch.rand(batch, widths[0], generator=gen)
        y = torch.zeros(batch, dtype=torch.long)
        model, kind = Autoencoder(widths), "bernoulli"
        loss = lambda o, x, y: reconstruction_loss(o, x)  # noqa: E731
    return model.to(device), x.to(device), y.to(device), loss, kind


@dataclass
class Contender:
    """One optimizer's iteration, with its per-round times and (for K-FAC) per-phase times."""

    name: str
    iteration: Callable[[], list[float]]  # runs one iteration, returns phase end times
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    phases: list[list[float]] = field(default_factory=list)


def sgd_contender(args: argparse.Namespace) -> Contender:
    torch.manual_seed(0)
    model, x, y, loss_fn, _ = build(args.model, args.batch_size, args.device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def iteration() -> list[float]:
        out = model(x)
        opt.zero_grad(set_to_none=False)
        loss_fn(out, x, y).backward()
        opt.step()
        return []

    return Contender("sgd", iteration)


def kfac_contender(args: argparse.Namespace, fast_fisher: bool) -> Contender:
    torch.manual_seed(0)
    model, x, y, loss_fn, kind = build(args.model, args.batch_size, args.device)
    kwargs = KFAC_EXAMPLE_DEFAULTS | {"damping": args.damping, "inverse_every": args.inverse_every}
    kwargs |= dict(parse_kfac_option(item) for item in args.kfac_set)
    opt = make_optimizer("kfac", model, 0.1, kwargs)
    outputs: list[Tensor] = []
    if fast_fisher:
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                m.register_forward_hook(lambda _m, _i, out: outputs.append(out))

    def iteration() -> list[float]:
        outputs.clear()
        t = [time.perf_counter()]
        out = model(x)
        t.append(time.perf_counter())
        if opt.stats_due:
            with opt.record_stats():
                fisher = acktr.fisher_loss(out, kind)
                if fast_fisher:
                    torch.autograd.grad(fisher, outputs, retain_graph=True)
                else:
                    fisher.backward(retain_graph=True)
        t.append(time.perf_counter())
        opt.zero_grad(set_to_none=False)
        loss_fn(out, x, y).backward()
        t.append(time.perf_counter())
        opt.step()
        t.append(time.perf_counter())
        return [b - a for a, b in zip(t[:-1], t[1:], strict=True)]

    return Contender("kfac fast-fisher" if fast_fisher else "kfac", iteration)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run_rounds(
    contenders: list[Contender], rounds: int, warmup: int, per_round: int, device: str = "cpu"
) -> None:
    """Interleave rounds of ``per_round`` iterations, alternating the order of the contenders.

    On CUDA the device is synchronized at the ends of each round (not inside it), so a round's
    time includes all its kernels while the per-phase times only show host-side launch cost."""
    for r in range(warmup + rounds):
        order = contenders if r % 2 == 0 else contenders[::-1]
        for c in order:
            _sync(device)
            wall, cpu = time.perf_counter(), time.process_time()
            phases = [c.iteration() for _ in range(per_round)]
            _sync(device)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            if r >= warmup:
                c.wall.append(wall / per_round)
                c.cpu.append(cpu / per_round)
                c.phases.extend(phases)


def report(contenders: list[Contender], args: argparse.Namespace) -> None:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"model {args.model}, batch {args.batch_size}, inverse_every {args.inverse_every}, "
        f"K-FAC overrides {args.kfac_set or 'none'}, "
        f"device {args.device}, {args.threads} threads, torch {torch.__version__}, "
        f"{platform.machine()}, "
        f"{os.cpu_count()} cpus, load average {load:.1f}; "
        f"{args.rounds} interleaved rounds x {args.inverse_every} iterations, medians over rounds"
    )
    sgd = contenders[0]
    for c in contenders:
        print(
            f"  {c.name:<17} wall {1e3 * statistics.median(c.wall):8.3f} ms/iter   "
            f"cpu {1e3 * statistics.median(c.cpu):8.3f} ms/iter"
        )
    for c in contenders[1:]:
        n = args.inverse_every
        # Iteration k of a round is the refresh step when the round starts at a multiple of n.
        steps = [p[3] for p in c.phases]
        refresh = [s for i, s in enumerate(steps) if i % n == 0]
        plain = [s for i, s in enumerate(steps) if i % n != 0]
        med = [1e3 * statistics.median(p[i] for p in c.phases) for i in range(len(PHASES))]
        print(
            f"  {c.name} phases (median ms, wall): "
            + ", ".join(f"{k} {v:.3f}" for k, v in zip(PHASES, med, strict=True))
            + f"; step with refresh {1e3 * statistics.median(refresh):.3f}, "
            f"without {1e3 * statistics.median(plain):.3f}"
        )
    for c in contenders[1:]:
        wall = statistics.median(c.wall) / statistics.median(sgd.wall)
        cpu = statistics.median(c.cpu) / statistics.median(sgd.cpu)
        print(f"ratio {c.name} / sgd = {wall:.2f} (wall-clock), {cpu:.2f} (cpu time)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=MODELS, default="digits-ae", help="default digits-ae")
    p.add_argument("--batch-size", type=int, default=512, help="default 512")
    p.add_argument("--rounds", type=int, default=30, help="timed rounds per optimizer; default 30")
    p.add_argument("--warmup", type=int, default=3, help="untimed rounds first; default 3")
    p.add_argument("--inverse-every", type=int, default=10, help="K-FAC refresh period; default 10")
    p.add_argument("--damping", type=float, default=1e-2, help="K-FAC damping; default 1e-2")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads; default 2")
    p.add_argument("--device", default="cpu", help="cpu or cuda; default cpu")
    p.add_argument(
        "--kfac-set",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="extra acktr.KFAC keyword (repeatable), e.g. stats_every=5",
    )
    p.add_argument(
        "--fast-fisher",
        action="store_true",
        help="also time K-FAC with a Fisher backward that stops at the layer outputs",
    )
    p.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="afterwards, profile N K-FAC iterations (torch.profiler) and print the top "
        "operators by self CPU time; default 0 (off)",
    )
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", RuntimeWarning)
    contenders = [sgd_contender(args), kfac_contender(args, fast_fisher=False)]
    if args.fast_fisher:
        contenders.append(kfac_contender(args, fast_fisher=True))
    run_rounds(contenders, args.rounds, args.warmup, args.inverse_every, args.device)
    report(contenders, args)
    if args.profile:
        profile(contenders[1], args.profile)


def profile(kfac: Contender, iterations: int) -> None:
    """Print torch.profiler's top operators over ``iterations`` K-FAC iterations."""
    from torch.profiler import ProfilerActivity, record_function
    from torch.profiler import profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(iterations):
            with record_function("kfac iteration"):
                kfac.iteration()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    main()
