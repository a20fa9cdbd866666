"""Every file the command line reads may be bad (tests/bad_inputs.py lists the cases): each
gives exit code 2 and one line, ``train.py: error: ...``, naming the file; never a traceback,
never code execution. In-process for every case, and as real ``python train.py`` processes
for the config cases (they fail before torch loads) and two checkpoint cases."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import train
from tests.bad_inputs import (
    CASES,
    CONFIG_CASES,
    EVAL_CASES,
    MARKER,
    RESUME_CASES,
    WHAT,
    Case,
    make_run,
)

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A finished tiny CartPole run: config.yaml, checkpoint.pt, progress.csv, summary.json."""
    return make_run(tmp_path_factory.mktemp("runs"))


def _check(case: Case, rc: int, err: str, named: str, tmp: Path) -> None:
    assert "Traceback" not in err, err
    assert rc == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("train.py: error: ")]
    assert len(errors) == 1, err
    assert named in errors[0], (named, errors[0])
    assert case.fragment in errors[0], errors[0]
    assert not (tmp / MARKER).exists() and not Path(MARKER).exists()  # nothing was executed


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_naming_the_file_with_exit_code_2(case, run, tmp_path, capsys):
    argv, named = case.build(tmp_path, run)
    capsys.readouterr()
    rc = train.main(argv)
    _check(case, rc, capsys.readouterr().err, named, tmp_path)


def _run_train_py(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
           "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, str(REPO / "train.py"), *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("case", CONFIG_CASES, ids=[c.id for c in CONFIG_CASES])
def test_train_py_process_on_a_bad_config(case, run, tmp_path):
    argv, named = case.build(tmp_path, run)
    proc = _run_train_py(argv, tmp_path)
    _check(case, proc.returncode, proc.stderr, named, tmp_path)
    assert proc.stderr.count("\n") == 1, proc.stderr  # nothing else on stderr


SUBPROCESS_CHECKPOINT_CASES = [c for c in RESUME_CASES + EVAL_CASES
                               if c.id in ("resume-truncated-checkpoint", "eval-pickled-callable")]


@pytest.mark.medium
@pytest.mark.parametrize("case", SUBPROCESS_CHECKPOINT_CASES,
                         ids=[c.id for c in SUBPROCESS_CHECKPOINT_CASES])
def test_train_py_process_on_a_bad_checkpoint(case, run, tmp_path):
    argv, named = case.build(tmp_path, run)
    proc = _run_train_py(argv, tmp_path)
    _check(case, proc.returncode, proc.stderr, named, tmp_path)


def test_the_list_is_long_enough_and_described():
    assert len(CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES)
    assert sorted(WHAT) == sorted(c.id for c in CASES)  # docs/reliability.md's table
