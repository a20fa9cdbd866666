"""The bad-input list: files the command line and the library read, each bad in one way.

Each case builds its bad file in a temporary folder (from a real tiny run where it needs one)
and says which command line reads it, which path the error must name and a fragment of the
message. ``tests/test_train_bad_inputs.py`` runs every case through ``train.py`` (exit code 2,
one line ``train.py: error: ...`` naming the file, no traceback, nothing executed);
``tests/agents/test_files.py`` and ``test_checkpoint.py`` call the loaders directly.
docs/reliability.md tables the same list.
"""

from __future__ import annotations

import os
import pickle
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

MARKER = "PWNED"
"""A hostile file tries to create this file in the case's folder; it must never appear."""


@dataclass(frozen=True)
class Case:
    """One bad input: ``build(tmp, run)`` makes it and returns ``(argv, named)``: the
    ``train.py`` arguments and the path (or text) the error must name."""

    id: str
    build: Callable[[Path, Path], tuple[list[str], str]]
    fragment: str
    """Part of the one-line message."""


class _Hostile:
    """Unpickling this runs ``os.system(command)``: what a hostile checkpoint holds."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


def billion_laughs(levels: int = 9) -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        refs = ", ".join([f"*a{i - 1}"] * 9)
        lines.append(f"a{i}: &a{i} [{refs}]")
    return "\n".join(lines) + "\n"


# --- builders ------------------------------------------------------------------------------------


def _config(content: str | bytes) -> Callable[[Path, Path], tuple[list[str], str]]:
    def build(tmp: Path, run: Path) -> tuple[list[str], str]:
        path = tmp / "bad.yaml"
        path.write_bytes(content if isinstance(content, bytes) else
                         content.replace("{tmp}", str(tmp)).encode())
        return ["--config", str(path)], str(path)

    return build


def _config_path(make: Callable[[Path, Path], Path]) -> Callable[[Path, Path], tuple[list, str]]:
    def build(tmp: Path, run: Path) -> tuple[list[str], str]:
        path = make(tmp, run)
        return ["--config", str(path)], str(path)

    return build


def _sparse(size: int) -> Callable[[Path, Path], Path]:
    def make(tmp: Path, run: Path) -> Path:
        path = tmp / "huge.yaml"
        with path.open("wb") as f:
            f.truncate(size)
        return path

    return make


def _override(text: str) -> Callable[[Path, Path], tuple[list[str], str]]:
    def build(tmp: Path, run: Path) -> tuple[list[str], str]:
        item = text.replace("{tmp}", str(tmp))
        return ["--set", item, "--logdir", str(tmp / "runs")], "invalid override"

    return build


def copy_run(tmp: Path, run: Path) -> Path:
    target = tmp / "run"
    shutil.copytree(run, target)
    return target


def real_checkpoint(run: Path) -> dict:
    return torch.load(run / "checkpoint.pt", weights_only=True)


def _resume(change: Callable[[Path], Path | None], *extra: str) -> Callable:
    """``--resume`` of a copy of the run after ``change(copy)`` (which returns the bad file,
    or None when the folder itself is named)."""

    def build(tmp: Path, run: Path) -> tuple[list[str], str]:
        target = copy_run(tmp, run)
        named = change(target) or target
        return ["--resume", str(target), "--no-progress", "--no-tensorboard", *extra], str(named)

    return build


def _write(name: str, content: bytes | str) -> Callable[[Path], Path]:
    """Write ``content`` (``{dir}`` replaced by the folder's parent) to ``name`` in a folder."""

    def change(folder: Path) -> Path:
        path = folder / name
        path.write_bytes(content if isinstance(content, bytes) else
                         content.replace("{dir}", str(folder.parent)).encode())
        return path

    return change


def _truncate(name: str) -> Callable[[Path], Path]:
    def change(run: Path) -> Path:
        path = run / name
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        return path

    return change


def _edit_checkpoint(edit: Callable[[dict], object]) -> Callable[[Path], Path]:
    def change(run: Path) -> Path:
        path = run / "checkpoint.pt"
        state = real_checkpoint(run)
        state = edit(state) or state
        torch.save(state, path)
        return path

    return change


def _without(key: str) -> Callable[[dict], dict]:
    return lambda state: {k: v for k, v in state.items() if k != key}


def _with(**entries: object) -> Callable[[dict], dict]:
    return lambda state: {**state, **entries}


def _wrong_weights(state: dict) -> dict:
    policy = dict(state["policy"])
    name = next(iter(policy))
    policy[name] = torch.zeros(3, 3)
    return {**state, "policy": policy}


def _bad_stored_config(state: dict) -> dict:
    config = {**state["config"], "kfac": {**state["config"]["kfac"], "lr": -1.0}}
    return {**state, "config": config}


def write_foreign(kind: str, path: Path) -> None:
    """Another program's file (or a hostile one) at ``path``."""
    if kind == "png":
        path.write_bytes(PNG)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "zip":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("notes.txt", "not a checkpoint")
    elif kind == "pickle":
        path.write_bytes(pickle.dumps({"policy": [1, 2, 3]}))
    elif kind == "hostile":
        torch.save({"policy": _Hostile(f"touch {path.parent / MARKER}")}, path)
    elif kind == "state_dict":
        torch.save(torch.nn.Linear(2, 2).state_dict(), path)
    elif kind == "list":
        torch.save([torch.zeros(2)], path)
    else:  # pragma: no cover
        raise ValueError(kind)


def _eval(make: Callable[[Path, Path], Path], named: Callable[[Path], Path] | None = None):
    def build(tmp: Path, run: Path) -> tuple[list[str], str]:
        path = make(tmp, run)
        return ["eval", "--checkpoint", str(path), "--episodes", "1"], str(
            named(path) if named else path)

    return build


def _foreign(kind: str) -> Callable[[Path, Path], Path]:
    def make(tmp: Path, run: Path) -> Path:
        path = tmp / "checkpoint.pt"
        write_foreign(kind, path)
        return path

    return make


def _changed(change: Callable[[Path], Path]) -> Callable[[Path, Path], Path]:
    return lambda tmp, run: change(copy_run(tmp, run))


def _compare(change: Callable[[Path], Path]) -> Callable[[Path, Path], tuple[list[str], str]]:
    def build(tmp: Path, run: Path) -> tuple[list[str], str]:
        out = tmp / "out"
        out.mkdir()
        named = change(out)
        return ["compare", "--env", "CartPole-v1", "--algos", "a2c", "--seeds", "1",
                "--timesteps", "256", "--out", str(out)], str(named)

    return build


def _out_is_a_file(out: Path) -> Path:
    out.rmdir()
    out.write_text("results\n")
    return out


def _done_json(content: str) -> Callable[[Path], Path]:
    def change(out: Path) -> Path:
        run_dir = out / "runs" / "CartPole-v1" / "a2c" / "seed0"
        run_dir.mkdir(parents=True)
        (run_dir / "spec.json").write_text("{}")
        path = run_dir / "done.json"
        path.write_text(content)
        return path

    return change


def make_run(logdir: Path) -> Path:
    """A finished 64-step CartPole run in ``logdir/run`` (config.yaml, checkpoint.pt,
    progress.csv with a row per update, summary.json): the files the cases damage."""
    import train

    assert train.main(["--timesteps", "64", "--num-envs", "2", "--set", "algo.num_steps=8",
                       "--set", "run.eval_episodes=1", "--set", "run.log_interval=1",
                       "--no-progress", "--no-tensorboard", "--logdir", str(logdir),
                       "--run-name", "run"]) == 0
    return logdir / "run"


# --- the list ------------------------------------------------------------------------------------

CONFIG_CASES = [
    Case("config-malformed-yaml", _config("env: [1, 2\n"), "not valid YAML"),
    Case("config-python-tag", _config(
        "!!python/object/apply:os.system ['touch {tmp}/" + MARKER + "']\n"),
        "'!!python/object/apply:os.system' at line 1, column 1 is not allowed"),
    Case("config-python-tag-in-value", _config("env:\n  env_id: !!python/name:os.system\n"),
         "'!!python/name:os.system' at line 2"),
    Case("config-png", _config(PNG), "not UTF-8 text (byte 0x89 at offset 0); it looks like a "
         "PNG image"),
    Case("config-is-a-checkpoint", _config_path(lambda tmp, run: run / "checkpoint.pt"),
         "it looks like a zip archive"),
    Case("config-directory", _config_path(lambda tmp, run: tmp), "is a directory"),
    Case("config-missing", _config_path(lambda tmp, run: tmp / "nowhere.yaml"),
         "no such config file"),
    Case("config-top-level-list", _config("- env\n- kfac\n"),
         "a config file holds a mapping of sections (env, policy, kfac, critic_kfac, algo, run) "
         "at the top level; got list ['env', 'kfac']"),
    Case("config-top-level-scalar", _config("42\n"), "got int 42"),
    Case("config-unknown-key", _config("kfac:\n  lrr: 0.1\n"),
         "unknown key 'kfac.lrr' in kfac; valid keys: lr, momentum"),
    Case("config-wrong-type", _config("env:\n  num_envs: many\n"),
         "env.num_envs: invalid value 'many'; expected an integer"),
    Case("config-section-not-mapping", _config("env: 3\n"), "env: expected a mapping of keys"),
    Case("config-duplicate-key", _config("kfac:\n  lr: 0.1\n  lr: 0.2\n"),
         "found duplicate key 'lr' at line 3"),
    Case("config-alias-bomb", _config(billion_laughs()), "more than 100,000 values"),
    Case("config-deep-nesting", _config("a: " + "[" * 3000 + "]" * 3000 + "\n"),
         "nested deeper than"),
    Case("config-self-reference", _config("a: &x [*x]\n"), "nested deeper than 64 levels"),
    Case("config-control-character", _config("env:\n  env_id: Cart\x07Pole\n"),
         "character 0x07 at offset 19 is not allowed in YAML text"),
    Case("config-too-large", _config_path(_sparse(8 * 2**20)),
         "too large for a config file (at most 1,048,576)"),
    Case("set-python-tag", _override(
        "env.env_id=!!python/object/apply:os.system ['touch {tmp}/" + MARKER + "']"),
        "'!!python/object/apply:os.system' at line 1, column 1 is not allowed"),
    Case("set-malformed-yaml", _override("kfac.lr=[1,"), "not valid YAML"),
]
"""Config files (``--config``) and ``--set`` values: fail before torch is imported."""

RESUME_CASES = [
    Case("resume-missing", lambda tmp, run: (["--resume", str(tmp / "gone")], str(tmp / "gone")),
         "no such run directory"),
    Case("resume-a-file", lambda tmp, run: (["--resume", str(run / "config.yaml")],
                                            str(run / "config.yaml")), "not a directory"),
    Case("resume-no-config", _resume(lambda r: (r / "config.yaml").unlink()),
         "not a run directory (no config.yaml)"),
    Case("resume-malformed-config", _resume(_write("config.yaml", "run: {seed: 1\n")),
         "not valid YAML"),
    Case("resume-empty-config", _resume(_write("config.yaml", "")),
         "empty; a run's config.yaml holds the resolved config it was started with"),
    Case("resume-config-python-tag", _resume(_write(
        "config.yaml", "run: !!python/object/apply:os.system ['touch {dir}/" + MARKER + "']\n")),
        "is not allowed"),
    Case("resume-truncated-checkpoint", _resume(_truncate("checkpoint.pt")),
         "truncated or corrupt checkpoint"),
    Case("resume-empty-checkpoint", _resume(_write("checkpoint.pt", b"")),
         "empty file, not a checkpoint"),
    Case("resume-checkpoint-without-optimizers",
         _resume(_edit_checkpoint(_without("optimizers"))), "no 'optimizers' entry"),
    Case("resume-optimizer-state-garbage", _resume(_edit_checkpoint(
        lambda s: {**s, "optimizers": {k: {"x": 1} for k in s["optimizers"]}})),
        "its saved state does not fit this run and cannot be restored (ValueError"),
    Case("resume-rng-state-garbage", _resume(_edit_checkpoint(
        lambda s: {**s, "rng": {k: torch.zeros(3) for k in s["rng"]}})),
        "cannot be restored (TypeError: RNG state must be a torch.ByteTensor)"),
    Case("resume-observation-shape", _resume(_edit_checkpoint(_with(obs=torch.zeros(7)))),
         "saved observations of shape (7,), the envs give (2, 4)"),
    Case("resume-policy-extra-weight", _resume(_edit_checkpoint(
        lambda s: {**s, "policy": {**s["policy"], "extra": torch.zeros(1)}})),
        'Unexpected key(s) in state_dict: "extra"'),
    Case("resume-other-architecture", _resume(lambda r: r / "checkpoint.pt", "--set",
                                              "policy.hidden_sizes=[32]"),
         "cannot resume with other settings than the checkpoint's (policy.hidden_sizes [64, 64] "
         "there, [32] now)"),
    Case("resume-progress-csv-binary", _resume(_write("progress.csv", PNG)),
         "not UTF-8 text"),
    Case("resume-progress-csv-bad-number", _resume(_write(
        "progress.csv", "update,timesteps,fps\n1,16,3.0\n2,abc,3.0\n")),
        "line 3, column 'timesteps': 'abc' is not a whole number"),
    Case("resume-progress-csv-foreign", _resume(_write("progress.csv", "a,b\n1,2\n")),
         "missing column(s) timesteps"),
]
"""``--resume RUN_DIR``: the folder, its ``config.yaml``, ``checkpoint.pt``, ``progress.csv``."""

EVAL_CASES = [
    Case("eval-truncated", _eval(_changed(_truncate("checkpoint.pt"))),
         "truncated or corrupt checkpoint"),
    Case("eval-empty", _eval(_foreign("empty")), "empty file, not a checkpoint"),
    Case("eval-png", _eval(_foreign("png")),
         "not a checkpoint of this project: not a torch checkpoint (those are zip archives); "
         "it looks like a PNG image"),
    Case("eval-foreign-zip", _eval(_foreign("zip")),
         "a zip archive but not a torch checkpoint (it holds notes.txt)"),
    Case("eval-plain-pickle", _eval(_foreign("pickle")), "it looks like a Python pickle"),
    Case("eval-pickled-callable", _eval(_foreign("hostile")),
         "refused: it holds a pickled Python object (posix.system)"),
    Case("eval-model-state-dict", _eval(_foreign("state_dict")),
         "not a checkpoint of this project: its entries are 'weight', 'bias'"),
    Case("eval-list", _eval(_foreign("list")), "it holds a list"),
    Case("eval-missing", _eval(lambda tmp, run: tmp / "nowhere.pt"), "no checkpoint at"),
    Case("eval-directory-without-checkpoint", _eval(lambda tmp, run: tmp, lambda p: p),
         "is a directory without one"),
    Case("eval-newer-format", _eval(_changed(_edit_checkpoint(_with(format_version=99)))),
         "checkpoint format 99 was written by a newer version of this project"),
    Case("eval-wrong-entry-type", _eval(_changed(_edit_checkpoint(_with(progress="x")))),
         "checkpoint entry 'progress' is a str; expected a mapping of counters"),
    Case("eval-bad-progress", _eval(_changed(_edit_checkpoint(
        lambda s: {**s, "progress": {**s["progress"], "timesteps": "many"}}))),
        "progress['timesteps'] is 'many'; expected int"),
    Case("eval-invalid-stored-config", _eval(_changed(_edit_checkpoint(_bad_stored_config))),
         "the config stored in the checkpoint is invalid: kfac.lr: invalid value -1.0"),
    Case("eval-weights-do-not-fit", _eval(_changed(_edit_checkpoint(_wrong_weights))),
         "the policy weights do not fit the network of its config"),
]
"""``train.py eval --checkpoint``: checkpoint files and run directories."""

COMPARE_CASES = [
    Case("compare-record-malformed", _compare(_write("compare.json", "{commands: [")),
         "not a valid compare record file"),
    Case("compare-record-foreign", _compare(_write("compare.json", '{"commands": 3}')),
         "not a compare record: 'commands' must be a list of strings"),
    Case("compare-done-not-a-record", _compare(_done_json("[1, 2]")),
         "a finished-run record file holds a mapping of keys at the top level; got list [1, 2]; "
         "remove"),
    Case("compare-out-is-a-file", _compare(_out_is_a_file), "exists and is not a folder"),
]
"""``train.py compare --out``: an earlier output folder's files."""

CASES = CONFIG_CASES + RESUME_CASES + EVAL_CASES + COMPARE_CASES

WHAT: dict[str, str] = {
    "config-malformed-yaml": "`--config`: YAML with an unclosed `[`",
    "config-python-tag": "`--config`: `!!python/object/apply:os.system [...]` (would run a shell)",
    "config-python-tag-in-value": "`--config`: a value tagged `!!python/name:os.system`",
    "config-png": "`--config`: a PNG image",
    "config-is-a-checkpoint": "`--config`: a run's `checkpoint.pt`",
    "config-directory": "`--config`: a directory",
    "config-missing": "`--config`: no such file",
    "config-top-level-list": "`--config`: a YAML list instead of sections",
    "config-top-level-scalar": "`--config`: a bare number",
    "config-unknown-key": "`--config`: a misspelt key (`kfac.lrr`)",
    "config-wrong-type": "`--config`: `num_envs: many`",
    "config-section-not-mapping": "`--config`: `env: 3`",
    "config-duplicate-key": "`--config`: `lr` twice in one section",
    "config-alias-bomb": "`--config`: YAML aliases expanding to 9^9 values (billion laughs)",
    "config-deep-nesting": "`--config`: 3000 nested lists",
    "config-self-reference": "`--config`: an alias inside itself (`&x [*x]`)",
    "config-control-character": "`--config`: a control character (BEL)",
    "config-too-large": "`--config`: an 8 MiB file",
    "set-python-tag": "`--set` value with a Python tag",
    "set-malformed-yaml": "`--set kfac.lr=[1,`",
    "resume-missing": "`--resume`: no such folder",
    "resume-a-file": "`--resume`: a file, not a run folder",
    "resume-no-config": "`--resume`: a folder without `config.yaml`",
    "resume-malformed-config": "`--resume`: `config.yaml` malformed",
    "resume-empty-config": "`--resume`: `config.yaml` empty",
    "resume-config-python-tag": "`--resume`: `config.yaml` with a Python tag",
    "resume-truncated-checkpoint": "`--resume`: `checkpoint.pt` cut in half",
    "resume-empty-checkpoint": "`--resume`: `checkpoint.pt` empty",
    "resume-checkpoint-without-optimizers": "`--resume`: checkpoint without optimizer state",
    "resume-optimizer-state-garbage": "`--resume`: optimizer state of the wrong shape",
    "resume-rng-state-garbage": "`--resume`: RNG state of the wrong type",
    "resume-observation-shape": "`--resume`: saved observations of the wrong shape",
    "resume-policy-extra-weight": "`--resume`: a weight the network does not have",
    "resume-other-architecture": "`--resume ... --set policy.hidden_sizes=[32]`",
    "resume-progress-csv-binary": "`--resume`: `progress.csv` is a PNG",
    "resume-progress-csv-bad-number": "`--resume`: `progress.csv` with `abc` as timesteps",
    "resume-progress-csv-foreign": "`--resume`: another program's CSV as `progress.csv`",
    "eval-truncated": "`eval --checkpoint`: cut in half",
    "eval-empty": "`eval --checkpoint`: empty file",
    "eval-png": "`eval --checkpoint`: a PNG image",
    "eval-foreign-zip": "`eval --checkpoint`: a zip archive of something else",
    "eval-plain-pickle": "`eval --checkpoint`: a plain Python pickle",
    "eval-pickled-callable": "`eval --checkpoint`: torch file pickling `os.system` (hostile)",
    "eval-model-state-dict": "`eval --checkpoint`: a bare `nn.Linear` state_dict",
    "eval-list": "`eval --checkpoint`: a torch file holding a list",
    "eval-missing": "`eval --checkpoint`: no such file",
    "eval-directory-without-checkpoint": "`eval --checkpoint`: a folder without one",
    "eval-newer-format": "`eval --checkpoint`: `format_version: 99`",
    "eval-wrong-entry-type": "`eval --checkpoint`: `progress` is a string",
    "eval-bad-progress": "`eval --checkpoint`: `progress.timesteps` is a string",
    "eval-invalid-stored-config": "`eval --checkpoint`: stored config with `kfac.lr: -1`",
    "eval-weights-do-not-fit": "`eval --checkpoint`: a weight of the wrong shape",
    "compare-record-malformed": "`compare --out`: `compare.json` malformed",
    "compare-record-foreign": "`compare --out`: `compare.json` of another shape",
    "compare-done-not-a-record": "`compare --out`: a run's `done.json` is a list",
    "compare-out-is-a-file": "`compare --out`: a file, not a folder",
}
"""What is bad in each case, for the table in docs/reliability.md."""


# --- the table in docs/reliability.md ------------------------------------------------------------


def markdown_table() -> str:
    """Run every case through ``train.main`` (after a tiny CartPole run to damage) and return
    the markdown table of docs/reliability.md: case, exit code, the one line on stderr."""
    import contextlib
    import io
    import tempfile
    import warnings

    import train

    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as logdir:
        with contextlib.redirect_stdout(io.StringIO()):
            run = make_run(Path(logdir))
        lines = ["| case | what is bad | exit | stderr (one line; `T/` is the case's folder) |",
                 "|---|---|---|---|"]
        for case in CASES:
            with tempfile.TemporaryDirectory() as tmp:
                argv, _ = case.build(Path(tmp), run)
                err = io.StringIO()
                with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                    code = train.main(argv)
                text = err.getvalue().strip().replace(tmp, "T").replace(str(run), "T/run")
                text = text.replace("|", "\\|")
                lines.append(f"| {case.id} | {WHAT[case.id]} | {code} | `` {text} `` |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())
