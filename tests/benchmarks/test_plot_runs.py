"""``benchmarks/plot_runs.py`` plots runs written with the old progress.csv columns and the new
ones alike."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.run_log import RunLogger, sb3_row

OLD_RUN = Path(__file__).resolve().parents[2] / "docs" / "data" / "pong_acktr_s0"


@pytest.mark.filterwarnings("ignore:No artists with labels")  # Axes.plot is recorded, not drawn
def test_old_and_new_runs_in_one_plot(tmp_path, capsys, monkeypatch):
    pytest.importorskip("matplotlib")
    from benchmarks import plot_runs

    new_run = tmp_path / "new"
    new_run.mkdir()
    log = RunLogger(new_run, enabled_tensorboard=False)
    for t, ret in ((100, -21.0), (200, -20.0)):
        log.log(t, sb3_row({"update": t // 100, "timesteps": t, "return_mean": ret}))
    log.close()
    lines = []
    monkeypatch.setattr(plot_runs.plt.Axes, "plot",
                        lambda self, x, y, **kw: lines.append((list(x), list(y))))
    out = tmp_path / "curves.png"
    plot_runs.main([str(OLD_RUN), str(new_run), "--out", str(out)])
    assert f"wrote {out}" in capsys.readouterr().out
    (old_x, old_y), new = lines
    assert new == ([100, 200], [-21.0, -20.0])
    assert old_x[0] == 25600 and old_y[0] == -21.0  # the first row with an episode
