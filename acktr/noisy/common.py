"""What the variational optimizers share: the ELBO's constants and the weight-sampling context.

Zhang, Sun, Duvenaud & Grosse (2018), "Noisy natural gradient as variational inference", fit a
Gaussian posterior ``q(w)`` by maximising the KL-weighted ELBO

    L[q] = E_q[log p(D | w)] - lambda KL(q(w) || p(w)),      p(w) = N(0, eta I)        (eq. 3)

per data point: with ``N`` training examples the natural-gradient fixed point has posterior
covariance ``Sigma = (lambda / N) (F + gamma_in I)^-1`` (eq. 10 with the Fisher for the
Hessian), where ``gamma_in = lambda / (N eta)`` is the *intrinsic damping* the prior contributes
(Algorithms 1 and 2). ``lambda`` is the KL weight (1 for the true ELBO), ``eta`` the prior
variance.

Every optimizer in :mod:`acktr.noisy` keeps the posterior means in the model's parameters and
writes a posterior sample into them only inside ``with opt.sample():``; the gradients computed
there are gradients at the sample, which ``step()`` turns into an update of the means.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from acktr.schedules import Schedule, check_positive, resolve


def check_model(model: nn.Module) -> None:
    """Raise a ``TypeError`` unless ``model`` is an ``nn.Module``."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")


def check_elbo_constants(n_data: int, kl_weight: float, prior_var: float) -> None:
    """Validate ``N`` (an int >= 1), ``lambda`` (> 0) and ``eta`` (> 0), naming a bad value."""
    if isinstance(n_data, bool) or not isinstance(n_data, int) or n_data < 1:
        raise ValueError(f"n_data (training-set size N) must be an integer >= 1, got {n_data!r}")
    for name, value in (("kl_weight", kl_weight), ("prior_var", prior_var)):
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def intrinsic_damping(n_data: int, kl_weight: float, prior_var: float) -> float:
    """``gamma_in = lambda / (N eta)`` (Zhang et al. 2018, Algorithms 1 and 2)."""
    return kl_weight / (n_data * prior_var)


def check_betas(betas: Sequence[float]) -> tuple[float, float]:
    """Validate a pair of EMA decays in [0, 1)."""
    if len(betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in betas):
        raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
    return float(betas[0]), float(betas[1])


@contextmanager
def sampled_weights(params: Sequence[Tensor], noise: Sequence[Tensor]) -> Iterator[list[Tensor]]:
    """Write ``mean + noise`` into ``params`` for the duration of the context, then the means back.

    Yields the list of samples (detached copies). ``.grad`` is untouched, so gradients of losses
    computed inside are gradients at the sample.
    """
    with torch.no_grad():
        means = [p.detach().clone() for p in params]
        for p, e in zip(params, noise, strict=True):
            p.add_(e.to(p.dtype))
        samples = [p.detach().clone() for p in params]
    try:
        yield samples
    finally:
        with torch.no_grad():
            for p, m in zip(params, means, strict=True):
                p.copy_(m)


class NoisyOptimizer(torch.optim.Optimizer):
    """What :class:`~acktr.noisy.NoisyAdam` and :class:`~acktr.noisy.NoisyKFAC` share: one
    parameter group whose ``lr`` may be a schedule, the ELBO's constants, the posterior sample
    that ``sample()`` writes and ``step()`` consumes, the step count, and state dicts with the
    optimizer's own state under ``"noisy"``.

    A subclass calls :meth:`_set_elbo_constants` and this ``__init__``, implements
    :meth:`_params` (the parameters holding the posterior means, in the order of the noise that
    :meth:`_sampled` takes), :meth:`_posterior_state` and :meth:`_load_posterior_state`.
    """

    def __init__(self, params: list[Tensor], lr: Schedule) -> None:
        super().__init__(params, {"lr": resolve(lr, 0)})
        self._lr: Callable[[int], float] | None = lr if callable(lr) else None
        self.steps = 0
        self._sample: list[Tensor] | None = None

    def _set_elbo_constants(self, n_data: int, kl_weight: float, prior_var: float) -> None:
        """``N``, ``lambda``, ``eta`` (checked before) and ``gamma_in = lambda / (N eta)``."""
        self.n_data, self.kl_weight, self.prior_var = n_data, float(kl_weight), float(prior_var)
        self.damping_in = intrinsic_damping(n_data, kl_weight, prior_var)

    def _params(self) -> list[Tensor]:
        raise NotImplementedError

    @contextmanager
    def _sampled(self, noise: list[Tensor]) -> Iterator[None]:
        with sampled_weights(self._params(), noise) as samples:
            self._sample = samples
            yield

    def _check_step(self, closure: Callable[[], float] | None) -> None:
        """Refuse a closure, or a step without gradients at a sample."""
        name = type(self).__name__
        if closure is not None:
            raise ValueError(f"{name}.step() takes no closure: compute the loss inside sample()")
        if self._sample is None:
            raise RuntimeError(
                f"{name}.step() needs gradients at a posterior sample: run the forward and "
                "backward passes inside `with opt.sample():` before every step"
            )

    def _step_lr(self) -> float:
        """This step's ``lr`` (from the schedule, if any, written into the group), checked."""
        group = self.param_groups[0]
        if self._lr is not None:
            group["lr"] = resolve(self._lr, self.steps)
        return check_positive("lr", group["lr"])

    # ------------------------------------------------------------------ state
    def _posterior_state(self) -> dict[str, object]:
        raise NotImplementedError

    def _load_posterior_state(self, noisy: dict) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict[str, object]:  # type: ignore[override]
        """The optimizer's state dict plus, under ``"noisy"``, the step count and the
        curvature estimates."""
        state = super().state_dict()
        state["noisy"] = {"steps": self.steps, **self._posterior_state()}
        return state

    def load_state_dict(self, state_dict: dict[str, object]) -> None:  # type: ignore[override]
        state = dict(state_dict)
        if "noisy" not in state:
            raise ValueError(f"not a {type(self).__name__} state dict: missing 'noisy'")
        noisy: dict = state.pop("noisy")  # type: ignore[assignment]
        self._load_posterior_state(noisy)
        self.steps = int(noisy["steps"])
        super().load_state_dict(state)
