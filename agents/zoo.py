"""rl-zoo3's own commands with ACKTR registered (``pip install -e ".[zoo]"``).

    python -m agents.zoo train --algo acktr --env HalfCheetah-v5
    python -m agents.zoo enjoy --algo acktr --env HalfCheetah-v5 -f logs/
    python -m agents.zoo record_video --algo acktr --env HalfCheetah-v5 -f logs/ -n 1000

Everything after the command is rl-zoo3's (``python -m agents.zoo train --help``). ACKTR is
added to rl-zoo3's ``ALGOS`` as ``acktr`` (:class:`agents.sb3.ACKTR`), then rl-zoo3's entry
point runs unchanged. ``train --algo acktr`` reads ``configs/zoo/acktr.yml`` unless
``-conf/--conf-file`` names another file. Every other algorithm of the zoo works as usual.
"""

from __future__ import annotations

import runpy
import sys
from collections.abc import Sequence
from pathlib import Path

HYPERPARAMS = Path(__file__).resolve().parent.parent / "configs" / "zoo" / "acktr.yml"
COMMANDS = ("train", "enjoy", "record_video")
USAGE = (f"usage: python -m agents.zoo {{{','.join(COMMANDS)}}} [rl-zoo3 arguments]; "
         "e.g. python -m agents.zoo train --algo acktr --env CartPole-v1")


def register() -> None:
    """Add ``acktr`` to rl-zoo3's ``ALGOS`` (the dict its train, enjoy and record_video use)."""
    from rl_zoo3.utils import ALGOS

    from agents.sb3 import ACKTR

    ALGOS["acktr"] = ACKTR


def zoo_arguments(command: str, args: Sequence[str]) -> list[str]:
    """``args`` with our hyperparameter file added for ``train --algo acktr`` when none is
    given."""
    args = list(args)
    algo = next((args[i + 1] for i, a in enumerate(args[:-1]) if a == "--algo"),
                next((a.split("=", 1)[1] for a in args if a.startswith("--algo=")), None))
    has_conf = any(a in ("-conf", "--conf-file") or a.startswith("--conf-file=") for a in args)
    if command == "train" and algo == "acktr" and not has_conf:
        args += ["--conf-file", str(HYPERPARAMS)]
    return args


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        given = repr(argv[0]) if argv else "nothing"
        raise SystemExit(f"agents.zoo: unknown command {given}; {USAGE}")
    command, rest = argv[0], zoo_arguments(argv[0], argv[1:])
    try:
        register()
    except ImportError as err:
        raise SystemExit(f"agents.zoo needs rl-zoo3: pip install -e \".[zoo]\" ({err})") from None
    sys.argv = [f"agents.zoo {command}", *rest]
    if command == "train":
        from rl_zoo3.train import train

        train()
    elif command == "enjoy":
        from rl_zoo3.enjoy import enjoy

        enjoy()
    else:  # record_video is a script with no entry function
        runpy.run_module("rl_zoo3.record_video", run_name="__main__")


if __name__ == "__main__":
    main()
