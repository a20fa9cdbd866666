"""What a layer is: how to read its inputs and output gradients as rows, and its gradient matrix.

A layer computes ``s = W a_bar`` at every *position* (one position for a dense layer on a vector,
every output pixel for a convolution, every token for a dense layer on a sequence), where
``a_bar`` is the input (an unfolded patch for a convolution) with a constant 1 appended when the
layer has a bias (the homogeneous coordinate of Martens & Grosse 2015, section 3). A helper
exposes exactly that and nothing about curvature:

* ``input_rows(x)``: the layer input as a ``(batch * positions, in_features)`` matrix (without
  the homogeneous coordinate: the curvature block appends it implicitly).
* ``grad_rows(grad_output)``: the gradient of the loss w.r.t. ``s``, ``(batch * positions, out)``.
* ``grad_matrix()`` / ``set_grad_matrix()``: the parameter gradient as one ``(out, in [+1])``
  matrix ``[dW | db]``, and writing a preconditioned one back into ``.grad``.

The registry maps module types to helpers (``isinstance``, most derived type wins), so a user can
teach K-FAC a new layer with :func:`register_layer`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@contextmanager
def stashed_grads(params: Sequence[Tensor]) -> Iterator[None]:
    """Set the ``.grad`` of ``params`` to None for the duration of the context, then put the
    previous gradients back (also on an exception): backward passes run inside (a Fisher loss's,
    for curvature statistics) leave ``.grad`` as it was."""
    stash = [p.grad for p in params]
    for p in params:
        p.grad = None
    try:
        yield
    finally:
        for p, g in zip(params, stash, strict=True):
            p.grad = g


class StatsRecording:
    """The state of an optimizer's ``record_stats()`` context: ``active`` while the backward
    passes run inside it (hooks record only then)."""

    def __init__(self) -> None:
        self.active = False

    @contextmanager
    def context(self, params: Sequence[Tensor], commit: Callable[[], None]) -> Iterator[None]:
        """Refuse nesting; be ``active`` with the ``.grad`` of ``params`` stashed
        (:func:`stashed_grads`); then ``commit()`` the statistics, also on an exception, so
        nothing stays pending."""
        if self.active:
            raise RuntimeError("record_stats() contexts cannot be nested")
        try:
            with stashed_grads(params):
                self.active = True
                try:
                    yield
                finally:
                    self.active = False
        finally:
            commit()


class LayerHelper(ABC):
    """Reads one module's activations and gradients in the Kronecker-factored layout."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module

    @property
    def has_bias(self) -> bool:
        return getattr(self.module, "bias", None) is not None

    @property
    def weight(self) -> Tensor:
        return self.module.weight  # type: ignore[return-value]

    def params(self) -> list[nn.Parameter]:
        """The parameters this helper's block preconditions (weight, then bias)."""
        ps = [self.module.weight]
        if self.has_bias:
            ps.append(self.module.bias)
        return ps  # type: ignore[return-value]

    @property
    def out_features(self) -> int:
        return self.weight.shape[0]

    @property
    def in_features(self) -> int:
        """Columns of the weight matrix, without the homogeneous coordinate."""
        return self.weight[0].numel()

    def batch_size(self, x: Tensor) -> int:
        """Examples in the layer input ``x`` (its first dimension; 1 if unbatched)."""
        return x.shape[0] if x.dim() > self.unbatched_dims else 1

    unbatched_dims = 1
    """Dimensions of one unbatched input (1 for a vector, 3 for a (C, H, W) image)."""

    @abstractmethod
    def input_rows(self, x: Tensor) -> tuple[Tensor, int]:
        """Return ``(rows, batch_size)``: the input as ``(batch * positions, in_features)``."""

    @abstractmethod
    def grad_rows(self, grad_output: Tensor) -> Tensor:
        """Return the output gradient as ``(batch * positions, out_features)``."""

    def grad_matrix(self) -> Tensor | None:
        """The gradient ``[dW | db]`` as ``(out, in [+1])``; None if the layer got no gradient."""
        w = self.weight.grad
        if w is None:
            return None
        w = w.reshape(self.out_features, -1)
        if not self.has_bias:
            return w
        b = self.module.bias.grad  # type: ignore[union-attr]
        b = torch.zeros_like(w[:, 0]) if b is None else b
        return torch.cat([w, b.unsqueeze(1)], dim=1)

    def set_grad_matrix(self, matrix: Tensor) -> None:
        """Write ``[dW | db]`` back into the parameters' ``.grad`` (in place)."""
        w = self.weight
        n_in = self.in_features
        w.grad.copy_(matrix[:, :n_in].reshape(w.shape))  # type: ignore[union-attr]
        if self.has_bias:
            bias = self.module.bias
            if bias.grad is None:  # type: ignore[union-attr]
                bias.grad = torch.zeros_like(bias)  # type: ignore[union-attr]
            bias.grad.copy_(matrix[:, n_in])  # type: ignore[union-attr]


