"""Checkpoints: written atomically, read with ``torch.load(weights_only=True)``, scheduled.

A checkpoint is first written to a temporary file in the same folder, flushed and fsynced,
then renamed over the previous one (``os.replace``, atomic) and the folder fsynced: whatever
moment a process is killed (``kill -9``, power loss), ``checkpoint.pt`` is either the previous
complete checkpoint or the new complete one. A kill during the write leaves a temporary
``.checkpoint.pt.*.tmp`` file, which :func:`remove_stale_temporaries` deletes on resume.
"""

from __future__ import annotations

import errno
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_NAME = "checkpoint.pt"


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


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint safely (tensors and plain data only; no code is unpickled).

    Raises:
        FileNotFoundError: with the path, if there is no checkpoint there.
    """
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    return torch.load(path, map_location=map_location, weights_only=True)


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
