"""Checkpoints: written atomically, read with ``torch.load(weights_only=True)`` and checked.

Reading never runs code (``weights_only=True``: tensors and plain data only) and every bad file
is a one-line :class:`agents.errors.BadInputError` naming it: empty, truncated, another
program's file ("not a checkpoint of this project"), a pickled Python object (refused), missing
entries or entries of the wrong type, a newer format, weights that do not fit the stored config.

A checkpoint is first written to a temporary file in the same folder, flushed and fsynced,
then renamed over the previous one (``os.replace``, atomic) and the folder fsynced: whatever
moment a process is killed (``kill -9``, power loss), ``checkpoint.pt`` is either the previous
complete checkpoint or the new complete one. A kill during the write leaves a temporary
``.checkpoint.pt.*.tmp`` file, which :func:`remove_stale_temporaries` deletes on resume.
"""

from __future__ import annotations

import errno
import os
import pickle
import re
import struct
import tempfile
import time
import zipfile
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from agents.config import Config, ConfigError, config_from_dict, config_to_dict
from agents.errors import BadInputError, MissingInputError
from agents.files import looks_like, read_head

CHECKPOINT_NAME = "checkpoint.pt"
RUN_KEYS: tuple[str, ...] = ("policy", "env", "progress", "config")
"""Entries every checkpoint of a run holds (what ``train.py eval`` reads)."""
RESUME_KEYS: tuple[str, ...] = (*RUN_KEYS, "optimizers")
"""Entries a checkpoint needs to resume a run."""
FORMAT_KEY = "format_version"
"""Optional entry: the layout version of a checkpoint; files without it are format 1."""
CHECKPOINT_FORMAT = 1
"""The newest checkpoint format this version reads."""
NOT_OURS = "not a checkpoint of this project"


class CheckpointWriteError(OSError):
    """Writing a checkpoint failed (e.g. the disk is full); the previous one is intact."""


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically: a temporary file in the same folder, flushed to
    disk, then renamed over the target, so a crash never leaves a half-written checkpoint.

    Raises:
        CheckpointWriteError: the write failed (disk full, permissions, ...); the message
            names the file and the previous checkpoint at ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would hide the file from the group
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError) or _is_os_error(err):
            raise _write_error(path, err) from err
        raise
    _fsync_dir(path.parent)
    return path


def _is_os_error(err: BaseException) -> bool:
    # torch.save reports a failed write of its zip writer as a RuntimeError with the errno text
    return isinstance(err, RuntimeError) and any(
        s in str(err) for s in ("No space left", "Disk quota", "file write failed")
    )


