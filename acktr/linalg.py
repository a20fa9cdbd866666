"""Robust symmetric eigendecompositions and damped inverses for Kronecker factors."""

from __future__ import annotations

import torch
from torch import Tensor


class CurvatureLinAlgError(RuntimeError):
    """An eigendecomposition or inverse failed even in float64 with jitter."""


def _symmetrize(m: Tensor) -> Tensor:
    return 0.5 * (m + m.transpose(-1, -2))


def _jitter(m: Tensor, rel: float) -> Tensor:
    scale = m.diagonal().abs().mean().clamp_min(torch.finfo(m.dtype).tiny)
    return m + (rel * scale) * torch.eye(m.shape[-1], dtype=m.dtype, device=m.device)


def _all_finite(*ts: Tensor) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in ts)


def safe_eigh(matrix: Tensor, jitter: float = 1e-6) -> tuple[Tensor, Tensor]:
    """Eigendecomposition of a symmetric PSD factor, in its own dtype with a float64 retry.

    Tries ``torch.linalg.eigh`` in the matrix's dtype; if that raises or returns non-finite
    values, retries in float64 after adding ``jitter * mean(diag)`` to the diagonal. Eigenvalues
    are clamped at 0 (a factor is PSD; negative values are round-off). This syncs with the host
    (it checks finiteness), which is why it runs only every ``inverse_every`` steps.

    Returns:
        ``(eigenvalues, eigenvectors)`` in the matrix's dtype.

    Raises:
        CurvatureLinAlgError: if the float64 retry fails too (e.g. the matrix holds NaN).
    """
    m = _symmetrize(matrix)
    try:
        evals, evecs = torch.linalg.eigh(m)
        if _all_finite(evals, evecs):
            return evals.clamp_min(0.0), evecs
    except RuntimeError:
        pass
    try:
        evals, evecs = torch.linalg.eigh(_jitter(m.double(), jitter))
    except RuntimeError as e:
        raise CurvatureLinAlgError(f"eigendecomposition failed in float64 too: {e}") from e
    if not _all_finite(evals, evecs):
        raise CurvatureLinAlgError("eigendecomposition returned non-finite values in float64")
    return evals.clamp_min(0.0).to(matrix.dtype), evecs.to(matrix.dtype)


def damped_inverse(matrix: Tensor, shift: float, jitter: float = 1e-6) -> Tensor:
    """``(matrix + shift * I)^-1`` by Cholesky, with a float64 (and jitter) retry on failure.

    Raises:
        CurvatureLinAlgError: if the float64 retry fails too.
    """
    eye = torch.eye(matrix.shape[-1], dtype=matrix.dtype, device=matrix.device)
    m = _symmetrize(matrix) + shift * eye
    chol, info = torch.linalg.cholesky_ex(m)
    if int(info) == 0 and _all_finite(chol):
        return torch.cholesky_inverse(chol)
    m64 = _jitter(m.double(), jitter)
    chol, info = torch.linalg.cholesky_ex(m64)
    if int(info) != 0 or not _all_finite(chol):
        raise CurvatureLinAlgError("Cholesky factorization of a damped factor failed in float64")
    return torch.cholesky_inverse(chol).to(matrix.dtype)