class LinearHelper(LayerHelper):
    """``nn.Linear``: every leading index but the first is a position (e.g. tokens of a sequence).

    The first dimension is the batch: a ``(B, T, in)`` input is ``B`` examples with ``T``
    positions each, exactly like a 1x1 convolution (Grosse & Martens 2016).
    """

    def input_rows(self, x: Tensor) -> tuple[Tensor, int]:
        batch = x.shape[0] if x.dim() > 1 else 1
        return x.reshape(-1, x.shape[-1]), batch

    def grad_rows(self, grad_output: Tensor) -> Tensor:
        return grad_output.reshape(-1, grad_output.shape[-1])


class Conv2dHelper(LayerHelper):
    """``nn.Conv2d`` (KFC, Grosse & Martens 2016): one row per output position, unfolded patches.

    Any stride, padding (including ``'same'`` and non-zero padding modes) and dilation; only
    ``groups=1`` (a grouped convolution has one Kronecker block per group, not supported yet).
    """

    unbatched_dims = 3

    def __init__(self, module: nn.Module) -> None:
        if module.groups != 1:  # type: ignore[union-attr]
            raise ValueError(
                f"K-FAC supports Conv2d with groups=1 only; got groups={module.groups} in "
                f"{module}. "
                "Exclude this layer (exclude=[...]) to give its parameters the fallback instead."
            )
        super().__init__(module)

    def input_rows(self, x: Tensor) -> tuple[Tensor, int]:
        conv: nn.Conv2d = self.module  # type: ignore[assignment]
        if x.dim() == 3:  # unbatched (C, H, W)
            x = x.unsqueeze(0)
        # Pad exactly as Conv2d._conv_forward does.
        if isinstance(conv.padding, str) or conv.padding_mode != "zeros":
            mode = "constant" if conv.padding_mode == "zeros" else conv.padding_mode
            x = F.pad(x, conv._reversed_padding_repeated_twice, mode=mode)
        elif any(conv.padding):
            ph, pw = conv.padding
            x = F.pad(x, (pw, pw, ph, ph))
        return _patch_rows(x, conv.kernel_size, conv.stride, conv.dilation), x.shape[0]

    def grad_rows(self, grad_output: Tensor) -> Tensor:
        if grad_output.dim() == 3:
            grad_output = grad_output.unsqueeze(0)
        return grad_output.permute(0, 2, 3, 1).reshape(-1, grad_output.shape[1])


def _patch_rows(
    x: Tensor, kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int]
) -> Tensor:
    """Unfolded patches of a padded input as ``(B * Ho * Wo, C * kh * kw)`` rows.

    A strided view and one copy: several times faster than ``F.unfold`` (im2col) on CPU. The
    column order (C, kh, kw) matches ``weight.view(out, -1)``.
    """
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    view = x.unfold(2, dh * (kh - 1) + 1, sh).unfold(3, dw * (kw - 1) + 1, sw)
    if dh > 1 or dw > 1:
        view = view[..., ::dh, ::dw]
    b, c, ho, wo = view.shape[:4]
    return view.permute(0, 2, 3, 1, 4, 5).reshape(b * ho * wo, c * kh * kw)


