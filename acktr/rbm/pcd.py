"""The maximum-likelihood gradient of an RBM: exact positive phase, PCD negative phase.

    d log p(v) / d w_ij = E_{p(h|v)}[v_i h_j] - E_{p(v,h)}[v_i h_j]      (FANG slides, intro)

and likewise for the biases with ``v_i`` and ``h_j`` alone. The data term is exact given the data
(``E[h | v]`` in closed form). The model term is estimated from persistent contrastive divergence
(Tieleman 2008): ``n_chains`` Gibbs chains that are never reset, advanced ``gibbs_steps`` full
sweeps per iteration; the hidden side is Rao-Blackwellized (``p(h | v)`` instead of a sample).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from acktr.rbm.model import RBM, check_binary, check_positive_int


@dataclass(frozen=True)
class Statistics:
    """Samples of the two phases of one iteration.

    Attributes:
        data_v: ``(batch, n_v)`` binary data.
        data_h: ``(batch, n_h)`` hidden probabilities ``p(h | data_v)``.
        model_v: ``(n_chains, n_v)`` binary states of the persistent chains.
        model_h: ``(n_chains, n_h)`` hidden probabilities ``p(h | model_v)``.
    """

    data_v: Tensor
    data_h: Tensor
    model_v: Tensor
    model_h: Tensor

    def gradient(self) -> tuple[Tensor, Tensor, Tensor]:
        """Log-likelihood gradient ``s_data - s_model`` (an ascent direction) as ``(gW, ga, gb)``.

        Each phase averages over its rows: this is the gradient of the *mean* log-likelihood.
        """
        n_d, n_m = self.data_v.shape[0], self.model_v.shape[0]
        g_w = self.data_v.T @ self.data_h / n_d - self.model_v.T @ self.model_h / n_m
        g_a = self.data_v.mean(0) - self.model_v.mean(0)
        g_b = self.data_h.mean(0) - self.model_h.mean(0)
        return g_w, g_a, g_b


class PersistentChains:
    """Persistent Gibbs chains for the negative phase (PCD).

    Args:
        n_visible: visible units of the RBM the chains sample.
        n_chains: number of chains (fantasy particles). Default 100.
        gibbs_steps: full Gibbs sweeps ``v -> h -> v`` per :meth:`advance`. Default 1.
        init: optional ``(n_chains, n_visible)`` binary initial states; default uniform random.
        generator: optional ``torch.Generator`` (on the model's device) for the sampling.
    """

    def __init__(
        self,
        n_visible: int,
        n_chains: int = 100,
        gibbs_steps: int = 1,
        init: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        check_positive_int("n_visible", n_visible)
        self.n_chains = check_positive_int("n_chains", n_chains)
        self.gibbs_steps = check_positive_int("gibbs_steps", gibbs_steps)
        self.generator = generator
        if init is None:
            device = generator.device if generator is not None else None
            init = torch.bernoulli(
                torch.full((n_chains, n_visible), 0.5, device=device), generator=generator
            )
        else:
            check_binary(init, n_visible, "init")
            if init.shape[0] != n_chains:
                raise ValueError(f"init must have n_chains={n_chains} rows, got {init.shape[0]}")
        self.v = init.clone()

    def advance(self, rbm: RBM) -> tuple[Tensor, Tensor]:
        """Run ``gibbs_steps`` sweeps under ``rbm``; returns ``(v, p(h | v))`` of the new states."""
        if rbm.n_visible != self.v.shape[1]:
            raise ValueError(
                f"chains have {self.v.shape[1]} visible units but the RBM has {rbm.n_visible}"
            )
        v = self.v.to(rbm.W)
        for _ in range(self.gibbs_steps):
            h = torch.bernoulli(rbm.hidden_prob(v), generator=self.generator)
            v = torch.bernoulli(rbm.visible_prob(h), generator=self.generator)
        self.v = v
        return v, rbm.hidden_prob(v)


def likelihood_gradient(rbm: RBM, data: Tensor, chains: PersistentChains) -> Statistics:
    """Positive phase on ``data`` (exact given the data) and negative phase from ``chains``.

    Advances the chains. ``data`` must be a binary ``(batch, n_visible)`` tensor (checked); call
    :meth:`Statistics.gradient` on the result for the gradient.
    """
    check_binary(data, rbm.n_visible, "data")
    data = data.to(rbm.W)
    model_v, model_h = chains.advance(rbm)
    return Statistics(data, rbm.hidden_prob(data), model_v, model_h)
