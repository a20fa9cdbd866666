"""The diagonal Fisher of every trainable parameter, recorded from Fisher-loss backward passes.

For a layer the K-FAC core supports (:func:`acktr.layers.helper_for`: ``nn.Linear``,
``nn.Conv2d``, registered types) the estimate is exact per example: the per-example gradient of
``[W | b]`` is ``sum_t g_t a_bar_t^T`` over the layer's positions ``t`` (from the core's row
layout), and ``F_diag = mean_n (per-example gradient)^2``. Any other parameter gets the core's
unbiased ``B * mean_grad^2`` estimate (:class:`acktr.blocks.DiagonalBlock`), which is noisier
(one chi-square degree of freedom per backward pass instead of ``B``).

The EMA warms up as a running mean: the weight of the ``k``-th statistics (from 1) is
``max(1 - decay, 1 / k)``, so early estimates average all batches seen (like Adam's bias
correction) instead of trusting the first minibatch for ``1 / (1 - decay)`` steps.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from acktr.blocks import DiagonalBlock
from acktr.layers import LayerHelper, StatsRecording, helper_for


def warmup_decay(decay: float, n_updates: int) -> float:
    """The decay giving the ``(n_updates + 1)``-th statistics weight ``max(1 - decay, 1/(n+1))``."""
    return min(decay, n_updates / (n_updates + 1.0))


class DiagonalFisher:
    """Diagonal Fisher estimates (``blocks[name].F``) of a model's trainable parameters.

    Args:
        model: the network; hooks are registered on it (see :meth:`remove_hooks`).
    """

    def __init__(self, model: nn.Module) -> None:
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.blocks = {name: DiagonalBlock(name, p) for name, p in named}
        by_id = {id(p): b for b in self.blocks.values() for p in [b.param]}
        self._hooks = [model.register_forward_pre_hook(self._remember_batch)]
        covered: set[int] = set()
        for module in model.modules():
            helper = helper_for(module)
            if helper is None or not all(id(p) in by_id for p in helper.params()):
                continue
            blocks = [by_id[id(p)] for p in helper.params()]
            covered.update(id(p) for p in helper.params())
            self._hooks.append(module.register_forward_hook(self._layer_hook(helper, blocks)))
        for block in self.blocks.values():
            if id(block.param) not in covered:
                self._hooks.append(block.param.register_hook(self._param_hook(block)))
        self.exact = {b.name for b in self.blocks.values() if id(b.param) in covered}
        self._recording = StatsRecording()
        self._batch = 1
        self._pending: dict[str, list[Tensor]] = {}
        self._estimated: list[tuple[DiagonalBlock, Tensor]] = []

    # ------------------------------------------------------------------ hooks
    def _remember_batch(self, module: nn.Module, inputs: tuple) -> None:
        if inputs and isinstance(inputs[0], Tensor) and inputs[0].dim() > 0:
            self._batch = inputs[0].shape[0]

    def _layer_hook(self, helper: LayerHelper, blocks: list[DiagonalBlock]):
        def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            if torch.is_grad_enabled() and output.requires_grad:
                x = inputs[0].detach()
                output.register_hook(lambda g: self._on_layer_grad(helper, blocks, x, g))

        return hook

    def _on_layer_grad(
        self, helper: LayerHelper, blocks: list[DiagonalBlock], x: Tensor, grad: Tensor
    ) -> None:
        if not self._recording.active:
            return
        rows, batch = helper.input_rows(x)
        dtype = blocks[0].dtype
        a = rows.to(dtype).reshape(batch, -1, rows.shape[-1])
        if helper.has_bias:
            a = torch.cat([a, torch.ones_like(a[..., :1])], dim=-1)
        # Autograd gives g_n / B for a batch-mean loss; per-example gradients are B times that.
        g = helper.grad_rows(grad).to(dtype).reshape(batch, a.shape[1], -1) * batch
        sq = torch.einsum("bto,bti->boi", g, a).pow(2).mean(0)  # (out, in [+1])
        n_in = helper.in_features
        parts = [sq[:, :n_in].reshape(blocks[0].param.shape)]
        if helper.has_bias:
            parts.append(sq[:, n_in])
        for block, part in zip(blocks, parts, strict=True):
            self._pending.setdefault(block.name, []).append(part)

    def _param_hook(self, block: DiagonalBlock):
        def hook(grad: Tensor) -> None:
            if self._recording.active:
                self._estimated.append((block, grad.detach()))

        return hook

    # ------------------------------------------------------------------ recording
    @contextmanager
    def record(self, decay: float) -> Iterator[None]:
        """Backward passes of a batch-mean Fisher loss inside update every ``F`` (EMA with
        ``decay`` after the warm-up); several passes are averaged. ``.grad`` is left as it was."""
        params = [b.param for b in self.blocks.values()]
        with self._recording.context(params, lambda: self._commit(decay)):
            yield

    def _commit(self, decay: float) -> None:
        for block, grad in self._estimated:
            block.accumulate_grad(grad, float(self._batch), self._batch)  # B * mean_grad^2
        self._estimated.clear()
        for block in self.blocks.values():
            parts = self._pending.pop(block.name, None)
            new = torch.stack(parts).mean(0) if parts else block.pending_stats()
            if new is not None:
                block.update_factors(new, warmup_decay(decay, int(block.n_updates)))

    def remove_hooks(self) -> None:
        """Detach every hook from the model."""
        for h in self._hooks:
            h.remove()
        self._hooks.clear()
