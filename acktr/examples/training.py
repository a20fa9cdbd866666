"""One training run of a supervised task with K-FAC, SGD or Adam, recording loss and time.

Every optimizer sees the same initial weights and the same sequence of minibatches for a given
seed, so curves from different optimizers (and learning rates) are directly comparable.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn

import acktr
from acktr.examples import synthetic
from acktr.examples.autoencoder import DIGITS_LAYERS, MNIST_LAYERS, Autoencoder, reconstruction_loss
from acktr.examples.cnn import SmallCNN, classification_loss
from acktr.examples.data import Dataset
from acktr.losses import FisherKind

OptimizerName = Literal["kfac", "sgd", "adam"]
OPTIMIZERS: tuple[str, ...] = ("kfac", "sgd", "adam")
TaskName = Literal["autoencoder", "cnn", "tanh_regression", "wide_classifier"]
TASKS: tuple[str, ...] = ("autoencoder", "cnn", "tanh_regression", "wide_classifier")

KFAC_EXAMPLE_DEFAULTS: dict[str, Any] = {"damping": 1e-2, "kl_clip": 1e-2}
"""K-FAC keyword arguments the examples use unless told otherwise (see docs/benchmarks.md)."""


def parse_kfac_option(text: str) -> tuple[str, Any]:
    """Parse ``KEY=VALUE`` into a K-FAC keyword argument (``"stats_every=5"`` -> ``("stats_every",
    5)``). Values: ``none``, ``true``/``false``, integers, floats, or strings.

    Raises:
        ValueError: if there is no ``=`` or ``KEY`` is not an argument of :class:`acktr.KFAC`.
    """
    key, sep, value = text.partition("=")
    key = key.strip().replace("-", "_")
    valid = [k for k in inspect.signature(acktr.KFAC).parameters if k not in ("self", "model")]
    if not sep or key not in valid:
        raise ValueError(f"expected KEY=VALUE with KEY one of {', '.join(valid)}; got {text!r}")
    value = value.strip()
    lowered = value.lower()
    if lowered in ("none", "true", "false"):
        return key, {"none": None, "true": True, "false": False}[lowered]
    for kind in (int, float):
        try:
            return key, kind(value)
        except ValueError:
            pass
    return key, value


@dataclass
class Task:
    """A supervised problem: a model builder, its loss, its Fisher kind and its training data.

    Attributes:
        name: ``"autoencoder"`` or ``"cnn"``.
        build_model: makes a freshly initialised model (seed the global RNG first).
        loss: ``loss(outputs, x, y)``, the batch mean of per-example losses.
        fisher_kind: the output distribution for :func:`acktr.fisher_loss`.
        x: training inputs.
        y: training labels (unused by the autoencoder).
        batch_size: minibatch size.
    """

    name: str
    build_model: Callable[[], nn.Module]
    loss: Callable[[Tensor, Tensor, Tensor], Tensor]
    fisher_kind: FisherKind
    x: Tensor
    y: Tensor
    batch_size: int


def make_task(name: TaskName, data: Dataset, batch_size: int | None = None) -> Task:
    """The example task ``name`` on ``data``.

    Args:
        name: ``"autoencoder"`` (tanh autoencoder, logistic cross-entropy, Bernoulli Fisher),
            ``"cnn"`` (small CNN, softmax cross-entropy, categorical Fisher), or one of the
            synthetic problems of :mod:`acktr.examples.synthetic` (``"tanh_regression"``:
            deep tanh MLP, ill-conditioned inputs, squared error; ``"wide_classifier"``: wide
            ReLU MLP, softmax cross-entropy), which ignore ``data``.
        data: the dataset (digits or MNIST).
        batch_size: minibatch size; None picks 512 (autoencoder, wide_classifier) or 256 (cnn,
            tanh_regression), capped at the training-set size.
    """
    if name == "autoencoder":
        widths = DIGITS_LAYERS if data.side == 8 else (data.n_pixels,) + MNIST_LAYERS[1:]
        return Task(
            name,
            lambda: Autoencoder(widths),
            lambda out, x, y: reconstruction_loss(out, x),
            "bernoulli",
            data.x_train,
            data.y_train,
            min(batch_size or 512, len(data.x_train)),
        )
    if name == "cnn":
        return Task(
            name,
            lambda: SmallCNN(side=data.side),
            lambda out, x, y: classification_loss(out, y),
            "categorical",
            data.x_train,
            data.y_train,
            min(batch_size or 256, len(data.x_train)),
        )
    if name == "tanh_regression":
        x, y = synthetic.tanh_regression_data()
        return Task(name, synthetic.deep_tanh_mlp, synthetic.squared_error, "gaussian", x, y,
                    min(batch_size or 256, len(x)))
    if name == "wide_classifier":
        x, y = synthetic.wide_classifier_data()
        return Task(name, synthetic.wide_relu_mlp, synthetic.cross_entropy, "categorical", x, y,
                    min(batch_size or 512, len(x)))
    raise ValueError(f"task must be one of {TASKS}, got {name!r}")


def batches(n: int, batch_size: int, seed: int) -> Iterator[Tensor]:
    """Endless index minibatches: a fresh seeded permutation each epoch, the tail dropped."""
    gen = torch.Generator().manual_seed(seed)
    while True:
        perm = torch.randperm(n, generator=gen)
        for start in range(0, n - batch_size + 1, batch_size):
            yield perm[start : start + batch_size]


def make_optimizer(
    name: OptimizerName, model: nn.Module, lr: float, kfac_kwargs: dict[str, Any] | None = None
) -> torch.optim.Optimizer:
    """Build ``"kfac"`` (:class:`acktr.KFAC`), ``"sgd"`` (momentum 0.9) or ``"adam"``.

    Args:
        name: which optimizer.
        model: the model to optimize.
        lr: learning rate.
        kfac_kwargs: extra keyword arguments for K-FAC (ignored by the others). None uses
            :data:`KFAC_EXAMPLE_DEFAULTS`; pass ``{}`` for the optimizer's own defaults.
    """
    if name == "kfac":
        kwargs = KFAC_EXAMPLE_DEFAULTS if kfac_kwargs is None else kfac_kwargs
        if kwargs.get("adaptive"):  # chooses its own step: no lr
            return acktr.KFAC(model, **kwargs)
        return acktr.KFAC(model, lr=lr, **kwargs)
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr)
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")


@dataclass
class RunResult:
    """The record of one training run.

    Attributes:
        optimizer: ``"kfac"``, ``"sgd"`` or ``"adam"``.
        lr: its learning rate.
        label: a name for plots and tables (e.g. ``"kfac (defaults)"``).
        losses: training (minibatch) loss at each iteration, before that iteration's step.
        times: wall-clock seconds since the start of training at the end of each iteration.
        cpu_times: CPU seconds of the process (all threads) at the same points; less sensitive
            than wall-clock to other processes competing for the cores.
        diverged: True if the loss became NaN/Inf (training stopped there).
    """

    optimizer: str
    lr: float
    label: str = ""
    losses: list[float] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    cpu_times: list[float] = field(default_factory=list)
    diverged: bool = False

    def final_loss(self, window: int = 10) -> float:
        """Mean training loss over the last ``window`` iterations (inf if diverged)."""
        if self.diverged or not self.losses:
            return math.inf
        tail = self.losses[-window:]
        return sum(tail) / len(tail)

    def iters_to_reach(self, target: float, window: int = 10) -> int | None:
        """Iterations until the ``window``-iteration moving average of the loss is <= target."""
        for i in range(window - 1, len(self.losses)):
            if sum(self.losses[i - window + 1 : i + 1]) / window <= target:
                return i + 1
        return None

    def time_to_reach(self, target: float, window: int = 10, cpu: bool = False) -> float | None:
        """Seconds (wall-clock, or CPU if ``cpu``) until :meth:`iters_to_reach` is met."""
        n = self.iters_to_reach(target, window)
        return None if n is None else (self.cpu_times if cpu else self.times)[n - 1]


def train_step(
    task: Task, model: nn.Module, opt: torch.optim.Optimizer, x: Tensor, y: Tensor
) -> float:
    """One iteration: forward, the Fisher backward when K-FAC records statistics, step
    (adaptive K-FAC: ``opt.step(closure)``, which does all of it).

    Returns the minibatch loss before the step. If it is NaN/Inf the step is not taken (the
    model has diverged; sampling Fisher targets from NaN outputs would raise).
    """
    if isinstance(opt, acktr.KFAC) and opt.adaptive:
        return float(opt.step(lambda: task.loss(model(x), x, y)))
    out = model(x)
    loss = task.loss(out, x, y)
    value = float(loss.detach())
    if not math.isfinite(value):
        return value
    if isinstance(opt, acktr.KFAC) and opt.stats_due:
        with opt.record_stats():
            acktr.fisher_loss(out, task.fisher_kind).backward(retain_graph=True)
    opt.zero_grad(set_to_none=False)
    loss.backward()
    opt.step()
    return value


def iterate(
    task: Task,
    optimizer: OptimizerName,
    lr: float,
    seed: int = 0,
    kfac_kwargs: dict[str, Any] | None = None,
) -> Iterator[float]:
    """Endless training of a fresh model: yields each iteration's minibatch loss.

    The model is built right away (seeded with ``seed``); each ``next()`` runs one
    :func:`train_step` on the next minibatch of the seeded order. Lets callers interleave
    several runs, e.g. to time them under the same machine load.
    """
    torch.manual_seed(seed)
    model = task.build_model()
    opt = make_optimizer(optimizer, model, lr, kfac_kwargs)
    order = batches(len(task.x), task.batch_size, seed)

    def run() -> Iterator[float]:
        for idx in order:
            yield train_step(task, model, opt, task.x[idx], task.y[idx])

    return run()


def train(
    task: Task,
    optimizer: OptimizerName,
    lr: float,
    iters: int,
    seed: int = 0,
    kfac_kwargs: dict[str, Any] | None = None,
    label: str | None = None,
) -> RunResult:
    """Train a fresh model (initialised from ``seed``) for ``iters`` iterations.

    Args:
        task: what to train.
        optimizer: ``"kfac"``, ``"sgd"`` or ``"adam"``.
        lr: learning rate.
        iters: number of iterations (minibatches).
        seed: seeds the initial weights, the minibatch order and K-FAC's sampled targets.
            Default 0.
        kfac_kwargs: see :func:`make_optimizer`.
        label: name for plots (default: the optimizer's name).

    Returns:
        The losses and cumulative wall-clock times per iteration. Timing excludes model
        construction and stops at divergence.
    """
    run = iterate(task, optimizer, lr, seed, kfac_kwargs)
    result = RunResult(optimizer, lr, label or optimizer)
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(iters):
        loss = next(run)
        result.losses.append(loss)
        result.times.append(time.perf_counter() - start)
        result.cpu_times.append(time.process_time() - cpu_start)
        if not math.isfinite(loss):
            result.diverged = True
            break
    return result
