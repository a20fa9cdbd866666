"""Three optimizers on the same PCD log-likelihood gradient: SGD, centering, and FANG.

Each takes the :class:`~acktr.rbm.pcd.Statistics` of one iteration, turns its gradient
``g = s_data - s_model`` into a direction ``d``, and ascends:
``velocity <- momentum * velocity + d``, ``eta <- eta + lr * velocity``. They differ only in
``d``:

* :class:`SGD`: ``d = g``.
* :class:`Centered`: ``d = J J^T g`` with ``J`` the Jacobian of the map from the centered
  parameterization ``E = -(v - mu)^T W (h - lam) - a_c^T (v - mu) - b_c^T (h - lam)`` to
  ``(W, a, b)``
  (Montavon & Mueller 2012; the enhanced gradient of Cho et al. 2011): a gradient step in the
  centered parameters, mapped back. Equivalently the natural gradient under the centering's
  implied Gaussian graphical model (:meth:`GraphicalFisher.centering`).
* :class:`FANG`: ``d = L D^-1 L^T g``, the natural gradient under a Gaussian graphical model of
  the Fisher fitted by linear regression on the PCD samples (:meth:`GraphicalFisher.fit`).

Every hyperparameter named ``lr`` may be a float or a callable of the iteration (from 0).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor

from acktr.rbm.fisher import GraphicalFisher, hidden_moments
from acktr.rbm.model import RBM, check_positive_int
from acktr.rbm.pcd import Statistics

Schedule = float | Callable[[int], float]
Direction = tuple[Tensor, Tensor, Tensor]


def _check_lr(lr: Schedule) -> Schedule:
    if callable(lr):
        return lr
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"lr must be a positive float or a callable of the step, got {lr!r}")
    return float(lr)


def _check_unit_interval(name: str, value: float, closed_right: bool = False) -> float:
    ok = 0.0 <= value <= 1.0 if closed_right else 0.0 <= value < 1.0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok:
        allowed = "[0, 1]" if closed_right else "[0, 1)"
        raise ValueError(f"{name} must be a number in {allowed}, got {value!r}")
    return float(value)


class _Ascent:
    """Momentum and the parameter update, shared by the three optimizers."""

    def __init__(self, rbm: RBM, lr: Schedule, momentum: float) -> None:
        self.rbm = rbm
        self.lr = _check_lr(lr)
        self.momentum = _check_unit_interval("momentum", momentum)
        self.velocity: Direction | None = None
        self.iteration = 0

    def current_lr(self) -> float:
        return float(self.lr(self.iteration)) if callable(self.lr) else self.lr

    def direction(self, stats: Statistics) -> Direction:
        raise NotImplementedError

    @torch.no_grad()
    def step(self, stats: Statistics) -> Direction:
        """One update of the RBM's ``(W, a, b)`` in place; returns the direction ``d`` used."""
        d = self.direction(stats)
        if self.velocity is None or self.momentum == 0.0:
            self.velocity = d
        else:
            self.velocity = tuple(
                self.momentum * v + x for v, x in zip(self.velocity, d, strict=True)
            )
        lr = self.current_lr()
        for p, v in zip((self.rbm.W, self.rbm.a, self.rbm.b), self.velocity, strict=True):
            p.add_(v, alpha=lr)
        self.iteration += 1
        return d


class SGD(_Ascent):
    """Stochastic gradient ascent on the mean log-likelihood, with optional momentum.

    Args:
        rbm: the model, updated in place.
        lr: learning rate (float or callable of the iteration). Default 0.05.
        momentum: heavy-ball momentum in ``[0, 1)``. Default 0.
    """

    def __init__(self, rbm: RBM, lr: Schedule = 0.05, momentum: float = 0.0) -> None:
        super().__init__(rbm, lr, momentum)

    def direction(self, stats: Statistics) -> Direction:
        return stats.gradient()


OffsetSource = Literal["model", "data", "average"]


class Centered(_Ascent):
    """The centering trick: gradient ascent in the centered parameterization.

    With offsets ``mu ~ E[v]`` and ``lam ~ E[h]`` the direction is (``g`` the plain gradient)

        d_W = g_W - mu g_b^T - g_a lam^T,    d_a = g_a - d_W lam,    d_b = g_b - d_W^T mu,

    i.e. ``J J^T g`` for the reparameterization's Jacobian ``J``. The offsets are exponential
    moving averages of the unit means (Melchior, Fischer & Wiskott 2016), initialized at the
    first iteration's means.

    Args:
        rbm: the model, updated in place.
        lr: learning rate (float or callable of the iteration). Default 0.05.
        momentum: heavy-ball momentum in ``[0, 1)``. Default 0.
        offsets: whose means the offsets track: ``"model"`` (the PCD chains; the slides'
            ``E[v]``, ``E[h]``), ``"data"`` (the minibatch and its hidden probabilities), or
            ``"average"`` of the two (the enhanced gradient). Default ``"average"``.
        offset_decay: moving-average decay in ``[0, 1)``. Default 0.99.
    """

    def __init__(
        self,
        rbm: RBM,
        lr: Schedule = 0.05,
        momentum: float = 0.0,
        offsets: OffsetSource = "average",
        offset_decay: float = 0.99,
    ) -> None:
        super().__init__(rbm, lr, momentum)
        if offsets not in ("model", "data", "average"):
            raise ValueError(f"offsets must be 'model', 'data' or 'average', got {offsets!r}")
        self.offsets = offsets
        self.offset_decay = _check_unit_interval("offset_decay", offset_decay)
        self.offset_v: Tensor | None = None
        self.offset_h: Tensor | None = None

    def _update_offsets(self, stats: Statistics) -> None:
        weight = {"model": 0.0, "data": 1.0, "average": 0.5}[self.offsets]
        mv = weight * stats.data_v.mean(0) + (1 - weight) * stats.model_v.mean(0)
        mh = weight * stats.data_h.mean(0) + (1 - weight) * stats.model_h.mean(0)
        if self.offset_v is None:
            self.offset_v, self.offset_h = mv, mh
        else:
            self.offset_v = torch.lerp(mv, self.offset_v, self.offset_decay)
            self.offset_h = torch.lerp(mh, self.offset_h, self.offset_decay)

    def direction(self, stats: Statistics) -> Direction:
        self._update_offsets(stats)
        return centered_direction(*stats.gradient(), self.offset_v, self.offset_h)