def _write_error(path: Path, err: BaseException) -> CheckpointWriteError:
    code = getattr(err, "errno", None)
    if code in (errno.ENOSPC, errno.EDQUOT) or "No space left" in str(err):
        why = "the disk is full (no space left on device)"
        code = errno.ENOSPC
    else:
        why = f"{type(err).__name__}: {err}"
    previous = "the previous checkpoint there is intact" if path.exists() else \
        "there is no previous checkpoint"
    return CheckpointWriteError(code or errno.EIO, f"could not write checkpoint {path}: {why}; "
                                f"{previous}")


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable (POSIX); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Delete the temporary files that writes of ``path`` left when their process was killed
    (``.checkpoint.pt.*.tmp``); returns them. Call it when no write of ``path`` is running."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    stale = sorted(path.parent.glob(f".{path.name}.*.tmp"))
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def load_checkpoint(
    path: str | Path,
    map_location: str | torch.device = "cpu",
    required: Collection[str] = RUN_KEYS,
) -> dict[str, Any]:
    """Read a checkpoint safely (tensors and plain data only; no code is unpickled) and check
    its structure (:func:`check_checkpoint`).

    Args:
        path: a checkpoint file, or a run directory (its ``checkpoint.pt``).
        map_location: where tensors go; default ``"cpu"``.
        required: top-level entries that must be there, each checked for its type; default
            :data:`RUN_KEYS` (what evaluation needs); :data:`RESUME_KEYS` to resume.

    Raises:
        agents.errors.MissingInputError: with the path, if there is no checkpoint there (also a
            ``FileNotFoundError``).
        agents.errors.BadInputError: naming the file: a directory without a checkpoint, an
            empty, truncated or corrupt file, another program's file (an image, a zip archive,
            a pickle, a bare model ``state_dict``), a pickled Python object (refused, never
            run), a missing entry or one of the wrong type, a newer format.
    """
    path = checkpoint_file(path)
    _check_container(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise BadInputError(_refused(path, str(err))) from None
    except (RuntimeError, EOFError, ValueError, KeyError, IndexError, TypeError, AttributeError,
            OSError, zipfile.BadZipFile, struct.error) as err:
        reason = next(iter(str(err).strip().splitlines()), type(err).__name__)
        raise BadInputError(f"{path}: corrupt checkpoint, torch cannot read it ({reason[:200]})"
                            ) from None
    check_checkpoint(state, path, required)
    return state


def checkpoint_file(path: str | Path) -> Path:
    """``path``, or ``path/checkpoint.pt`` for a run directory; the file must exist.

    Raises:
        agents.errors.MissingInputError: no checkpoint there (also a ``FileNotFoundError``).
        agents.errors.BadInputError: ``path`` is neither a file nor a directory.
    """
    path = Path(path)
    if path.is_dir():
        if not (path / CHECKPOINT_NAME).exists():
            raise MissingInputError(f"no checkpoint at {path / CHECKPOINT_NAME}: {path} is a "
                                    "directory without one; pass a run directory or a "
                                    f"checkpoint file ({CHECKPOINT_NAME}, best.pt)")
        path = path / CHECKPOINT_NAME
    if not path.exists():
        raise MissingInputError(f"no checkpoint at {path}")
    if not path.is_file():
        raise BadInputError(f"{path}: not a regular file; expected a checkpoint file")
    return path


def _check_container(path: Path) -> None:
    """A torch checkpoint is a zip archive holding ``<name>/data.pkl``; anything else is
    reported (empty, truncated, another program's file) before torch reads it."""
    head = read_head(path)
    if not head:
        raise BadInputError(f"{path}: empty file, not a checkpoint")
    if not head.startswith(b"PK\x03\x04"):
        kind = looks_like(head)
        raise BadInputError(f"{path}: {NOT_OURS}: not a torch checkpoint (those are zip archives)"
                            + (f"; it looks like {kind}" if kind else ""))
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise BadInputError(f"{path}: truncated or corrupt checkpoint (its zip archive is "
                            "incomplete: a copy or a write that was cut short?)") from None
    if not any(n.endswith("/data.pkl") for n in names):
        listed = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        raise BadInputError(f"{path}: {NOT_OURS}: a zip archive but not a torch checkpoint "
                            f"(it holds {listed or 'nothing'})")


def _refused(path: Path, message: str) -> str:
    """One line from torch's multi-line ``weights_only`` refusal."""
    found = re.search(r"GLOBAL (\S+)", message)
    if found:
        return (f"{path}: refused: it holds a pickled Python object ({found.group(1)}); "
                "checkpoints of this project hold only tensors and plain data, so nothing in "
                "this file was loaded or run")
    boilerplate = ("Weights only load failed", "Please file an issue", "Check the documentation",
                   "In PyTorch", "Re-running")
    lines = [ln.strip() for ln in message.splitlines()
             if ln.strip() and not ln.strip().startswith(boilerplate)]
    detail = f" ({lines[0][:120]})" if lines else ""
    return (f"{path}: {NOT_OURS}: torch.load(weights_only=True) refuses its content{detail}; "
            "nothing in it was run")


def _is_tensor_dict(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())


# What each entry must be: a predicate and its description for messages.
_ENTRY_TYPES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "policy": (_is_tensor_dict, "a mapping of parameter names to tensors"),
    "optimizers": (lambda v: isinstance(v, dict), "a mapping (optimizer states)"),
    "env": (lambda v: isinstance(v, dict), "a mapping (normalization statistics)"),
    "progress": (lambda v: isinstance(v, dict), "a mapping of counters"),
    "config": (lambda v: isinstance(v, dict), "a mapping (the run's config)"),
    "env_snapshot": (lambda v: v is None or isinstance(v, dict), "a mapping or None"),
    "env_snapshot_missing": (lambda v: v is None or isinstance(v, str), "a string or None"),
    "obs": (lambda v: v is None or isinstance(v, torch.Tensor), "a tensor or None"),
    "rng": (lambda v: isinstance(v, dict), "a mapping of RNG states"),
}
_PROGRESS_TYPES: dict[str, tuple[type, ...]] = {
    "update": (int,), "timesteps": (int,), "wall_seconds": (int, float), "episodes": (int,),
    "recent_returns": (list,), "recent_lengths": (list,),
}


