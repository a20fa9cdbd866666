"""Command line: train ACKTR / A2C agents, evaluate checkpoints.

    python train.py                                    # ACKTR on CartPole-v1, minutes on a CPU
    python train.py --algo acktr --env ALE/Pong-v5 --timesteps 10M --seed 0
    python train.py --env HalfCheetah-v5 --set algo.target_kl=0.002
    python train.py --resume runs/CartPole-v1_acktr_s0_...
    python train.py eval --checkpoint runs/.../checkpoint.pt --episodes 10
    python train.py eval --checkpoint runs/... --video cartpole.gif
    python train.py --env HalfCheetah-v5 --eval-every 50k       # best model in RUN_DIR/best.pt
    python train.py eval --checkpoint runs/.../best.pt
    python train.py compare --env HalfCheetah-v5 --algos acktr a2c sb3-a2c trpo --seeds 3 \\
        --timesteps 1M --out results/halfcheetah --jobs 4
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
import time
from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
FAMILY_CONFIGS = {"atari": "atari.yaml", "mujoco": "mujoco.yaml", "gym": "classic.yaml"}


def _train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="train.py",
        description="Train an ACKTR (or A2C) agent. Settings come from a YAML config (by default "
        "the one for the env's family in configs/: atari.yaml, mujoco.yaml or classic.yaml; "
        "mujoco_pixels.yaml with --set env.observation=pixels, a MuJoCo env seen only "
        "through rendered frames), "
        "then the flags below, then --set overrides. Subcommands: `train.py eval --help`, "
        "`train.py compare --help`.",
        # Defaults come from the config, so each help text names the config key instead.
    )
    p.add_argument("--algo", choices=["acktr", "a2c"], help="algorithm (config: algo.algo)")
    p.add_argument("--env", help="gymnasium env id, e.g. CartPole-v1, ALE/Pong-v5, "
                   "HalfCheetah-v5 (config: env.env_id; default CartPole-v1)")
    p.add_argument("--timesteps", help="total env steps, e.g. 200k, 10M, 1e6 "
                   "(config: run.total_timesteps)")
    p.add_argument("--seed", type=int, help="random seed (config: run.seed)")
    p.add_argument("--num-envs", type=int, help="parallel envs (config: env.num_envs)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"],
                   help="where networks and rollouts live (config: run.device)")
    p.add_argument("--config", type=Path, help="YAML config file (default: by env family)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set kfac.lr=0.1 (repeatable)")
    p.add_argument("--logdir", help="parent folder of run directories (config: run.logdir)")
    p.add_argument("--run-name", help="run directory name (default: env_algo_sSEED_TIME)")
    p.add_argument("--resume", type=Path, metavar="RUN_DIR",
                   help="continue the run in RUN_DIR from its checkpoint and config; with env "
                   "snapshots (MuJoCo, classic control, Atari) exactly as if never stopped. "
                   "Works after a kill -9 at any moment: it loses at most one checkpoint "
                   "interval (run.checkpoint_seconds, default 600, and run.checkpoint_every); "
                   "a run killed before its first checkpoint starts over")
    p.add_argument("--eval-every", metavar="STEPS",
                   help="also evaluate every STEPS env steps during training, e.g. 50k, on "
                   "separate envs with the run's normalization statistics; results under eval/ "
                   "in TensorBoard and progress.csv, best model in RUN_DIR/best.pt "
                   "(config: run.eval_every; default 0: only at the end)")
    p.add_argument("--eval-episodes", type=int, metavar="N",
                   help="deterministic episodes per evaluation, 0: none "
                   "(config: run.eval_episodes; default 10)")
    p.add_argument("--threads", metavar="N",
                   help="torch CPU threads, or 'auto': 1 on the CPU, torch's default on CUDA "
                   "(config: run.threads; default auto)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-tensorboard", action="store_true", help="no TensorBoard event files")
    return p


def _eval_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="train.py eval",
        description="Evaluate a checkpoint deterministically on fresh environments, with the "
        "training run's observation-normalization statistics.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--checkpoint", type=Path, required=True,
                   help="checkpoint file (checkpoint.pt, or best.pt: the best evaluated model) "
                   "or run directory (its checkpoint.pt)")
    p.add_argument("--best", action="store_true",
                   help="with a run directory: its best.pt instead of its checkpoint.pt")
    p.add_argument("--episodes", type=int, default=10, help="number of full episodes")
    p.add_argument("--seed", type=int, default=None, help="env seed (default: run seed + 10000)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="device")
    p.add_argument("--stochastic", action="store_true", help="sample actions instead of the mode")
    p.add_argument("--threads", default="auto", metavar="N",
                   help="torch CPU threads, or 'auto': 1 on the CPU, torch's default on CUDA")
    p.add_argument("--video", type=Path, metavar="FILE",
                   help="also record one evaluation episode to FILE (.gif, or .mp4 with "
                   "imageio-ffmpeg); needs imageio, and pygame for classic control")
    return p


def _compare_parser() -> argparse.ArgumentParser:
    from agents.compare import ALGOS, DEFAULT_ALGOS

    p = argparse.ArgumentParser(
        prog="train.py compare",
        description="Compare algorithms on the same envs, seeds, budget and evaluation: our "
        "ACKTR and A2C (family configs in configs/) and the baselines sb3-a2c "
        "(stable-baselines3 A2C), sb3-ppo (stable-baselines3 PPO) and trpo (sb3-contrib TRPO) "
        "with rl-zoo3's tuned "
        "hyperparameters (configs/baselines/), and on request sb3-acktr (our ACKTR as a "
        "stable-baselines3 algorithm, configs/zoo/acktr.yml). Writes results.csv, "
        "curves_<env>.png and summary.md into --out; rerunning the same command skips finished "
        "runs.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--env", nargs="+", required=True, metavar="ENV",
                   help="gymnasium env id(s), e.g. HalfCheetah-v5 ALE/Pong-v5")
    p.add_argument("--algos", nargs="+", default=list(DEFAULT_ALGOS), metavar="ALGO",
                   help=f"algorithms, from: {', '.join(ALGOS)}")
    p.add_argument("--seeds", type=int, default=3, help="number of seeds per algorithm and env")
    p.add_argument("--first-seed", type=int, default=0, help="seeds are first-seed, +1, ...")
    p.add_argument("--timesteps", default="1M", help="env steps per run, e.g. 20k, 1M, 1e6")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--jobs", type=int, default=1, help="runs at once, each in its own process")
    p.add_argument("--threads", type=int, default=1, help="torch/OpenMP threads per run")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None,
                   help="device of every algorithm (default: the env family config's "
                   "run.device, for all)")
    p.add_argument("--eval-episodes", type=int, default=10,
                   help="deterministic episodes per evaluation point")
    p.add_argument("--eval-points", type=int, default=10,
                   help="evaluation points, evenly spaced over the budget")
    p.add_argument("--threshold", action="append", default=[], metavar="ENV=VALUE",
                   help="return threshold for 'steps to threshold' (repeatable; a bare VALUE "
                   "applies to every env; default: configs/baselines/thresholds.yaml)")
    p.add_argument("--data", type=Path, default=None, metavar="DIR",
                   help="folder kept under version control (e.g. docs/data/NAME): each finished "
                   "run's light files (spec, evaluations, progress.csv, summary; no checkpoint) "
                   "are copied there as it finishes, with the report; runs finished there are "
                   "taken instead of redone (another session, an empty --out)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value of our agents (acktr, a2c), e.g. "
                   "--set env.num_envs=16 (repeatable)")
    return p


def compare_main(argv: list[str]) -> int:
    from agents.compare import CompareSettings, parse_thresholds, run_compare
    from agents.config import parse_timesteps

    args = _compare_parser().parse_args(argv)
    settings = CompareSettings(
        envs=args.env, out=args.out, algos=args.algos, seeds=args.seeds,
        first_seed=args.first_seed, timesteps=parse_timesteps(args.timesteps), jobs=args.jobs,
        threads=args.threads, device=args.device, eval_episodes=args.eval_episodes,
        eval_points=args.eval_points, thresholds=parse_thresholds(args.threshold, args.env),
        overrides=args.overrides, data=args.data,
        command="python train.py compare " + " ".join(shlex.quote(a) for a in argv),
    )
    try:
        return run_compare(settings)
    except KeyboardInterrupt:
        print(f"interrupted; rerun the same command to continue (finished runs in {args.out} "
              "are kept)", file=sys.stderr)
        return 130


def _flag_overrides(args: argparse.Namespace) -> list[str]:
    pairs = [
        ("algo.algo", args.algo),
        ("env.env_id", args.env),
        ("run.total_timesteps", args.timesteps),
        ("run.seed", args.seed),
        ("env.num_envs", args.num_envs),
        ("run.device", args.device),
        ("run.logdir", args.logdir),
        ("run.eval_every", args.eval_every),
        ("run.eval_episodes", args.eval_episodes),
        ("run.threads", args.threads),
    ]
    return [f"{k}={v}" for k, v in pairs if v is not None]


def _default_config(env_id: str | None, overrides: list[str] = ()) -> Path:
    from agents.config import family_config_name

    if env_id is None:
        return CONFIG_DIR / FAMILY_CONFIGS["gym"]
    from envs.registry import resolve_kind  # imports gymnasium: only when needed

    return CONFIG_DIR / family_config_name(resolve_kind(env_id, "auto"), overrides)


def _run_name(cfg) -> str:
    env = re.sub(r"[^A-Za-z0-9.-]+", "-", cfg.env.env_id)
    return f"{env}_{cfg.algo.algo}_s{cfg.run.seed}_{time.strftime('%Y%m%d-%H%M%S')}"


def check_run_dir(path: Path) -> None:
    """Raises BadInputError (MissingInputError) unless ``path`` is a run directory to resume:
    a folder holding a non-empty ``config.yaml`` (its checkpoint is checked when loaded)."""
    from agents.errors import BadInputError, MissingInputError

    example = "pass the folder `python train.py` created, e.g. runs/CartPole-v1_acktr_s0_..."
    if not path.exists():
        raise MissingInputError(f"--resume {path}: no such run directory")
    if not path.is_dir():
        raise BadInputError(f"--resume {path}: not a directory; {example}")
    if not (path / "config.yaml").exists():
        raise MissingInputError(f"--resume {path}: not a run directory (no config.yaml); "
                                f"{example}")
    if (path / "config.yaml").is_file() and (path / "config.yaml").stat().st_size == 0:
        raise BadInputError(f"{path / 'config.yaml'}: empty; a run's config.yaml holds the "
                            "resolved config it was started with")


def train_main(argv: list[str]) -> int:
    from agents.config import load_config

    args = _train_parser().parse_args(argv)
    overrides = _flag_overrides(args) + args.overrides
    if args.resume is not None:
        check_run_dir(args.resume)
        cfg = load_config(args.resume / "config.yaml", overrides)
        run_dir = args.resume
    else:
        cfg = load_config(args.config or _default_config(args.env, args.overrides), overrides)
        run_dir = Path(cfg.run.logdir) / (args.run_name or _run_name(cfg))
    # Imported only now: a bad config fails before torch loads.
    from agents.checkpoint import CheckpointWriteError
    from agents.distributed import DistributedError, broadcast_object, setup, shutdown
    from agents.faults import TrainingFault
    from agents.trainer import resolve_device, train

    # Under torchrun: join the process group (checks: same config, world size divides envs).
    dist = setup(cfg, resolve_device(cfg.run.device))
    try:
        run_dir = broadcast_object(run_dir, dist)  # rank 0 names the run directory
        if dist.is_main:
            print(f"run directory: {run_dir}")
        summary = train(cfg, run_dir, resume=args.resume is not None, dist=dist,
                        progress_bar=not args.no_progress, tensorboard=not args.no_tensorboard)
    except (DistributedError, TrainingFault, CheckpointWriteError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        shutdown(dist)
    if not dist.is_main:
        return 130 if summary["interrupted"] else 0
    if summary["interrupted"]:
        print(f"interrupted: checkpoint saved in {run_dir}; continue with "
              f"`python train.py --resume {run_dir}`")
        if "learning_curve" in summary:
            print(f"learning curve so far: {run_dir / summary['learning_curve']}")
        return 130
    print(f"done: {summary['timesteps']} steps in {summary['wall_seconds']:.0f} s "
          f"({summary['fps']:.0f} steps/s)")
    if "final_return_mean" in summary:
        print(f"evaluation over {summary['eval_episodes']} episodes: "
              f"{summary['final_return_mean']:.1f} +- {summary['final_return_std']:.1f}")
        print(f"best model: {run_dir / summary['best_model']} (evaluation return "
              f"{summary['best_return_mean']:.1f} at step {summary['best_timesteps']}); "
              f"`python train.py eval --checkpoint {run_dir / summary['best_model']}`")
    if "learning_curve" in summary:
        print(f"learning curve: {run_dir / summary['learning_curve']}")
    return 0


def _threads_option(value: str) -> int | str:
    """``--threads`` of ``eval``: ``'auto'`` or an integer >= 1."""
    if value == "auto":
        return value
    try:
        threads = int(value)
    except ValueError:
        threads = 0
    if threads < 1:
        raise ValueError(f"--threads must be 'auto' or an integer >= 1, got {value!r}")
    return threads


def eval_main(argv: list[str]) -> int:
    import torch

    from agents.checkpoint import checkpoint_config, checkpoint_file, load_checkpoint, load_into
    from agents.errors import BadInputError
    from agents.eval_callback import BEST_NAME
    from agents.evaluate import check_video_writer, evaluate, make_env_from_config, record_video
    from agents.policies import make_policy
    from agents.threads import resolve_threads
    from agents.trainer import resolve_device
    from envs.registry import resolve_kind

    args = _eval_parser().parse_args(argv)
    if args.episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {args.episodes}")
    if args.video is not None:
        check_video_writer(args.video)
    path = args.checkpoint
    if args.best:
        if not path.is_dir():
            raise BadInputError(f"--best needs a run directory, got the file {path}")
        path = path / BEST_NAME
    path = checkpoint_file(path)
    ckpt = load_checkpoint(path)
    cfg = checkpoint_config(ckpt, path)
    device = resolve_device(args.device)
    threads = resolve_threads(_threads_option(args.threads), device,
                              resolve_kind(cfg.env.env_id, "auto"))
    torch.set_num_threads(threads)
    probe = make_env_from_config(cfg, num_envs=1, training=False)
    try:
        policy = make_policy(probe.observation_space, probe.action_space, cfg.policy).to(device)
        load_into(ckpt, path, policy, probe)  # weights and statistics must fit the config
    finally:
        probe.close()
    policy.eval()
    returns, lengths = evaluate(policy, cfg, args.episodes, device, ckpt["env"], args.seed,
                                deterministic=not args.stochastic)
    print(f"{cfg.env.env_id} ({cfg.algo.algo}, {ckpt['progress']['timesteps']} training steps): "
          f"return {returns.mean():.2f} +- {returns.std():.2f} over {len(returns)} episodes, "
          f"mean length {lengths.mean():.0f}")
    if "eval" in ckpt:
        print(f"(the best model of its run: evaluation return {ckpt['eval']['mean_reward']:.2f} "
              "when it was kept)")
    if args.video is not None:
        ret, length = record_video(policy, cfg, args.video, device, ckpt["env"], args.seed,
                                   deterministic=not args.stochastic)
        print(f"video: {args.video} (one episode: return {ret:.2f}, length {length})")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python train.py`` and the ``acktr-train`` console script."""
    from agents.errors import BadInputError

    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"eval": eval_main, "compare": compare_main}
    command = commands.get(argv[0]) if argv else None
    try:
        if command is not None:
            return command(argv[1:])
        return train_main(argv)
    except (BadInputError, ValueError, ImportError, FileNotFoundError) as e:
        # Bad input (agents.errors.BadInputError names the file or value), a missing package:
        # one line, argparse's style, exit 2. Any other exception is a bug: its traceback shows.
        print(f"train.py: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except SystemExit as e:  # argparse: --help (0) or a usage error (2), already printed
        return e.code if isinstance(e.code, int) else int(e.code is not None)


if __name__ == "__main__":
    sys.exit(main())
