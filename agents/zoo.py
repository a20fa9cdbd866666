"""rl-zoo3's own commands with ACKTR registered (``pip install -e ".[zoo]"``).

    python -m agents.zoo train --algo acktr --env HalfCheetah-v5
    python -m agents.zoo enjoy --algo acktr --env HalfCheetah-v5 -f logs/
    python -m agents.zoo record_video --algo acktr --env HalfCheetah-v5 -f logs/ -n 1000

Everything after the command is rl-zoo3's (``python -m agents.zoo train --help``). ACKTR is
added to rl-zoo3's ``ALGOS`` as ``acktr`` (:class:`agents.sb3.ACKTR`), with an Optuna search
space for ``train -optimize`` (:func:`sample_acktr_params`), then rl-zoo3's entry point runs
unchanged. ``train --algo acktr`` reads ``configs/zoo/acktr.yml`` unless
``-conf/--conf-file`` names another file. Every other algorithm of the zoo works as usual.
"""

from __future__ import annotations

import runpy
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HYPERPARAMS = Path(__file__).resolve().parent.parent / "configs" / "zoo" / "acktr.yml"
COMMANDS = ("train", "enjoy", "record_video")
USAGE = (f"usage: python -m agents.zoo {{{','.join(COMMANDS)}}} [rl-zoo3 arguments]; "
         "e.g. python -m agents.zoo train --algo acktr --env CartPole-v1")


def register() -> None:
    """Add ``acktr`` to rl-zoo3's ``ALGOS`` (the dict its train, enjoy and record_video use) and
    to its Optuna samplers."""
    from rl_zoo3.hyperparams_opt import (
        HYPERPARAMS_CONVERTER,
        HYPERPARAMS_SAMPLER,
        convert_onpolicy_params,
    )
    from rl_zoo3.utils import ALGOS

    from agents.sb3 import ACKTR

    ALGOS["acktr"] = ACKTR
    HYPERPARAMS_SAMPLER["acktr"] = sample_acktr_params
    HYPERPARAMS_CONVERTER["acktr"] = convert_onpolicy_params


def sample_acktr_params(trial: Any, n_actions: int, n_envs: int,
                        additional_args: dict) -> dict[str, Any]:
    """rl-zoo3's Optuna search space for ACKTR (``train --algo acktr -optimize``): A2C's
    on-policy settings (rollout length, discounts, entropy, clip, network) plus K-FAC's step
    size, trust region and damping, around the paper's values (lr 0.25, kl_clip 0.001, damping
    0.01)."""
    from rl_zoo3.hyperparams_opt import convert_onpolicy_params

    sampled = {
        "n_steps": trial.suggest_categorical("n_steps", [5, 10, 20, 40, 80, 160, 320]),
        "one_minus_gamma": trial.suggest_float("one_minus_gamma", 1e-4, 0.03, log=True),
        "one_minus_gae_lambda": trial.suggest_float("one_minus_gae_lambda", 1e-4, 0.1, log=True),
        "learning_rate": trial.suggest_float("learning_rate", 0.01, 1.0, log=True),
        "kl_clip": trial.suggest_float("kl_clip", 1e-4, 0.1, log=True),
        "damping": trial.suggest_float("damping", 1e-3, 1.0, log=True),
        "ent_coef": trial.suggest_float("ent_coef", 1e-8, 0.1, log=True),
        "max_grad_norm": trial.suggest_float("max_grad_norm", 0.3, 2.0),
        "net_arch": trial.suggest_categorical("net_arch", ["small", "medium"]),
        "activation_fn": trial.suggest_categorical("activation_fn", ["tanh", "relu"]),
    }
    trial.set_user_attr("gamma", 1 - sampled["one_minus_gamma"])
    return convert_onpolicy_params(sampled)


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