def check_checkpoint(state: Any, path: str | Path, required: Collection[str] = RUN_KEYS) -> None:
    """Check that ``state`` (a loaded checkpoint) is one of this project's: a mapping with the
    ``required`` entries, each of the expected type, ``progress`` with its counters, and a
    ``format_version`` (absent in older files: 1) this version reads.

    Raises:
        agents.errors.BadInputError: naming ``path`` and the first problem.
    """
    ours = ", ".join(RESUME_KEYS)
    if not isinstance(state, dict):
        raise BadInputError(f"{path}: {NOT_OURS}: it holds a {type(state).__name__}, ours hold "
                            f"a mapping with {ours}")
    if required and not any(k in state for k in (*required, *RESUME_KEYS)):
        keys = ", ".join(repr(k) for k in list(state)[:4]) + (", ..." if len(state) > 4 else "")
        raise BadInputError(f"{path}: {NOT_OURS}: its entries are {keys or 'none'}; ours hold "
                            f"{ours} (a bare model state_dict is not enough)")
    version = state.get(FORMAT_KEY, 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise BadInputError(f"{path}: {FORMAT_KEY} {version!r} is not a format of this project "
                            f"(a whole number from 1 to {CHECKPOINT_FORMAT})")
    if version > CHECKPOINT_FORMAT:
        raise BadInputError(f"{path}: checkpoint format {version} was written by a newer "
                            f"version of this project; this one reads formats up to "
                            f"{CHECKPOINT_FORMAT} (upgrade the package)")
    missing = [k for k in required if k not in state]
    if missing:
        raise BadInputError(f"{path}: incomplete checkpoint: no {', '.join(map(repr, missing))} "
                            f"entry (a checkpoint of this project holds {ours})")
    for key in (k for k in state if k in _ENTRY_TYPES):
        accepts, expected = _ENTRY_TYPES[key]
        if not accepts(state[key]):
            raise BadInputError(f"{path}: checkpoint entry {key!r} is a "
                                f"{type(state[key]).__name__}; expected {expected}")
    for key, types in _PROGRESS_TYPES.items() if "progress" in state else ():
        value = state["progress"].get(key)
        if isinstance(value, bool) or not isinstance(value, types):
            raise BadInputError(f"{path}: checkpoint entry progress[{key!r}] is {value!r:.40}; "
                                f"expected {' or '.join(t.__name__ for t in types)}")


def checkpoint_config(ckpt: dict[str, Any], path: str | Path) -> Config:
    """The run's config stored in checkpoint ``ckpt`` read from ``path``, validated.

    Raises:
        agents.errors.BadInputError: naming ``path`` when the stored config is invalid.
    """
    try:
        return config_from_dict(ckpt["config"])
    except ConfigError as err:
        raise BadInputError(f"{path}: the config stored in the checkpoint is invalid: {err}"
                            ) from None


def load_into(ckpt: dict[str, Any], path: str | Path, policy: torch.nn.Module,
              env: Any = None) -> None:
    """Load the checkpoint's policy weights into ``policy`` and, when ``env`` is given, its
    normalization statistics into ``env``; a mismatch is an error naming ``path``.

    Raises:
        agents.errors.BadInputError: the weights or statistics do not fit the network and envs
            that the stored config describes.
    """
    try:
        policy.load_state_dict(ckpt["policy"])
    except RuntimeError as err:
        detail = " ".join(str(err).split())[:300]
        raise BadInputError(f"{path}: the policy weights do not fit the network of its config "
                            f"({detail})") from None
    if env is not None:
        try:
            env.load_state_dict(ckpt["env"])
        except (ValueError, KeyError, TypeError) as err:
            raise BadInputError(f"{path}: the normalization statistics do not fit the env of "
                                f"its config ({err})") from None


# Settings a resumed run must share with its checkpoint: they shape the network, the
# optimizers' state or the environments' state.
RESUME_MUST_MATCH = ("policy", "env.env_id", "env.num_envs", "env.normalize_obs",
                     "env.normalize_reward", "env.frame_stack", "algo.algo",
                     "algo.separate_critic")


def check_resumable(ckpt: dict[str, Any], cfg: Config, path: str | Path) -> None:
    """Check that ``cfg`` (the config a resumed run will use: the run's ``config.yaml`` plus
    overrides) keeps the settings of :data:`RESUME_MUST_MATCH` that the checkpoint was written
    with; others (the budget, logging) may change.

    Raises:
        agents.errors.BadInputError: naming ``path`` and each differing setting.
    """
    before = config_to_dict(checkpoint_config(ckpt, path))
    now = config_to_dict(cfg)
    diffs = []
    for key in RESUME_MUST_MATCH:
        section, _, name = key.partition(".")
        names = [name] if name else list(now[section])
        for name_ in names:
            old, new = before[section].get(name_), now[section][name_]
            if old != new:
                diffs.append(f"{section}.{name_} {old!r} there, {new!r} now")
    if diffs:
        raise BadInputError(f"{path}: cannot resume with other settings than the checkpoint's "
                            f"({'; '.join(diffs)}); resume with the run's own config")


@contextmanager
def restoring(path: str | Path) -> Iterator[None]:
    """Context of restoring a run from the checkpoint at ``path`` (model, optimizers, RNG
    streams, envs): the errors its loaders raise for state that does not fit (a missing or
    ill-typed entry, a wrong shape) become one BadInputError naming ``path``."""
    try:
        yield
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError) as err:
        if isinstance(err, BadInputError):
            raise
        detail = " ".join(str(err).split())[:200]
        raise BadInputError(f"{path}: its saved state does not fit this run and cannot be "
                            f"restored ({type(err).__name__}: {detail})") from err