def centered_direction(
    g_w: Tensor, g_a: Tensor, g_b: Tensor, offset_v: Tensor, offset_h: Tensor
) -> Direction:
    """``J J^T g`` for the centered parameterization with offsets ``mu``, ``lam`` (see
    :class:`Centered`); equal to ``GraphicalFisher.centering(mu, lam).precondition(g)`` (tested),
    at ``O(n_v n_h)`` cost."""
    d_w = g_w - torch.outer(offset_v, g_b) - torch.outer(g_a, offset_h)
    return d_w, g_a - d_w @ offset_h, g_b - d_w.T @ offset_v


class FANG(_Ascent):
    """Factorized natural gradient (Grosse & Salakhutdinov): ``d = L D^-1 L^T g ~= G^-1 g``.

    The phases of :meth:`step`:

    1. every ``stats_every`` iterations, add the PCD chains' moments ``E[u]``, ``E[u u^T]`` of
       ``u = (v, h)`` (hidden units Rao-Blackwellized) to a running sum (``O(n_chains n_u^2)``);
    2. every ``refit_every`` iterations (and at the first), refit the graphical model by linear
       regression on the accumulated samples (:meth:`GraphicalFisher.fit`, one ``n_u x n_u``
       Cholesky), then start a new sum;
    3. precondition the gradient with the sparse factors (:meth:`GraphicalFisher.precondition`:
       ``O(n_u^2 + n_v n_h)``, against ``O(batch n_v n_h)`` for the gradient itself);
    4. momentum and ascent as for :class:`SGD`.

    Natural-gradient steps are in units of the moments: to first order ``lr = 1`` moves the model
    moments all the way to the data's (slides, "Natural gradient: RBMs").

    Args:
        rbm: the model, updated in place.
        lr: learning rate (float or callable of the iteration). Default 0.05.
        momentum: heavy-ball momentum in ``[0, 1)``. Default 0.
        damping: added to every variance before fitting (the model approximates
            ``G + damping * I``); > 0. Default 0.1 (0.01 diverged on digits at 64 x 100 with
            PCD noise, see ``docs/rbm.md``; the variances themselves are at most 0.25).
        refit_every: iterations between refits. Default 100 (the slides' "every ~100 iterations").
        stats_every: iterations between samples of the statistics. Default 10.
    """

    def __init__(
        self,
        rbm: RBM,
        lr: Schedule = 0.05,
        momentum: float = 0.0,
        damping: float = 0.1,
        refit_every: int = 100,
        stats_every: int = 10,
    ) -> None:
        super().__init__(rbm, lr, momentum)
        if isinstance(damping, bool) or not isinstance(damping, (int, float)) or not damping > 0:
            raise ValueError(f"damping must be a positive number, got {damping!r}")
        self.damping = float(damping)
        self.refit_every = check_positive_int("refit_every", refit_every)
        self.stats_every = check_positive_int("stats_every", stats_every)
        self.fisher: GraphicalFisher | None = None
        self._sum_u: Tensor | None = None
        self._sum_uu: Tensor | None = None
        self._count = 0

    def accumulate(self, stats: Statistics) -> None:
        """Phase 1: add the model samples' moments to the running sums."""
        s_u, s_uu = hidden_moments(stats.model_v, stats.model_h)
        if self._sum_u is None:
            self._sum_u, self._sum_uu = s_u, s_uu
        else:
            self._sum_u, self._sum_uu = self._sum_u + s_u, self._sum_uu + s_uu
        self._count += stats.model_v.shape[0]

    def refit(self) -> None:
        """Phase 2: fit the graphical model to the accumulated moments and reset the sums."""
        if self._count == 0:
            raise RuntimeError("FANG.refit() called before any statistics were accumulated")
        mean_u, second_u = self._sum_u / self._count, self._sum_uu / self._count
        self.fisher = GraphicalFisher.fit(mean_u, second_u, self.rbm.n_visible, self.damping)
        self._sum_u = self._sum_uu = None
        self._count = 0

    def direction(self, stats: Statistics) -> Direction:
        if self.iteration % self.stats_every == 0 or self.fisher is None:
            self.accumulate(stats)
        if self.iteration % self.refit_every == 0 or self.fisher is None:
            self.refit()
        return self.fisher.precondition(*stats.gradient())
