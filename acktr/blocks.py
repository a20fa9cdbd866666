"""Curvature blocks: how a layer's Fisher block is estimated, inverted and applied.

:class:`KroneckerBlock` holds the two factors of Martens & Grosse (2015), ``F_layer ~ A (x) G``
with ``A = E[a_bar a_bar^T]`` and ``G = E[g g^T]``, as exponential moving averages, and
preconditions a gradient matrix ``V = [dW | db]`` (shape ``(out, in [+1])``) as ``G^-1 V A^-1``.

Conventions, stated once (see also :mod:`acktr.preconditioner`):

* Rows: a layer contributes ``batch * positions`` rows (positions: output pixels of a
  convolution, tokens of a sequence). ``A = (1/batch) sum_rows a_bar a_bar^T`` sums over
  positions and ``G = mean_rows g_hat g_hat^T`` averages over them, the scaling of Grosse &
  Martens (2016) for KFC (``Omega`` and ``Gamma``), so a 1x1 convolution equals a dense layer
  applied at every position.
* ``g_hat`` is the per-example output gradient: for a loss that is the *batch mean* of
  per-example losses the autograd gradient is ``g_hat / batch``, and the preconditioner passes
  ``grad_scale = batch``. The Fisher estimate is then the per-example average, matching the
  gradient of the mean loss.
* Several backward passes inside one statistics context are Monte Carlo samples of the same
  Fisher: their ``G`` contributions are averaged, ``A`` is counted once per forward call.
* Dense matrices (:meth:`KroneckerBlock.to_dense`) act on ``V.flatten()`` (row-major), i.e. they
  are ``kron(G, A)``.

Damping (``damping = lambda``), Martens & Grosse (2015):

* ``"tikhonov"``: factored Tikhonov, section 6.3: ``(A + pi sqrt(lambda) I) (x) (G + sqrt(lambda)
  / pi I)`` with ``pi = sqrt((tr A / dim A) / (tr G / dim G))``.
* ``"eigen"``: eigenvalue-product damping, as in the ACKTR code: in the eigenbases of A and G
  divide by ``d_G d_A^T + lambda``, i.e. ``(A (x) G + lambda I)^-1`` exactly.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from acktr.layers import LayerHelper
from acktr.linalg import CurvatureLinAlgError, damped_inverse, safe_eigh

DampingScheme = Literal["eigen", "tikhonov"]
InverseMethod = Literal["eigen", "inverse"]


def factor_dtype(param_dtype: torch.dtype) -> torch.dtype:
    """Factors are kept in float64 for float64 parameters, else in float32."""
    return torch.float64 if param_dtype == torch.float64 else torch.float32


def ema_weight(decay: float, n_updates: Tensor, dtype: torch.dtype) -> Tensor:
    """The weight of new statistics: 1 for the first valid update (it initialises), else
    ``1 - decay``. A device tensor, so no host sync."""
    return torch.where(n_updates > 0, 1.0 - decay, 1.0).to(dtype)


def ema_update(avg: Tensor, new: Tensor, weight: Tensor, ok: Tensor) -> None:
    """In place: ``avg <- avg + weight * (new - avg)``, skipped (``avg`` kept) where ``ok`` is
    False, without a host sync."""
    avg.lerp_(torch.where(ok, new, avg), weight)


def all_finite(*tensors: Tensor) -> Tensor:
    """A 0-dim bool tensor: no NaN/Inf in any of ``tensors`` (NaN and Inf survive the sums)."""
    total = tensors[0].sum()
    for t in tensors[1:]:
        total = total + t.sum()
    return torch.isfinite(total)


def tikhonov_pi(trace_a: Tensor, dim_a: int, trace_g: Tensor, dim_g: int) -> Tensor:
    """Martens & Grosse (2015), eq. (6.3): ``pi = sqrt((tr A / dim A) / (tr G / dim G))``."""
    tiny = torch.finfo(trace_a.dtype).tiny
    ratio = (trace_a / dim_a).clamp_min(tiny) / (trace_g / dim_g).clamp_min(tiny)
    return ratio.sqrt()


@dataclass
class Decomposition:
    """A block's eigenbases (``eig = (d_A, Q_A, d_G, Q_G)``) or damped inverses
    (``inv = (A_inv, G_inv)``) and its pi, or the error that prevented them."""

    pi: Tensor
    eig: tuple[Tensor, Tensor, Tensor, Tensor] | None = None
    inv: tuple[Tensor, Tensor] | None = None
    error: str | None = None
    ready_event: torch.cuda.Event | None = None  # set by a side-stream (async CUDA) refresh

    def all_tensors(self) -> list[Tensor]:
        return [self.pi, *(self.eig or ()), *(self.inv or ())]

    def tensors(self) -> dict[str, object]:
        """Plain-data form for state dicts."""
        return {"pi": self.pi, "eig": list(self.eig) if self.eig else None,
                "inv": list(self.inv) if self.inv else None, "error": self.error}

    @classmethod
    def from_tensors(cls, state: dict) -> Decomposition:
        eig, inv = state["eig"], state["inv"]
        return cls(state["pi"], tuple(eig) if eig else None, tuple(inv) if inv else None,
                   state["error"])


def decompose_factors(a: Tensor, g: Tensor, damping: float, method: InverseMethod) -> Decomposition:
    """Eigendecompositions of both factors (``method="eigen"``), or their factored-Tikhonov damped
    inverses (``"inverse"``), with pi (Martens & Grosse 2015, eq. 6.3). Never raises on a
    numerical failure: the error is returned for :meth:`KroneckerBlock.install` to report."""
    try:
        if method == "eigen":
            d_a, q_a = safe_eigh(a)
            d_g, q_g = safe_eigh(g)
            pi = tikhonov_pi(d_a.sum(), a.shape[0], d_g.sum(), g.shape[0])
            return Decomposition(pi, eig=(d_a, q_a, d_g, q_g))
        pi = tikhonov_pi(a.trace(), a.shape[0], g.trace(), g.shape[0])
        root, p = math.sqrt(damping), float(pi)
        return Decomposition(pi, inv=(damped_inverse(a, p * root), damped_inverse(g, root / p)))
    except CurvatureLinAlgError as e:
        return Decomposition(torch.ones((), dtype=a.dtype, device=a.device), error=str(e))


class KroneckerBlock:
    """The Kronecker-factored Fisher block of one dense or convolutional layer.

    Args:
        name: the module's name in the model (used in messages and state dicts).
        helper: reads the layer's rows and gradient matrix.
    """

    def __init__(self, name: str, helper: LayerHelper) -> None:
        self.name = name
        self.helper = helper
        w = helper.weight
        self.dtype = factor_dtype(w.dtype)
        self.device = w.device
        self.dim_a = helper.in_features + int(helper.has_bias)
        self.dim_g = helper.out_features
        kw = {"dtype": self.dtype, "device": self.device}
        self.A = torch.zeros(self.dim_a, self.dim_a, **kw)
        self.G = torch.zeros(self.dim_g, self.dim_g, **kw)
        self.n_updates = torch.zeros((), dtype=torch.long, device=self.device)
        self.n_skipped = torch.zeros((), dtype=torch.long, device=self.device)
        self.n_refresh_failures = 0
        self.recorded = False  # host flag: has any statistics context reached this layer?
        # Eigenbases (eigen method) or damped inverses (inverse method); None until refreshed.
        self.eig: tuple[Tensor, Tensor, Tensor, Tensor] | None = None  # dA, QA, dG, QG
        self.inv: tuple[Tensor, Tensor] | None = None  # A_inv, G_inv
        self.pi = torch.ones((), **kw)
        # True while ``eig`` is the eigendecomposition of the current A and G (set by a
        # synchronous refresh, cleared by the next factor update): then a compact state dict
        # stores the factors only and the eigenbases are recomputed on load.
        self.eig_from_factors = False
        self._denominator: Tensor | None = None
        self._denominator_key: tuple | None = None
        self._reset_pending()

    # ----------------------------------------------------------------- statistics
    def _reset_pending(self) -> None:
        self._a_sum: Tensor | None = None
        self._a_batch = 0
        self._g_sum: Tensor | None = None
        self._g_rows = 0

    def accumulate_inputs(self, rows: Tensor, batch_size: int) -> None:
        """Add one forward call's input rows ``(n, in)`` to the pending ``A`` statistics."""
        rows = rows.detach().to(self.dtype)
        if self.helper.has_bias:
            # [a 1]^T [a 1] without materialising the augmented matrix.
            n = rows.shape[0]
            col = rows.sum(0)
            a = torch.empty(self.dim_a, self.dim_a, dtype=self.dtype, device=rows.device)
            a[:-1, :-1] = rows.T @ rows
            a[:-1, -1] = col
            a[-1, :-1] = col
            a[-1, -1] = n
        else:
            a = rows.T @ rows
        self._a_sum = a if self._a_sum is None else self._a_sum + a
        self._a_batch = max(self._a_batch, batch_size)

    def accumulate_grads(self, rows: Tensor, grad_scale: float) -> None:
        """Add one backward pass's output-gradient rows ``(n, out)`` to the pending ``G``."""
        rows = rows.detach().to(self.dtype) * grad_scale
        g = rows.T @ rows
        self._g_sum = g if self._g_sum is None else self._g_sum + g
        self._g_rows += rows.shape[0]

    def pending_stats(self) -> tuple[Tensor, Tensor] | None:
        """This context's ``(A_new, G_new)``, or None if the layer saw no complete pass."""
        if self._a_sum is None or self._g_sum is None:
            self._reset_pending()
            return None
        a_new = self._a_sum / self._a_batch
        g_new = self._g_sum / self._g_rows
        self._reset_pending()
        return a_new, g_new

    def update_factors(self, a_new: Tensor, g_new: Tensor, decay: float) -> None:
        """EMA update of both factors; non-finite statistics are skipped (counted, no sync).

        The new statistics are symmetrized first (a no-op on the exactly symmetric products
        most BLAS return, a round-off fix on the others), so the factors stay symmetric bit for
        bit and a compact state dict stores one triangle of each."""
        a_new, g_new = _symmetrized(a_new), _symmetrized(g_new)
        ok = all_finite(a_new, g_new)
        weight = ema_weight(decay, self.n_updates, self.dtype)
        ema_update(self.A, a_new, weight, ok)
        ema_update(self.G, g_new, weight, ok)
        self.n_updates.add_(ok)
        self.n_skipped.add_(~ok)
        self.recorded = True
        self.eig_from_factors = False

    # ----------------------------------------------------------------- inversion
    @property
    def ready(self) -> bool:
        return self.eig is not None or self.inv is not None

    def decompose(self, damping: float, method: InverseMethod) -> Decomposition | None:
        """Eigendecompose (or invert) the current factors; None before any valid statistics.

        Pure given its inputs, so it may run in a background thread on cloned factors
        (:func:`decompose_factors`); :meth:`install` makes the result current.
        """
        if int(self.n_updates) == 0:
            return None
        return decompose_factors(self.A, self.G, damping, method)

    def install(self, result: Decomposition | None) -> bool:
        """Make a decomposition current; on a failed one keep the previous and warn."""
        if result is None:
            return False
        if result.error is not None:
            self.n_refresh_failures += 1
            warnings.warn(
                f"K-FAC: refreshing the curvature of layer '{self.name}' failed "
                f"({result.error}); keeping its previous eigenbasis/inverse.",
                RuntimeWarning,
                stacklevel=3,
            )
            return False
        kw = {"dtype": self.dtype, "device": self.device}
        self.pi = result.pi.to(**kw)
        self._denominator_key = None
        self.eig = tuple(t.to(**kw) for t in result.eig) if result.eig else None  # type: ignore
        self.inv = tuple(t.to(**kw) for t in result.inv) if result.inv else None  # type: ignore
        return True

    def refresh(self, damping: float, scheme: DampingScheme, method: InverseMethod) -> bool:
        """Recompute the eigenbases (or damped inverses) from the current factors now.

        On failure the previous ones are kept and a warning is issued. Returns success.
        """
        ok = self.install(self.decompose(damping, method))
        self.eig_from_factors = ok and self.eig is not None
        return ok

    def eigen_denominator(self, damping: float, scheme: DampingScheme) -> Tensor:
        """The damped eigenvalues of the block, as an ``(out, in [+1])`` matrix.

        Cached until the eigenbasis (:meth:`install`, :meth:`load_state_dict`) or the damping
        changes: two kernels saved per step."""
        key = (damping, scheme)
        if self._denominator_key == key:
            return self._denominator  # type: ignore[return-value]
        d_a, _, d_g, _ = self.eig  # type: ignore[misc]
        if scheme == "eigen":
            den = torch.outer(d_g, d_a) + damping
        else:
            root = math.sqrt(damping)
            den = torch.outer(d_g + root / self.pi, d_a + self.pi * root)
        self._denominator, self._denominator_key = den, key
        return den

    def precondition(self, grad: Tensor, damping: float, scheme: DampingScheme) -> Tensor:
        """Return the damped natural gradient ``(F_block + damping)^-1 grad`` as a matrix."""
        g = grad.to(self.dtype)
        if self.eig is not None:
            _, q_a, _, q_g = self.eig
            v = q_g.T @ g @ q_a
            v = v / self.eigen_denominator(damping, scheme)
            out = q_g @ v @ q_a.T
        elif self.inv is not None:
            a_inv, g_inv = self.inv
            out = g_inv @ g @ a_inv
        else:
            out = g
        return out.to(grad.dtype)

    # ----------------------------------------------------------------- tests and state
    def to_dense(self, damping: float | None = None, scheme: DampingScheme = "eigen") -> Tensor:
        """The block as a dense matrix acting on ``grad_matrix.flatten()``: ``kron(G, A)``.

        With ``damping``, the damped matrix whose inverse :meth:`precondition` applies.
        """
        if damping is None:
            return torch.kron(self.G, self.A)
        eye_a = torch.eye(self.dim_a, dtype=self.dtype, device=self.device)
        eye_g = torch.eye(self.dim_g, dtype=self.dtype, device=self.device)
        if scheme == "eigen":
            return torch.kron(self.G, self.A) + damping * torch.kron(eye_g, eye_a)
        pi = tikhonov_pi(self.A.trace(), self.dim_a, self.G.trace(), self.dim_g)
        root = math.sqrt(damping)
        return torch.kron(self.G + root / pi * eye_g, self.A + pi * root * eye_a)

    def state_dict(self, compact: bool = False, refresh_next: bool = False) -> dict[str, object]:
        """The block's state. ``compact``: symmetric factors as their lower triangle, and no
        eigenbases where they can be had again bit for bit: recomputed on load from the stored
        factors when they are those factors' eigendecomposition (only the eigenvalues are kept,
        to check the recomputation), dropped when ``refresh_next`` (the next step recomputes
        them anyway). Lossless either way; :meth:`load_state_dict` reads both forms."""
        state: dict[str, object] = {
            "A": pack_symmetric(self.A) if compact else self.A,
            "G": pack_symmetric(self.G) if compact else self.G,
            "n_updates": self.n_updates,
            "n_skipped": self.n_skipped,
            "n_refresh_failures": self.n_refresh_failures,
            "recorded": self.recorded,
            "pi": self.pi,
        }
        if self.eig is not None:
            if compact and self.eig_from_factors:
                state["eig"] = "recompute"
                state["eigenvalues"] = [self.eig[0], self.eig[2]]
            elif not (compact and refresh_next):
                state["eig"] = list(self.eig)
        if self.inv is not None:
            state["inv"] = list(self.inv)
        return state

    def load_state_dict(self, state: dict[str, object]) -> None:
        state = {**state, "A": unpack_symmetric(state["A"]), "G": unpack_symmetric(state["G"])}
        for key in ("A", "G"):
            t = state[key]
            expected = getattr(self, key).shape
            if not isinstance(t, Tensor) or t.shape != expected:
                got = getattr(t, "shape", type(t).__name__)
                raise ValueError(
                    f"K-FAC state for layer '{self.name}': {key} has shape {got}, expected "
                    f"{tuple(expected)} (was the checkpoint made for a different model?)"
                )
        kw = {"dtype": self.dtype, "device": self.device}
        self.A = state["A"].to(**kw)  # type: ignore[union-attr]
        self.G = state["G"].to(**kw)  # type: ignore[union-attr]
        self.n_updates = state["n_updates"].to(self.device)  # type: ignore[union-attr]
        self.n_skipped = state["n_skipped"].to(self.device)  # type: ignore[union-attr]
        self.n_refresh_failures = int(state["n_refresh_failures"])  # type: ignore[arg-type]
        self.recorded = bool(state["recorded"])
        self.pi = state["pi"].to(**kw)  # type: ignore[union-attr]
        eig, inv = state.get("eig"), state.get("inv")
        self._denominator_key = None
        self.eig_from_factors = eig == "recompute"
        if self.eig_from_factors:
            eig = self._recompute_eig(state["eigenvalues"])  # type: ignore[arg-type]
        self.eig = tuple(t.to(**kw) for t in eig) if eig is not None else None  # type: ignore
        self.inv = tuple(t.to(**kw) for t in inv) if inv is not None else None  # type: ignore

    def _recompute_eig(self, eigenvalues: list[Tensor]) -> tuple[Tensor, ...]:
        """The eigendecomposition a compact state dict left out, from the loaded factors; warns
        if its eigenvalues are not bit-identical to the stored ones (another BLAS/LAPACK, thread
        count or device: the run goes on equivalently, but not bit for bit)."""
        result = decompose_factors(self.A, self.G, 0.0, "eigen")
        if result.eig is None:
            raise ValueError(f"K-FAC state for layer '{self.name}': recomputing its "
                             f"eigenbases from the stored factors failed ({result.error})")
        d_a, _, d_g, _ = result.eig
        stored_a, stored_g = (t.to(d_a.device, d_a.dtype) for t in eigenvalues)
        if not (torch.equal(d_a, stored_a) and torch.equal(d_g, stored_g)):
            warnings.warn(
                f"K-FAC: the eigendecomposition of layer '{self.name}' recomputed on load is "
                "not bit-identical to the saved one (different LAPACK, thread count or device?); "
                "the resumed run is equivalent but will not match the uninterrupted one exactly",
                RuntimeWarning,
                stacklevel=4,
            )
        return result.eig