@dataclass
class CheckpointSchedule:
    """When the trainer saves a periodic checkpoint (besides the end and Ctrl-C).

    Due after every ``every_updates``-th update, after the updates in ``at``, and once
    ``every_seconds`` of wall-clock time have passed since the last save. A time-due save waits
    for an update after which the optimizer state is compact (``ready``, see
    ``agents.updates.Optimizers.compact_ready``; at most ``kfac.inverse_every`` updates), but
    no longer than ``slack`` of the interval beyond it.

    Attributes:
        every_updates: 0: not by updates.
        every_seconds: 0: not by time.
        at: extra update counts after which to save.
        slack: fraction of ``every_seconds`` a time-due save may wait for a compact state.
    """

    every_updates: int = 0
    every_seconds: float = 0.0
    at: frozenset[int] = frozenset()
    slack: float = 0.1
    last_save: float = field(default_factory=time.monotonic)

    def due(self, update: int, ready: bool = True, now: float | None = None) -> bool:
        """Whether to save after ``update``; ``ready``: the state is compact now."""
        if (self.every_updates and update % self.every_updates == 0) or update in self.at:
            return True
        if not self.every_seconds:
            return False
        waited = (time.monotonic() if now is None else now) - self.last_save
        return waited >= self.every_seconds and (
            ready or waited >= self.every_seconds * (1.0 + self.slack)
        )

    def saved(self, now: float | None = None) -> None:
        """Restart the clock (call after each save)."""
        self.last_save = time.monotonic() if now is None else now
