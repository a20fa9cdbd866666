"""Block-tridiagonal K-FAC (Martens & Grosse 2015, section 4.3) as a preconditioner.

:class:`TridiagonalKFACPreconditioner` records, besides the block-diagonal K-FAC factors, the
cross-layer factors ``A_{i-1,i} = E[a_bar_{i-1} a_bar_i^T]`` and ``G_{i,i+1} = E[g_i g_{i+1}^T]``
of a chain of dense layers, and preconditions with ``F^^-1 = Xi^T Lambda Xi``, the inverse of
the chain model; the equations and their factored inverse are in :mod:`acktr.chain`.
``acktr.KFAC(model, structure="block_tridiagonal")`` uses it.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import torch
from torch import Tensor, nn

from acktr.blocks import (
    KroneckerBlock,
    all_finite,
    ema_update,
    ema_weight,
)
from acktr.chain import ChainInverse, apply_chain_inverse, chain_inverse, chain_inverse_to_dense
from acktr.distributed import reduce_statistics
from acktr.linalg import CurvatureLinAlgError
from acktr.preconditioner import KFACPreconditioner
from acktr.schedules import check_positive

Structure = Literal["block_diagonal", "block_tridiagonal"]
STRUCTURES: tuple[str, ...] = ("block_diagonal", "block_tridiagonal")
_USE_DIAGONAL = "use structure='block_diagonal' (the default) for this model"


def with_ones(rows: Tensor, has_bias: bool) -> Tensor:
    """Append the homogeneous coordinate (a column of ones) when the layer has a bias."""
    if not has_bias:
        return rows
    return torch.cat([rows, torch.ones_like(rows[:, :1])], dim=1)


# ---------------------------------------------------------------------- the preconditioner
class TridiagonalKFACPreconditioner(KFACPreconditioner):
    """Block-tridiagonal K-FAC (Martens & Grosse 2015, section 4.3) for a chain of dense layers.

    Everything of :class:`~acktr.preconditioner.KFACPreconditioner` (hooks, diagonal factors
    ``A_{i-1,i-1}``, ``G_{i,i}``, the fallback for unclaimed parameters, ``record_stats()``,
    ``stats_every``, state dicts) plus the cross-layer factors ``A_{i-1,i} = E[a_bar_{i-1}
    a_bar_i^T]`` and ``G_{i,i+1} = E[g_i g_{i+1}^T]``, recorded from the same rows and backward
    passes and averaged with the same EMA. ``step()`` applies ``F^^-1 = Xi^T Lambda Xi`` (see
    :mod:`acktr.chain`) to the layers' gradients jointly.

    The model's Kronecker layers (in ``model.named_modules()`` order) must be ``nn.Linear``
    layers forming a chain: each feeds the next (its ``out_features`` are the next layer's
    ``in_features``), each runs once per forward pass, in that order, on the same rows (an MLP,
    elementwise activations in between). Anything else (a convolution, a layer used twice, a
    branch) is a ``ValueError`` naming the layer: use the block-diagonal structure there.

    Args:
        model: the network (see above).
        **kwargs: the keyword arguments of :class:`~acktr.preconditioner.KFACPreconditioner`
            (``damping``, ``stat_decay``, ``stats_every``, ``inverse_every``, ``fallback``,
            ``loss_reduction``, ``exclude``, with its defaults), forwarded to it, except:

            * ``damping``: ``lambda`` (float or callable of the step) is applied as factored
              Tikhonov damping of the diagonal factors (section 6.3). It is baked into the
              factorization, so a change of its value triggers a refresh at the next step.
            * ``damping_scheme``: only ``"tikhonov"`` (here the default): eigenvalue-product
              damping ``F~_{i,i} + lambda I`` is not a Kronecker product, so the chain's
              conditional covariances would lose the structure appendix B inverts.
            * ``inverse_method``: only ``"eigen"`` (the default; the refresh uses generalized
              eigendecompositions).
            * ``async_inverse``, ``stats_batch_size``: not supported (must be False / None).

            Another value of a fixed option is a ``ValueError`` (see :attr:`FIXED_OPTIONS`).
    """

    #: The options the chain inverse fixes: their one supported value, and why.
    FIXED_OPTIONS: dict[str, tuple[object, str]] = {
        "damping_scheme": ("tikhonov", "factored Tikhonov damping of the diagonal factors, "
                           "Martens & Grosse 2015 section 6.3"),
        "inverse_method": ("eigen", "generalized eigendecompositions"),
        "async_inverse": (False, "synchronous refreshes"),
        "stats_batch_size": (None, "all rows"),
    }

    def __init__(self, model: nn.Module, **kwargs: Any) -> None:
        for name, (allowed, why) in self.FIXED_OPTIONS.items():
            value = kwargs.get(name, allowed)
            if value != allowed:
                raise ValueError(
                    f"structure='block_tridiagonal' supports {name}={allowed!r} only ({why}), "
                    f"got {value!r}"
                )
            kwargs[name] = allowed
        super().__init__(model, **kwargs)
        self.chain: list[KroneckerBlock] = list(self.blocks.values())
        check_chain(self.chain)
        first = self.chain[0]
        self.dtype, self.device = first.dtype, first.device
        kw = {"dtype": self.dtype, "device": self.device}
        pairs = list(itertools.pairwise(self.chain))
        self.cross_a = [torch.zeros(a.dim_a, b.dim_a, **kw) for a, b in pairs]
        self.cross_g = [torch.zeros(a.dim_g, b.dim_g, **kw) for a, b in pairs]
        self.cross_updates = torch.zeros((), dtype=torch.long, device=self.device)
        self.cross_skipped = torch.zeros((), dtype=torch.long, device=self.device)
        self.inverse: ChainInverse | None = None
        self.n_refresh_failures = 0

        self._chain_ids = itertools.count()
        self._chain_id: int | None = None
        self._chain_next = 0
        self._inputs: dict[tuple[int, int], tuple[Tensor, int]] = {}
        self._grads: dict[tuple[int, int], list[Tensor]] = {}
        self._order_error: str | None = None
        self._chain_hooks = [
            block.helper.module.register_forward_hook(self._make_chain_hook(k))
            for k, block in enumerate(self.chain)
        ]

    def remove_hooks(self) -> None:
        """Detach every hook from the model (the preconditioner stops recording)."""
        super().remove_hooks()
        for h in self._chain_hooks:
            h.remove()
        self._chain_hooks.clear()

    # ------------------------------------------------------------------ statistics
    def _make_chain_hook(self, k: int):
        def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            if not (torch.is_grad_enabled() and self.stats_due and output.requires_grad):
                return
            cid, error = self._chain_position(k)
            x = inputs[0].detach()
            output.register_hook(lambda grad: self._on_chain_grad(k, cid, error, x, grad))

        return hook

    def _chain_position(self, k: int) -> tuple[int, str | None]:
        """Which forward pass of the chain this call of layer ``k`` belongs to, or why it
        belongs to none (a layer out of order: used twice, skipped, or not a chain)."""
        if k == 0:
            self._chain_id, self._chain_next = next(self._chain_ids), 1
            return self._chain_id, None
        if self._chain_id is not None and k == self._chain_next:
            self._chain_next += 1
            return self._chain_id, None
        names = [b.name for b in self.chain]
        expected = names[self._chain_next] if 0 < self._chain_next < len(names) else names[0]
        self._chain_id = None
        return -1, (
            f"block-tridiagonal K-FAC: layer '{names[k]}' ran out of chain order (expected "
            f"'{expected}'); the layers must run once each per forward pass, in the order "
            f"{names}, each feeding the next; {_USE_DIAGONAL}"
        )

    def _on_chain_grad(self, k: int, cid: int, error: str | None, x: Tensor, grad: Tensor) -> None:
        if not self._recording.active:
            return
        if error is not None:
            self._order_error = self._order_error or error
            return
        block = self.chain[k]
        helper = block.helper
        key = (cid, k)
        if key not in self._inputs:  # A once per forward call, as for the diagonal factors
            rows, batch = helper.input_rows(x)
            self._inputs[key] = (with_ones(rows.to(self.dtype), helper.has_bias), batch)
        scale = float(helper.batch_size(x)) if self.loss_reduction == "mean" else 1.0
        self._grads.setdefault(key, []).append(helper.grad_rows(grad).to(self.dtype) * scale)

    @contextmanager
    def record_stats(self) -> Iterator[None]:
        """As :meth:`KFACPreconditioner.record_stats`, also recording the cross-layer factors.

        Raises:
            ValueError: after the context, if the recorded passes show that the layers do not
                form a chain (a layer ran out of order or missed a backward pass).
        """
        completed = False
        try:
            with super().record_stats():
                yield
            completed = True
        finally:
            inputs, grads, error = self._inputs, self._grads, self._order_error
            self._inputs, self._grads, self._order_error = {}, {}, None
        if completed:
            self._commit_cross(inputs, grads, error)

    def _commit_cross(
        self,
        inputs: dict[tuple[int, int], tuple[Tensor, int]],
        grads: dict[tuple[int, int], list[Tensor]],
        error: str | None,
    ) -> None:
        """``A_{i-1,i}`` and ``G_{i,i+1}`` of this context, scaled as the diagonal factors
        (:mod:`acktr.blocks`: A sums rows over the batch size, G averages rows), then the EMA."""
        if error is not None:
            raise ValueError(error)
        n = len(self.chain)
        names = [b.name for b in self.chain]
        kw = {"dtype": self.dtype, "device": self.device}
        sum_a = [torch.zeros_like(t) for t in self.cross_a]
        sum_g = [torch.zeros_like(t) for t in self.cross_g]
        batch, g_rows = 0, torch.zeros(max(n - 1, 0), **kw)
        for cid in sorted({c for c, _ in grads}):
            passes = [len(grads.get((cid, k), [])) for k in range(n)]
            if len(set(passes)) != 1:
                raise ValueError(
                    "block-tridiagonal K-FAC: in one forward pass the layers received different "
                    f"numbers of backward passes {dict(zip(names, passes, strict=True))}; every "
                    f"layer of the chain must reach the Fisher loss; {_USE_DIAGONAL}"
                )
            rows = [inputs[(cid, k)][0].shape[0] for k in range(n)]
            if len(set(rows)) != 1:
                raise ValueError(
                    "block-tridiagonal K-FAC: the layers' rows do not line up "
                    f"{dict(zip(names, rows, strict=True))}; {_USE_DIAGONAL}"
                )
            batch = max(batch, inputs[(cid, 0)][1])
            for k in range(n - 1):
                sum_a[k] += inputs[(cid, k)][0].T @ inputs[(cid, k + 1)][0]
                for gk, gn in zip(grads[(cid, k)], grads[(cid, k + 1)], strict=True):
                    sum_g[k] += gk.T @ gn
                    g_rows[k] += gk.shape[0]
        if batch == 0 or n == 1:
            return
        fresh_g = [s / r for s, r in zip(sum_g, g_rows, strict=True)]
        new = reduce_statistics([s / batch for s in sum_a] + fresh_g, self.process_group)
        ok = all_finite(*new)
        weight = ema_weight(self.stat_decay, self.cross_updates, self.dtype)
        for avg, fresh in zip(self.cross_a + self.cross_g, new, strict=True):
            ema_update(avg, fresh, weight, ok)
        self.cross_updates.add_(ok)
        self.cross_skipped.add_(~ok)

    # ------------------------------------------------------------------ preconditioning
    def refresh_due(self) -> bool:
        """True when this ``step()`` refactors ``F^^-1``: every ``inverse_every`` steps, before
        the first factorization, and whenever the damping changed since the last one."""
        if self.inverse is None or self.steps % self.inverse_every == 0:
            return True
        return check_positive("damping", self.damping, self.steps) != self.inverse.damping

    def refresh(self) -> None:
        """Factor ``F^^-1`` (:func:`chain_inverse`) from the current factors and damping; on a
        numerical failure keep the previous factorization and warn."""
        damping = check_positive("damping", self.damping, self.steps)
        try:
            inv = chain_inverse(
                [b.A for b in self.chain], [b.G for b in self.chain], self.cross_a, self.cross_g,
                damping,
            )
        except (CurvatureLinAlgError, RuntimeError) as e:
            self.n_refresh_failures += 1
            warnings.warn(
                f"block-tridiagonal K-FAC: refreshing the chain inverse failed ({e}); keeping "
                "the previous one",
                RuntimeWarning,
                stacklevel=3,
            )
        else:
            self.inverse = inv
        self._report_skipped_stats()

    def precondition_matrices(self, grads: list[Tensor]) -> list[Tensor]:
        """``F^^-1`` applied to the chain's gradient matrices ``[dW | db]`` (one per layer,
        optional leading batch dimensions), in the factors' dtype. Needs a refresh first."""
        if self.inverse is None:
            raise RuntimeError("no chain inverse yet: record statistics and call refresh() first")
        return apply_chain_inverse(self.inverse, [g.to(self.dtype) for g in grads])

    def dense_inverse(self) -> Tensor:
        """``F^^-1`` (damped) as a dense matrix on the chain's coordinates, for tests and
        studies: the layers' ``[dW | db].flatten()`` concatenated in chain order."""
        if self.inverse is None:
            raise RuntimeError("no chain inverse yet: record statistics and call refresh() first")
        return chain_inverse_to_dense(self.inverse, [(b.dim_g, b.dim_a) for b in self.chain])

    def _precondition_blocks(self, damping: float) -> list[Tensor]:
        """The chain's gradients jointly with ``F^^-1`` (``damping`` is baked into the chain
        inverse); :meth:`step` (the block-diagonal preconditioner's) does the fallback
        parameters as usual and returns ``sum_p <Delta_p, grad_p>`` for the ACKTR trust region."""
        terms: list[Tensor] = []
        grads = [b.helper.grad_matrix() for b in self.chain]
        if any(g is not None for g in grads):
            mats = [
                torch.zeros(b.dim_g, b.dim_a, dtype=self.dtype, device=self.device)
                if g is None else g.to(self.dtype)
                for g, b in zip(grads, self.chain, strict=True)
            ]
            deltas = mats if self.inverse is None else apply_chain_inverse(self.inverse, mats)
            for block, grad, delta in zip(self.chain, grads, deltas, strict=True):
                if grad is None:
                    continue
                delta = delta.to(grad.dtype)
                terms.append((delta * grad).sum())
                block.helper.set_grad_matrix(delta)
        return terms

    # ------------------------------------------------------------------ state
    def decompositions_recomputable(self) -> bool:
        """Always False: the chain factorization is stored, never recomputed on load."""
        return False

    def state_dict(self, compact: bool = False, drop_stale: bool = False) -> dict[str, object]:
        """The block-diagonal state plus the cross factors and the chain factorization.

        Always the full state: ``compact`` and ``drop_stale`` (see
        :meth:`KFACPreconditioner.state_dict`) are accepted and ignored."""
        state = super().state_dict()
        state["tridiagonal"] = {
            "cross_a": list(self.cross_a),
            "cross_g": list(self.cross_g),
            "n_updates": self.cross_updates,
            "n_skipped": self.cross_skipped,
            "n_refresh_failures": self.n_refresh_failures,
            "inverse": None if self.inverse is None else self.inverse.tensors(),
        }
        return state

    def load_state_dict(self, state: dict[str, object]) -> None:
        tri = state.get("tridiagonal")
        if not isinstance(tri, dict):
            raise ValueError(
                "K-FAC state has no block-tridiagonal factors (was it saved with "
                "structure='block_diagonal'?)"
            )
        for key, mine in (("cross_a", self.cross_a), ("cross_g", self.cross_g)):
            theirs = tri[key]
            got = [tuple(t.shape) for t in theirs]
            want = [tuple(t.shape) for t in mine]
            if got != want:
                raise ValueError(
                    f"block-tridiagonal K-FAC state: {key} has shapes {got}, expected {want} "
                    "(was the checkpoint made for a different model?)"
                )
        super().load_state_dict(state)
        kw = {"dtype": self.dtype, "device": self.device}
        # Copies: the EMA updates these in place, and the state may belong to a live optimizer.
        self.cross_a = [t.to(**kw, copy=True) for t in tri["cross_a"]]
        self.cross_g = [t.to(**kw, copy=True) for t in tri["cross_g"]]
        self.cross_updates = tri["n_updates"].to(self.device, copy=True)
        self.cross_skipped = tri["n_skipped"].to(self.device, copy=True)
        self.n_refresh_failures = int(tri["n_refresh_failures"])
        inv = tri["inverse"]
        self.inverse = None if inv is None else ChainInverse(**inv).to(**kw)


def check_chain(blocks: list[KroneckerBlock]) -> None:
    """Raise a ``ValueError`` naming the layer unless ``blocks`` are ``nn.Linear`` layers of
    one dtype where each one's outputs are the next one's inputs."""
    for block in blocks:
        module = block.helper.module
        if not isinstance(module, nn.Linear):
            raise ValueError(
                f"block-tridiagonal K-FAC supports chains of nn.Linear layers only; layer "
                f"'{block.name}' is {type(module).__name__}: {_USE_DIAGONAL}"
            )
        if block.dtype != blocks[0].dtype or block.device != blocks[0].device:
            raise ValueError(
                f"block-tridiagonal K-FAC needs all layers on one dtype and device; layer "
                f"'{block.name}' differs from '{blocks[0].name}'"
            )
    for a, b in itertools.pairwise(blocks):
        if b.helper.in_features != a.helper.out_features:
            raise ValueError(
                f"block-tridiagonal K-FAC: layers '{a.name}' ({a.helper.out_features} outputs) "
                f"and '{b.name}' ({b.helper.in_features} inputs) do not form a chain (each "
                f"layer must feed the next); {_USE_DIAGONAL}"
            )