def _symmetrized(m: Tensor) -> Tensor:
    return 0.5 * (m + m.T)  # (x + y) == (y + x) in floating point: exactly symmetric


def pack_symmetric(m: Tensor) -> Tensor | dict[str, object]:
    """A square matrix equal to its transpose bit for bit as its lower triangle (half the
    bytes); any other tensor unchanged. :func:`unpack_symmetric` inverts it exactly."""
    if m.dim() != 2 or m.shape[0] != m.shape[1] or not torch.equal(m, m.T):
        return m
    rows, cols = torch.tril_indices(m.shape[0], m.shape[0], device=m.device)
    return {"symmetric_tril": m[rows, cols], "size": m.shape[0]}


def unpack_symmetric(packed: object) -> object:
    """The matrix :func:`pack_symmetric` packed (anything else is returned as it is)."""
    if not isinstance(packed, dict) or "symmetric_tril" not in packed:
        return packed
    tril, n = packed["symmetric_tril"], int(packed["size"])
    if not isinstance(tril, Tensor) or tril.shape != (n * (n + 1) // 2,):
        raise ValueError(f"a packed symmetric matrix of size {n} has {getattr(tril, 'shape', None)}"
                         f" values; expected ({n * (n + 1) // 2},)")
    rows, cols = torch.tril_indices(n, n, device=tril.device)
    m = torch.empty(n, n, dtype=tril.dtype, device=tril.device)
    m[rows, cols] = tril
    m[cols, rows] = tril
    return m


class DiagonalBlock:
    """Fallback for a parameter no Kronecker block claims: a diagonal Fisher estimate.

    With targets sampled from the model, per-example gradients have zero mean, so
    ``batch * mean_grad**2`` is an unbiased estimate of the diagonal Fisher ``E[g_i**2]``; it is
    kept as an EMA like the Kronecker factors and applied as ``grad / (F_diag + damping)``.
    """

    def __init__(self, name: str, param: Tensor) -> None:
        self.name = name
        self.param = param
        self.dtype = factor_dtype(param.dtype)
        self.device = param.device
        self.F = torch.zeros(param.shape, dtype=self.dtype, device=self.device)
        self.n_updates = torch.zeros((), dtype=torch.long, device=self.device)
        self.n_skipped = torch.zeros((), dtype=torch.long, device=self.device)
        self.recorded = False
        self._sum: Tensor | None = None
        self._passes = 0

    def accumulate_grad(self, grad: Tensor, grad_scale: float, batch_size: int) -> None:
        """Add one backward pass's gradient of the Fisher loss w.r.t. the parameter."""
        g = grad.detach().to(self.dtype) * grad_scale
        sq = g * g / max(batch_size, 1)
        self._sum = sq if self._sum is None else self._sum + sq
        self._passes += 1

    def pending_stats(self) -> Tensor | None:
        if self._sum is None:
            return None
        new = self._sum / self._passes
        self._sum, self._passes = None, 0
        return new

    def update_factors(self, new: Tensor, decay: float) -> None:
        ok = all_finite(new)
        ema_update(self.F, new, ema_weight(decay, self.n_updates, self.dtype), ok)
        self.n_updates.add_(ok)
        self.n_skipped.add_(~ok)
        self.recorded = True

    def precondition(self, grad: Tensor, damping: float) -> Tensor:
        return (grad.to(self.dtype) / (self.F + damping)).to(grad.dtype)

    def to_dense(self, damping: float | None = None) -> Tensor:
        d = self.F.flatten()
        return torch.diag(d if damping is None else d + damping)

    def state_dict(self) -> dict[str, object]:
        return {
            "F": self.F,
            "n_updates": self.n_updates,
            "n_skipped": self.n_skipped,
            "recorded": self.recorded,
        }

    def load_state_dict(self, state: dict[str, object]) -> None:
        f = state["F"]
        if not isinstance(f, Tensor) or f.shape != self.F.shape:
            raise ValueError(
                f"K-FAC state for parameter '{self.name}': F has shape "
                f"{getattr(f, 'shape', None)}, expected {tuple(self.F.shape)}"
            )
        self.F = f.to(dtype=self.dtype, device=self.device)
        self.n_updates = state["n_updates"].to(self.device)  # type: ignore[union-attr]
        self.n_skipped = state["n_skipped"].to(self.device)  # type: ignore[union-attr]
        self.recorded = bool(state["recorded"])