class BroadcastBias(nn.Module):
    """A trainable vector shared by every example: ``forward(x)`` is ``bias`` broadcast to
    ``(*x.shape[:-1], size)``; ``x`` only gives the shape (and may need no gradient).

    Use it for state-independent parameters of an output distribution, such as a Gaussian
    policy's log standard deviation. To K-FAC it is a layer with a bias and no weight, so its
    block is exact: ``A = [1]`` and ``G = E[g g^T]`` over per-example gradients ``g`` (the
    Fisher block of the vector), estimated from every example in the batch. A bare
    ``nn.Parameter`` would instead get the diagonal fallback, whose estimate
    ``batch * mean_grad**2`` is a single chi-squared sample per coordinate and step.

    Args:
        size: Length of the vector.
        init: Initial value of every entry, default 0.0.
    """

    def __init__(self, size: int, init: float = 0.0) -> None:
        super().__init__()
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be a positive integer, got {size!r}")
        self.bias = nn.Parameter(torch.full((size,), float(init)))

    def forward(self, x: Tensor) -> Tensor:
        return self.bias.expand(*x.shape[:-1], self.bias.shape[0])

    def extra_repr(self) -> str:
        return f"size={self.bias.shape[0]}"


class BroadcastBiasHelper(LayerHelper):
    """:class:`BroadcastBias`: a bias with no weight (``in_features = 0``); like ``nn.Linear``,
    every leading index but the first is a position."""

    @property
    def has_bias(self) -> bool:
        return True

    @property
    def weight(self) -> Tensor:
        return self.module.bias  # type: ignore[return-value]  # dtype and device of the block

    def params(self) -> list[nn.Parameter]:
        return [self.module.bias]  # type: ignore[list-item]

    @property
    def out_features(self) -> int:
        return self.module.bias.shape[0]  # type: ignore[union-attr]

    @property
    def in_features(self) -> int:
        return 0

    def input_rows(self, x: Tensor) -> tuple[Tensor, int]:
        batch = x.shape[0] if x.dim() > 1 else 1
        return x.new_zeros(x.shape[:-1].numel(), 0), batch

    def grad_rows(self, grad_output: Tensor) -> Tensor:
        return grad_output.reshape(-1, grad_output.shape[-1])

    def grad_matrix(self) -> Tensor | None:
        g = self.module.bias.grad  # type: ignore[union-attr]
        return None if g is None else g.unsqueeze(1)

    def set_grad_matrix(self, matrix: Tensor) -> None:
        self.module.bias.grad.copy_(matrix[:, 0])  # type: ignore[union-attr]


_REGISTRY: dict[type[nn.Module], Callable[[nn.Module], LayerHelper]] = {
    nn.Linear: LinearHelper,
    nn.Conv2d: Conv2dHelper,
    BroadcastBias: BroadcastBiasHelper,
}


def register_layer(
    module_type: type[nn.Module], helper: Callable[[nn.Module], LayerHelper]
) -> None:
    """Teach K-FAC a layer type: ``helper(module)`` builds its :class:`LayerHelper`."""
    if not (isinstance(module_type, type) and issubclass(module_type, nn.Module)):
        raise TypeError(f"module_type must be an nn.Module subclass, got {module_type!r}")
    _REGISTRY[module_type] = helper


def registered_types() -> tuple[type[nn.Module], ...]:
    """The module types K-FAC has a Kronecker-factored block for."""
    return tuple(_REGISTRY)


def helper_for(module: nn.Module) -> LayerHelper | None:
    """The helper for ``module`` (most derived registered type wins), or None if unsupported."""
    for cls in type(module).__mro__:
        if cls in _REGISTRY:
            return _REGISTRY[cls](module)
    return None
