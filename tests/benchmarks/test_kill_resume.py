"""benchmarks.kill_resume: real ``train.py`` processes killed with SIGKILL resume exactly.

The full 10-kill experiment is ``python -m benchmarks.kill_resume --kills 10`` (docs/agents.md);
CI kills three times."""

from __future__ import annotations

import sys

import pytest

from benchmarks.kill_resume import kill_and_resume


@pytest.mark.medium
@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_three_kills_resume_losing_at_most_one_interval_and_match_the_uninterrupted_run(tmp_path):
    lines: list[str] = []
    assert kill_and_resume(tmp_path, kills=3, updates=60, every=5, schedule_seed=1,
                           startup_share=0.34, log=lines.append), "\n".join(lines)
    assert sum(line.startswith("kill ") for line in lines) == 3
    assert "identical" in lines[-2]
