"""K-FAC as a gradient preconditioner that composes with any torch optimizer.

Typical loop (the optimizer can be Adam, SGD, ...; :class:`acktr.KFAC` bundles this with
momentum and the ACKTR trust region)::

    pre = KFACPreconditioner(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for x, y in data:
        out = model(x)
        if pre.stats_due:
            with pre.record_stats():
                fisher_loss(out, "categorical").backward(retain_graph=True)
        opt.zero_grad()
        F.cross_entropy(out, y).backward()
        pre.step()   # rewrites .grad with the natural gradient
        opt.step()

Statistics are recorded only inside ``record_stats()``; the backward passes there leave every
``.grad`` as it was (they are stashed and restored), so the order of the two backward passes does
not matter. Loss convention: ``loss_reduction="mean"`` (default) means the loss is the batch mean
(over dim 0) of per-example losses, and the Fisher estimate is the per-example average.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Literal

import torch
from torch import Tensor, nn

from acktr.blocks import (
    DampingScheme,
    Decomposition,
    DiagonalBlock,
    InverseMethod,
    KroneckerBlock,
    decompose_factors,
)
from acktr.distributed import (
    DecompositionSharding,
    GroupSpec,
    check_group,
    check_replicas_in_sync,
    reduce_statistics,
    update_sharding,
)
from acktr.layers import StatsRecording, helper_for, registered_types
from acktr.schedules import (
    Schedule,
    check_choice,
    check_decay,
    check_interval,
    check_positive,
)

Fallback = Literal["diagonal", "identity"]
LossReduction = Literal["mean", "sum"]


class KFACPreconditioner:
    """Kronecker-factored natural-gradient preconditioner for ``nn.Linear`` and ``nn.Conv2d``.

    Args:
        model: the network. Every module of a registered type (``nn.Linear``, ``nn.Conv2d``, or
            anything added with :func:`acktr.register_layer`) with trainable weights gets a
            Kronecker block; all other trainable parameters go to the ``fallback``.
        damping: Tikhonov damping ``lambda`` (float or callable of the step). Default 0.1.
        stat_decay: EMA decay of the curvature factors, in [0, 1); the first update initialises
            them. Default 0.95.
        stats_every: statistics are recorded at steps ``k`` with ``k % stats_every == 0``
            (``stats_due`` says when). Default 1.
        inverse_every: eigendecompositions (or inverses) are refreshed every this many steps
            (and at the first step). Default 10.
        damping_scheme: ``"eigen"`` (eigenvalue-product damping, ``(A (x) G + lambda I)^-1``,
            as ACKTR) or ``"tikhonov"`` (factored Tikhonov with the pi correction,
            Martens & Grosse 2015 section 6.3). Default ``"eigen"``.
        inverse_method: ``"eigen"`` (eigendecompositions; damping applied every step) or
            ``"inverse"`` (explicit damped inverses, ``"tikhonov"`` only; damping fixed at
            refresh time). Default ``"eigen"``.
        fallback: what unclaimed parameters get: ``"diagonal"`` (a diagonal Fisher estimate,
            ``grad / (F_diag + lambda)``) or ``"identity"`` (the plain gradient). Default
            ``"diagonal"``.
        loss_reduction: ``"mean"`` if the Fisher and training losses are batch means (default),
            ``"sum"`` if they are sums over the batch.
        exclude: modules (or their names in ``model.named_modules()``) that get no Kronecker
            block; their parameters go to the fallback.
        async_inverse: compute eigendecompositions in a background thread, overlapped with the
            next ``inverse_every`` steps: the refresh at step ``k`` installs the decomposition
            of the factors as they were at the previous refresh (stale by exactly one refresh,
            so runs stay deterministic) and starts the next one. Default False.
        stats_batch_size: estimate the factors from a random subset of this many examples of
            each statistics batch (the same subset for every layer; an unbiased, noisier and
            cheaper estimate). Default None: the whole batch.
        process_group: the processes whose statistics are averaged and which share the
            eigendecompositions: ``"default"`` (default: torch.distributed's default group
            whenever one is initialized; None means the same), a ``ProcessGroup`` (e.g. from
            ``dist.new_group``), or ``"local"``: this process alone, never a collective, for a
            model one rank trains by itself inside a distributed job (:mod:`acktr.distributed`).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        damping: Schedule = 0.1,
        stat_decay: float = 0.95,
        stats_every: int = 1,
        inverse_every: int = 10,
        damping_scheme: DampingScheme = "eigen",
        inverse_method: InverseMethod = "eigen",
        fallback: Fallback = "diagonal",
        loss_reduction: LossReduction = "mean",
        exclude: Iterable[nn.Module | str] = (),
        async_inverse: bool = False,
        stats_batch_size: int | None = None,
        process_group: GroupSpec = "default",
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        check_positive("damping", damping)
        self.damping = damping
        self.stat_decay = check_decay("stat_decay", stat_decay)
        self.stats_every = check_interval("stats_every", stats_every)
        self.inverse_every = check_interval("inverse_every", inverse_every)
        self.damping_scheme = check_choice("damping_scheme", damping_scheme, ("eigen", "tikhonov"))
        self.inverse_method = check_choice("inverse_method", inverse_method, ("eigen", "inverse"))
        if inverse_method == "inverse" and damping_scheme != "tikhonov":
            raise ValueError(
                "inverse_method='inverse' needs damping_scheme='tikhonov' (eigenvalue-product "
                "damping is not a Kronecker product, so it has no factored inverse)"
            )
        self.fallback = check_choice("fallback", fallback, ("diagonal", "identity"))
        self.loss_reduction = check_choice("loss_reduction", loss_reduction, ("mean", "sum"))
        if stats_batch_size is not None:
            check_interval("stats_batch_size", stats_batch_size)
        self.stats_batch_size = stats_batch_size
        self.process_group = check_group(process_group)

        self.blocks: dict[str, KroneckerBlock] = {}
        self.diagonal_blocks: dict[str, DiagonalBlock] = {}
        self.identity_params: dict[str, nn.Parameter] = {}
        self._assignment: dict[str, str] = {}
        self._hooks: list[torch.utils.hooks.RemovableHandle] = []
        self._register(model, exclude)

        self.steps = 0
        self._recording = StatsRecording()
        self._seen_calls: set[int] = set()
        self._call_ids = itertools.count()
        self._subsets: dict[tuple[int, str], Tensor] = {}
        self._context_batch = 0
        self._diag_grads: list[tuple[DiagonalBlock, Tensor]] = []
        self._reported_skips = 0
        self._executor = ThreadPoolExecutor(1, "kfac-inverse") if async_inverse else None
        self._pending: Future | None = None
        self._sharding: DecompositionSharding | None = None  # set at refresh when distributed

    # ------------------------------------------------------------------ registration
    def _register(self, model: nn.Module, exclude: Iterable[nn.Module | str]) -> None:
        excluded = list(exclude)
        excluded_names = {e for e in excluded if isinstance(e, str)}
        excluded_ids = {id(e) for e in excluded if isinstance(e, nn.Module)}
        known = {name for name, _ in model.named_modules()}
        unknown = sorted(excluded_names - known)
        if unknown:
            raise ValueError(f"exclude names modules not in the model: {unknown}")
        claimed: dict[int, str] = {}
        for name, module in model.named_modules():
            if name in excluded_names or id(module) in excluded_ids:
                continue
            # The weight decides (a bias-only layer such as BroadcastBias: its bias).
            first = getattr(module, "weight", None)
            if first is None:
                first = getattr(module, "bias", None)
            if not isinstance(first, nn.Parameter) or not first.requires_grad:
                continue
            helper = helper_for(module)
            if helper is None:
                continue
            block = KroneckerBlock(name or type(module).__name__, helper)
            for p in helper.params():
                if id(p) in claimed:
                    raise ValueError(
                        f"parameter shared by layers '{claimed[id(p)]}' and '{block.name}': "
                        "K-FAC needs one block per parameter; exclude one of them"
                    )
                claimed[id(p)] = block.name
            self.blocks[block.name] = block
            self._hooks.append(module.register_forward_hook(self._make_forward_hook(block)))
        if not self.blocks:
            types = ", ".join(t.__name__ for t in registered_types())
            raise ValueError(
                f"K-FAC found no supported layer with trainable weights in {type(model).__name__} "
                f"(supported: {types}; add others with acktr.register_layer)"
            )
        for pname, p in model.named_parameters():
            if not p.requires_grad:
                continue
            if id(p) in claimed:
                self._assignment[pname] = f"kronecker:{claimed[id(p)]}"
            elif self.fallback == "diagonal":
                block = DiagonalBlock(pname, p)
                self.diagonal_blocks[pname] = block
                self._hooks.append(p.register_hook(self._make_param_hook(block)))
                self._assignment[pname] = "diagonal"
            else:
                self.identity_params[pname] = p
                self._assignment[pname] = "identity"

    def assignments(self) -> dict[str, str]:
        """Which curvature each trainable parameter gets, by parameter name.

        Values: ``"kronecker:<module name>"``, ``"diagonal"`` or ``"identity"``.
        """
        return dict(self._assignment)

    def remove_hooks(self) -> None:
        """Detach every hook from the model (the preconditioner stops recording)."""
        for h in self._hooks:
            h.remove()
        self._hooks.clear()

    # ------------------------------------------------------------------ statistics
    @property
    def stats_due(self) -> bool:
        """True when the next ``step()`` is a statistics step (forward passes are captured)."""
        return self.steps % self.stats_every == 0

    def _make_forward_hook(self, block: KroneckerBlock):
        def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            if not (torch.is_grad_enabled() and self.stats_due and output.requires_grad):
                return
            x = inputs[0].detach()
            call_id = next(self._call_ids)  # identifies this forward call (A counted once)
            output.register_hook(lambda grad: self._on_output_grad(block, x, call_id, grad))

        return hook

    def _on_output_grad(self, block: KroneckerBlock, x: Tensor, call_id: int, grad: Tensor) -> None:
        if not self._recording.active:
            return
        helper = block.helper
        batch = helper.batch_size(x)
        self._context_batch = max(self._context_batch, batch)
        # Per-example gradients: autograd gives g_hat / batch for a batch-mean loss.
        scale = float(batch) if self.loss_reduction == "mean" else 1.0
        idx = self._subsample(batch, x.device)
        if idx is not None:
            x, grad = x.index_select(0, idx), grad.index_select(0, idx)
        if call_id not in self._seen_calls:  # A once per forward call, G once per pass
            self._seen_calls.add(call_id)
            rows, n = helper.input_rows(x)
            block.accumulate_inputs(rows, n)
        block.accumulate_grads(helper.grad_rows(grad), scale)

    def _subsample(self, batch: int, device: torch.device) -> Tensor | None:
        """The examples this context's statistics use: a random subset of ``stats_batch_size``
        (the same for every layer), or None for the whole batch."""
        m = self.stats_batch_size
        if m is None or batch <= m:
            return None
        key = (batch, str(device))
        if key not in self._subsets:
            self._subsets[key] = torch.randperm(batch, device=device)[:m]
        return self._subsets[key]

    def _make_param_hook(self, block: DiagonalBlock):
        def hook(grad: Tensor) -> None:
            if self._recording.active:
                self._diag_grads.append((block, grad.detach()))

        return hook

    @contextmanager
    def record_stats(self) -> Iterator[None]:
        """Record curvature statistics from the backward passes run inside this context.

        Run the Fisher loss's backward here (:func:`acktr.fisher_loss`), typically with
        ``retain_graph=True`` to reuse the forward for the training loss. Several passes inside
        one context are averaged as Monte Carlo samples. ``.grad`` is left untouched. Does
        nothing when ``stats_due`` was False at the forward pass.
        """
        params = [p for b in self.blocks.values() for p in b.helper.params()]
        params += [b.param for b in self.diagonal_blocks.values()]
        params += list(self.identity_params.values())
        with self._recording.context(params, self._end_context):
            yield

    def _end_context(self) -> None:
        self._seen_calls.clear()
        self._subsets.clear()
        self._commit_stats()

    def _commit_stats(self) -> None:
        # The (full) batch size of this context, needed by the diagonal fallback's estimator.
        batch, self._context_batch = self._context_batch or 1, 0
        pending = [(b, b.pending_stats()) for b in self.blocks.values()]
        pending = [(b, s) for b, s in pending if s is not None]
        diag = self._diagonal_pending(batch)
        flat = [t for _, s in pending for t in s] + [t for _, t in diag]
        flat = reduce_statistics(flat, self.process_group)
        for i, (block, _) in enumerate(pending):
            block.update_factors(flat[2 * i], flat[2 * i + 1], self.stat_decay)
        for j, (block, _) in enumerate(diag):
            block.update_factors(flat[2 * len(pending) + j], self.stat_decay)

    def _diagonal_pending(self, batch: int) -> list[tuple[DiagonalBlock, Tensor]]:
        scale = float(batch) if self.loss_reduction == "mean" else 1.0
        for block, grad in self._diag_grads:
            block.accumulate_grad(grad, scale, batch)
        self._diag_grads.clear()
        out = [(b, b.pending_stats()) for b in self.diagonal_blocks.values()]
        return [(b, s) for b, s in out if s is not None]

    # ------------------------------------------------------------------ preconditioning
    def _check_recorded(self) -> None:
        missing = [name for name, b in self.blocks.items() if not b.recorded]
        if len(missing) == len(self.blocks):
            raise RuntimeError(
                "K-FAC step() before any curvature statistics were recorded: run the Fisher "
                "loss backward inside `with opt.record_stats():` (see acktr.fisher_loss) first"
            )
        if missing:
            raise RuntimeError(
                f"K-FAC layers {missing} received no curvature statistics: their outputs did not "
                "reach the Fisher loss. Exclude them (exclude=[...]) or include them in the loss."
            )

    def refresh_due(self) -> bool:
        """True when this ``step()`` recomputes the eigendecompositions (or inverses)."""
        return self.steps % self.inverse_every == 0 or not all(
            b.ready for b in self.blocks.values()
        )

    def refresh(self) -> None:
        """Recompute every block's eigenbasis (or inverse) and report numerical trouble.

        Synchronous by default; with ``async_inverse`` install the previous refresh's result
        and start the next decomposition in the background (waiting only the first time).
        Under ``torch.distributed`` (world size > 1) each rank decomposes only the blocks it
        owns and the results are broadcast from their owners (:mod:`acktr.distributed`; with
        ``async_inverse`` at the next refresh); it first checks the replicas' parameters agree.
        """
        damping = check_positive("damping", self.damping, self.steps)
        method = self.inverse_method
        sharding = self._sharding = update_sharding(self._sharding, self.blocks, self.process_group)
        if sharding is not None:
            check_replicas_in_sync(self._params(), self.steps, group=self.process_group)
        owned = self.blocks if sharding is None else {n: self.blocks[n] for n in sharding.owned}
        if self._executor is None and sharding is None:
            for block in self.blocks.values():
                block.refresh(damping, self.damping_scheme, method)  # type: ignore[arg-type]
        elif self._executor is None:
            mine = {n: b.decompose(damping, method) for n, b in owned.items()}  # type: ignore
            for name, result in sharding.exchange(mine, method).items():  # type: ignore[union-attr]
                self.blocks[name].install(result)
        else:
            self._install_pending()
            jobs = [(b, b.A.clone(), b.G.clone()) for b in owned.values() if b.recorded]
            self._pending = self._executor.submit(_decompose_jobs, jobs, damping, method)
            if not all(b.ready for b in self.blocks.values()):
                self._install_pending()  # nothing to precondition with yet: wait this once
        self._report_skipped_stats()

    def _install_pending(self) -> None:
        if self._pending is None:
            return
        results = self._pending.result()
        self._pending = None
        for result in results.values():
            _use_on_current_stream(result)
        for name, result in self._shared(results).items():
            self.blocks[name].install(result)

    def _shared(self, results: dict[str, Decomposition]) -> dict[str, Decomposition | None]:
        """Distributed: every block's result from its owner (a collective); else ``results``."""
        if self._sharding is None:
            return dict(results)
        return self._sharding.exchange(results, self.inverse_method)

    def _params(self) -> list[Tensor]:
        params = [p for b in self.blocks.values() for p in b.helper.params()]
        return params + [b.param for b in self.diagonal_blocks.values()]

    def _report_skipped_stats(self) -> None:
        blocks = list(self.blocks.values()) + list(self.diagonal_blocks.values())
        counts = {b.name: int(b.n_skipped) for b in blocks}
        total = sum(counts.values())
        if total > self._reported_skips:
            bad = sorted(name for name, c in counts.items() if c)
            warnings.warn(
                f"K-FAC skipped {total - self._reported_skips} curvature-statistics update(s) "
                f"with NaN/Inf values (layers: {bad}); the factors keep their previous values",
                RuntimeWarning,
                stacklevel=3,
            )
            self._reported_skips = total

    def _precondition_blocks(self, damping: float) -> list[Tensor]:
        """Precondition the Kronecker blocks' gradients in place (inside :meth:`step`, which
        then does the fallback parameters); return their terms ``<Delta, grad>``."""
        terms: list[Tensor] = []
        for block in self.blocks.values():
            grad = block.helper.grad_matrix()
            if grad is None:
                continue
            delta = block.precondition(grad, damping, self.damping_scheme)  # type: ignore[arg-type]
            terms.append(torch.dot(delta.reshape(-1), grad.reshape(-1)))
            block.helper.set_grad_matrix(delta)
        return terms

    @torch.no_grad()
    def step(self) -> Tensor:
        """Precondition every gradient in place: ``.grad <- (F + lambda)^-1 .grad``.

        Refreshes the eigendecompositions first when due. Parameters without a gradient are left
        alone. Returns ``sum_p <Delta_p, grad_p>`` (a 0-dim tensor on the device, no host sync),
        the quadratic form used by the ACKTR trust region.
        """
        self._check_recorded()
        if self.refresh_due():
            self.refresh()
        damping = check_positive("damping", self.damping, self.steps)
        vg = self.apply_inverse(damping)
        self.steps += 1
        return vg

    @torch.no_grad()
    def apply_inverse(self, damping: float) -> Tensor:
        """``.grad <- (F + damping)^-1 .grad`` with the current eigenbases (or inverses), with no
        refresh and no step counted (:meth:`step` does both). Returns ``sum_p <Delta_p, grad_p>``.

        Adaptive K-FAC calls it once per candidate damping of its greedy search.
        """
        terms = self._precondition_blocks(damping)
        for block in self.diagonal_blocks.values():
            p = block.param
            if p.grad is None:
                continue
            delta = block.precondition(p.grad, damping)
            terms.append((delta * p.grad).sum())
            p.grad.copy_(delta)
        for p in self.identity_params.values():
            if p.grad is not None:
                terms.append((p.grad * p.grad).sum())
        if not terms:
            return torch.zeros(())
        return torch.stack([t.to(terms[0].dtype) for t in terms]).sum()

    # ------------------------------------------------------------------ state
    def decompositions_recomputable(self) -> bool:
        """True when ``state_dict(compact=True)`` stores no eigenbasis: each block's is the
        eigendecomposition of its current factors (recomputed on load) or the next
        :meth:`step` recomputes it anyway. Always False with ``async_inverse`` or under
        ``torch.distributed`` sharding, where decompositions lag the factors."""
        if self._executor is not None or self._sharding is not None:
            return False
        refresh_next = self.steps % self.inverse_every == 0
        return all(b.eig is None or b.eig_from_factors or refresh_next
                   for b in self.blocks.values())

    def state_dict(self, compact: bool = False, drop_stale: bool = False) -> dict[str, object]:
        """Everything needed to resume: factors, eigenbases/inverses, counters.

        Under ``torch.distributed`` with ``async_inverse`` it gathers the in-flight refresh
        from every rank, so it is a collective: call it on every rank.

        Args:
            compact: leave out what can be recomputed bit for bit (see
                :meth:`KroneckerBlock.state_dict`): symmetric factors are stored as their lower
                triangle, and eigenbases only where :meth:`decompositions_recomputable` is
                False for that block. For a Nature-CNN Atari policy this divides the size by
                about 3 (docs/agents.md). Loading recomputes the left-out eigenbases (one
                ``eigh`` per factor) and warns if they are not bit-identical. Default False.
            drop_stale: with ``compact``, also leave out the eigenbases that lag the factors;
                a run continued from the state recomputes them at its first step instead of on
                schedule, so it is not bit-identical to one never stopped (for a run's final
                checkpoint, which nothing continues exactly). Default False.
        """
        refresh_next = (self._executor is None and self._sharding is None
                        and (drop_stale or self.steps % self.inverse_every == 0))
        pending = None
        if self._pending is not None:  # an in-flight async refresh is part of the state
            results = self._pending.result()
            for d in results.values():
                _use_on_current_stream(d)
            shared = self._shared(results)
            pending = {k: d.tensors() for k, d in shared.items() if d is not None}
        return {
            "steps": self.steps,
            "reported_skips": self._reported_skips,
            "blocks": {name: b.state_dict(compact and self._executor is None
                                          and self._sharding is None, refresh_next)
                       for name, b in self.blocks.items()},
            "diagonal": {name: b.state_dict() for name, b in self.diagonal_blocks.items()},
            "pending": pending,
        }

    def load_state_dict(self, state: dict[str, object]) -> None:
        blocks: dict = state["blocks"]  # type: ignore[assignment]
        diagonal: dict = state["diagonal"]  # type: ignore[assignment]
        if set(blocks) != set(self.blocks) or set(diagonal) != set(self.diagonal_blocks):
            raise ValueError(
                "K-FAC state does not match this model: state has layers "
                f"{sorted(blocks)} / diagonal {sorted(diagonal)}, model has {sorted(self.blocks)}"
                f" / diagonal {sorted(self.diagonal_blocks)}"
            )
        for name, s in blocks.items():
            self.blocks[name].load_state_dict(s)
        for name, s in diagonal.items():
            self.diagonal_blocks[name].load_state_dict(s)
        self.steps = int(state["steps"])  # type: ignore[arg-type]
        self._reported_skips = int(state["reported_skips"])  # type: ignore[arg-type]
        pending = state.get("pending")
        self._pending = None
        if pending is not None:
            if self._executor is None:
                raise ValueError("K-FAC state holds an async refresh; use async_inverse=True")
            future: Future = Future()
            future.set_result({k: Decomposition.from_tensors(d) for k, d in pending.items()})
            self._pending = future


def _decompose_jobs(
    jobs: list[tuple[KroneckerBlock, Tensor, Tensor]], damping: float, method: InverseMethod
) -> dict[str, Decomposition]:
    """The background refresh: decompose each block's (cloned) factors.

    On CUDA it runs on a side stream, so the eigendecompositions overlap with the training
    steps that the main stream runs meanwhile (the point of ``async_inverse``); the side stream
    first waits for the clones, which the main stream made.
    """
    if not jobs or jobs[0][1].device.type != "cuda":
        return {b.name: decompose_factors(a, g, damping, method) for b, a, g in jobs}
    device = jobs[0][1].device
    side = _side_stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        out = {}
        for b, a, g in jobs:
            a.record_stream(side)
            g.record_stream(side)
            out[b.name] = decompose_factors(a, g, damping, method)
        done = torch.cuda.Event()
        done.record(side)
    for d in out.values():
        d.ready_event = done
    return out


_SIDE_STREAMS: dict[torch.device, torch.cuda.Stream] = {}


def _side_stream(device: torch.device) -> torch.cuda.Stream:
    if device not in _SIDE_STREAMS:
        _SIDE_STREAMS[device] = torch.cuda.Stream(device)
    return _SIDE_STREAMS[device]


def _use_on_current_stream(result: Decomposition) -> None:
    """Make the current stream wait for a side-stream result and tell the caching allocator
    that its tensors are used there (so their memory is not reused too early)."""
    if result.ready_event is None:
        return
    stream = torch.cuda.current_stream(result.pi.device)
    stream.wait_event(result.ready_event)
    for t in result.all_tensors():
        t.record_stream(stream)
