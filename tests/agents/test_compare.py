"""``train.py compare``: grid, summary computations on synthetic curves, results.csv schema,
checks before anything starts, resume (skipping finished runs), failures, a smoke run."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from agents import compare
from agents.compare import (
    ALGOS,
    CompareSettings,
    RunSpec,
    check_algos,
    eval_grid,
    parse_thresholds,
    run_status,
    segment_updates,
)
from agents.compare_report import (
    OPTIONAL_FIELDS,
    RESULT_FIELDS,
    area_under_curve,
    markdown_table,
    read_results,
    summarize,
    timesteps_to_threshold,
    write_results,
)
from agents.errors import BadInputError
from agents.trainer import train
from tests.agents.test_files import strict_loads

pytestmark = pytest.mark.usefixtures("one_thread")


class _MultiDiscreteEnv(gym.Env):
    """A vector-observation env with a MultiDiscrete action space (SB3 takes it, we do not)."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    action_space = gym.spaces.MultiDiscrete([2, 3])

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(3, np.float32), {}

    def step(self, action):
        return np.zeros(3, np.float32), 0.0, True, False, {}


class _DictObservationEnv(_MultiDiscreteEnv):
    """Dict observations (neither SB3's MlpPolicy nor our policies take them)."""

    observation_space = gym.spaces.Dict({"x": gym.spaces.Box(-1.0, 1.0, (3,), np.float32)})
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        return {"x": np.zeros(3, np.float32)}, {}

    def step(self, action):
        return {"x": np.zeros(3, np.float32)}, 0.0, True, False, {}


gym.register("CompareTest/MultiDiscrete-v0", entry_point=_MultiDiscreteEnv)
gym.register("CompareTest/DictObs-v0", entry_point=_DictObservationEnv)


# --- grid ----------------------------------------------------------------------------------


def test_eval_grid_is_evenly_spaced_and_ends_at_the_budget():
    assert eval_grid(1_000_000, 10) == tuple(range(100_000, 1_000_001, 100_000))
    assert eval_grid(5000, 3) == (1667, 3333, 5000)
    assert eval_grid(3, 10) == (1, 2, 3)  # duplicates dropped
    with pytest.raises(ValueError, match="eval points must be >= 1, got 0"):
        eval_grid(100, 0)


def test_segments_end_at_the_first_update_boundary_at_or_past_each_point():
    assert segment_updates((1667, 3333, 5000), 128) == [14, 27, 40]
    assert segment_updates((100, 200, 2500), 2500) == [1]
    assert segment_updates((1, 2), 128) == [1]


# --- summary computations on synthetic curves -------------------------------------------------


def test_area_under_a_linear_curve_is_its_mean():
    grid = np.linspace(100, 1000, 10)
    # R(t) = t / 10 on [100, 1000]: mean (10 + 100) / 2 = 55, exact for the trapezoid rule
    assert area_under_curve(grid, grid / 10, grid) == pytest.approx(55.0)
    assert area_under_curve([100, 1000], [3.0, 3.0], grid) == pytest.approx(3.0)
    assert area_under_curve([500], [7.0], [500]) == 7.0


def test_area_under_curve_interpolates_points_off_the_grid():
    # Evaluated at 0, 20, 40 (a batch of 20 past a grid of 10, 30): R = t, interpolated to the
    # grid points 10 and 30 it is 10 and 30, mean 20.
    assert area_under_curve([0, 20, 40], [0.0, 20.0, 40.0], [10, 30]) == pytest.approx(20.0)
    # a step from 0 to 100 between 10 and 20 on a grid of 0..30: trapezoids 0, 50, 100 -> 50
    assert area_under_curve([0, 10, 20, 30], [0, 0, 100, 100], [0, 10, 20, 30]) == \
        pytest.approx(50.0)


def test_timesteps_to_threshold_is_the_first_point_at_or_above():
    assert timesteps_to_threshold([10, 20, 30], [1.0, 5.0, 4.0], 5.0) == 20.0
    assert timesteps_to_threshold([10, 20, 30], [1.0, 2.0, 3.0], 5.0) is None


def _rows(algo, env, seed, points, wall_per_step=0.01):
    return [{"algo": algo, "env": env, "seed": seed, "timesteps": t, "eval_return_mean": y,
             "eval_return_std": 1.0, "wall_seconds": t * wall_per_step} for t, y in points]


def test_summarize_over_seeds():
    grid = [100, 200, 300]
    rows = (_rows("acktr", "E", 0, [(100, 0.0), (200, 10.0), (300, 20.0)])
            + _rows("acktr", "E", 1, [(100, 10.0), (200, 30.0), (300, 40.0)], 0.02)
            + _rows("a2c", "E", 0, [(100, 0.0), (200, 0.0), (300, 0.0)]))
    by_algo = {s.algo: s for s in summarize(rows, grid, {"E": 25.0})}
    s = by_algo["acktr"]
    assert (s.seeds, s.final_mean, s.final_std) == (2, 30.0, 10.0)
    # AUCs: seed 0 (0/2 + 10 + 20/2) / 2 = 10; seed 1 (5 + 30 + 20) / 2 = 27.5
    assert s.auc_mean == pytest.approx((10.0 + 27.5) / 2)
    assert s.auc_std == pytest.approx(8.75)
    assert (s.threshold_median, s.threshold_reached) == (200.0, 1)  # only seed 1 reached 25
    assert s.wall_seconds == pytest.approx((3.0 + 6.0) / 2)
    assert s.fps == pytest.approx((100 + 50) / 2)
    assert by_algo["a2c"].threshold_median is None and by_algo["a2c"].threshold_reached == 0


def test_final_training_return_is_summarized_and_shown_when_known():
    grid = [100, 200]
    rows = ([{**r, "train_return_mean": v} for r, v in zip(
                _rows("acktr", "E", 0, [(100, 0.0), (200, 1.0)]), [5.0, 7.0], strict=True)]
            + [{**r, "train_return_mean": v} for r, v in zip(
                _rows("acktr", "E", 1, [(200, 2.0), (100, 1.0)]), [11.0, 3.0], strict=True)]
            + _rows("a2c", "E", 0, [(100, 0.0), (200, 0.0)]))  # a file without the column
    by_algo = {s.algo: s for s in summarize(rows, grid)}
    assert (by_algo["acktr"].train_final_mean, by_algo["acktr"].train_final_std) == (9.0, 2.0)
    assert math.isnan(by_algo["a2c"].train_final_mean)
    table = markdown_table(list(by_algo.values()))
    assert "training return, last 100 episodes" in table and "9.0 +- 2.0" in table
    assert "| a2c | 1 | 0.0 +- 0.0 | n/a |" in table
    assert "training return" not in markdown_table(summarize(_rows("a2c", "E", 0, [(100, 1.0)]),
                                                             [100]))


def test_results_csv_has_the_documented_columns(tmp_path):
    rows = _rows("trpo", "E", 1, [(200, 2.0), (100, 1.0)]) + _rows("a2c", "E", 0, [(100, 3.0)])
    write_results(rows, tmp_path / "results.csv")
    with (tmp_path / "results.csv").open() as f:
        header = next(csv.reader(f))
    assert tuple(header) == RESULT_FIELDS + OPTIONAL_FIELDS == (
        "algo", "env", "seed", "timesteps", "eval_return_mean", "eval_return_std",
        "wall_seconds", "train_return_mean")
    back = read_results(tmp_path / "results.csv")
    assert [(r["algo"], r["timesteps"]) for r in back] == [("a2c", 100), ("trpo", 100),
                                                          ("trpo", 200)]
    assert back[2]["eval_return_mean"] == 2.0 and back[2]["wall_seconds"] == 2.0
    assert all(math.isnan(r["train_return_mean"]) for r in back)  # rows without it: NaN


def test_training_return_column_round_trips_and_old_files_still_read(tmp_path):
    rows = [{**r, "train_return_mean": 7.5} for r in _rows("acktr", "E", 0, [(100, 1.0)])]
    write_results(rows, tmp_path / "results.csv")
    assert read_results(tmp_path / "results.csv")[0]["train_return_mean"] == 7.5
    old = tmp_path / "old.csv"  # written before the column existed
    old.write_text(",".join(RESULT_FIELDS) + "\nacktr,E,0,100,1.0,0.0,1.0\n")
    assert math.isnan(read_results(old)[0]["train_return_mean"])


def test_reading_results_without_a_column_names_it(tmp_path):
    (tmp_path / "r.csv").write_text("algo,env,seed,timesteps\n")
    with pytest.raises(ValueError, match="missing column.*eval_return_mean"):
        read_results(tmp_path / "r.csv")


# --- checks before anything starts -------------------------------------------------------------


def test_unknown_algorithm_names_it_and_the_allowed_ones():
    with pytest.raises(ValueError) as err:
        check_algos(["acktr", "ppo"])
    assert "'ppo'" in str(err.value) and "acktr, a2c, sb3-a2c, trpo" in str(err.value)
    assert check_algos(["a2c", "a2c", "trpo"]) == ["a2c", "trpo"]


def _settings(tmp_path, **kw):
    base = dict(envs=["CartPole-v1"], out=tmp_path / "out", algos=["a2c"], seeds=1,
                timesteps=256, eval_points=2, eval_episodes=1)
    return CompareSettings(**{**base, **kw})


def test_env_an_algorithm_cannot_handle_is_an_error_before_anything_starts(tmp_path):
    s = _settings(tmp_path, envs=["CompareTest/MultiDiscrete-v0"], algos=["sb3-a2c", "acktr"])
    with pytest.raises(ValueError) as err:
        compare.run_compare(s, log=lambda m: None)
    assert str(err.value).startswith("acktr cannot handle 'CompareTest/MultiDiscrete-v0'")
    assert "MultiDiscrete" in str(err.value)
    s = _settings(tmp_path, envs=["CompareTest/DictObs-v0"], algos=["trpo"])
    with pytest.raises(ValueError, match="trpo cannot handle 'CompareTest/DictObs-v0' here: "
                       "observation space Dict"):
        compare.run_compare(s, log=lambda m: None)
    assert not s.out.exists()


def test_unknown_env_and_bad_numbers_are_errors_before_anything_starts(tmp_path):
    with pytest.raises(ValueError, match="CartPol-v1"):
        compare.run_compare(_settings(tmp_path, envs=["CartPol-v1"]), log=lambda m: None)
    with pytest.raises(ValueError, match="--jobs must be >= 1, got 0"):
        compare.run_compare(_settings(tmp_path, jobs=0), log=lambda m: None)
    with pytest.raises(ValueError, match="kfac.lr"):
        compare.run_compare(_settings(tmp_path, overrides=["kfac.lr=-1"]), log=lambda m: None)
    assert not (tmp_path / "out").exists()


def test_thresholds_from_flags():
    assert parse_thresholds(["A=1.5", "B=2"], ["A", "B"]) == {"A": 1.5, "B": 2.0}
    assert parse_thresholds(["3"], ["A", "B"]) == {"A": 3.0, "B": 3.0}
    with pytest.raises(ValueError, match="env 'C' is not compared"):
        parse_thresholds(["C=1"], ["A"])
    with pytest.raises(ValueError, match="expected ENV=NUMBER"):
        parse_thresholds(["A=x"], ["A"])


def test_default_thresholds_come_from_data_then_gymnasium():
    t = compare.load_thresholds(["CartPole-v1", "HalfCheetah-v5", "Pendulum-v1", "Acrobot-v1"],
                                {"HalfCheetah-v5": 10.0})
    assert t["CartPole-v1"] == 475.0 and t["HalfCheetah-v5"] == 10.0
    assert t["Acrobot-v1"] == gym.spec("Acrobot-v1").reward_threshold
    assert "Pendulum-v1" not in t  # none anywhere


# --- runs, resume, failures ---------------------------------------------------------------------


def _spec(**kw) -> RunSpec:
    base = dict(algo="a2c", env_id="CartPole-v1", seed=0, timesteps=256, grid=(128, 256),
                eval_episodes=2)
    return RunSpec(**{**base, **kw})


def test_one_run_writes_a_row_per_evaluation_point_and_a_done_marker(tmp_path):
    spec = _spec()
    done = compare.run_one(spec, tmp_path / "r")
    rows = read_results(tmp_path / "r" / "evals.csv")
    assert [r["timesteps"] for r in rows] == [128, 256]  # classic config: 8 envs x 16 steps
    assert all(r["algo"] == "a2c" and r["seed"] == 0 for r in rows)
    assert rows[1]["wall_seconds"] > rows[0]["wall_seconds"] > 0
    assert strict_loads((tmp_path / "r" / "done.json").read_text())["spec"] == spec.comparable()
    strict_loads((tmp_path / "r" / "spec.json").read_text())
    assert done["timesteps"] == 256 and done["notes"] == []


def test_our_runs_are_evaluated_like_the_trainers_final_evaluation(tmp_path):
    # The last point's evaluation is the trainer's own (same function, episodes and seed).
    compare.run_one(_spec(algo="acktr"), tmp_path / "r")
    summary = strict_loads((tmp_path / "r" / "train" / "summary.json").read_text())
    last = read_results(tmp_path / "r" / "evals.csv")[-1]
    assert last["eval_return_mean"] == summary["final_return_mean"]
    assert summary["eval_episodes"] == 2
    # the training return beside it: the trainer's mean of its last 100 finished episodes
    assert np.isfinite(last["train_return_mean"])
    assert last["train_return_mean"] == pytest.approx(summary["train_return_mean"])


def test_runs_from_before_the_training_return_column_take_it_from_the_summary(tmp_path):
    spec = _spec(algo="acktr")
    compare.run_one(spec, tmp_path / "runs" / spec.key)
    run_dir = tmp_path / "runs" / spec.key
    rows = read_results(run_dir / "evals.csv")
    with (run_dir / "evals.csv").open("w", newline="") as f:  # the file as written before
        w = csv.DictWriter(f, fieldnames=RESULT_FIELDS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    back, _ = compare.collect_rows([spec], tmp_path)
    summary = json.loads((run_dir / "train" / "summary.json").read_text())
    assert back[-1]["train_return_mean"] == pytest.approx(summary["train_return_mean"])
    assert all(math.isnan(r["train_return_mean"]) for r in back[:-1])


class Stop(Exception):
    """Raised by an evaluation hook: the run is killed at that point."""


def _stop_run(spec, run_dir: Path, on_eval, kept_rows: list[dict]) -> None:
    """Train ``spec`` in ``run_dir`` until ``on_eval`` raises :class:`Stop`, leaving what a
    killed worker leaves: its ``spec.json`` and the evaluation rows written before the kill."""
    run_dir.mkdir()
    with pytest.raises(Stop):
        compare.train_ours(spec, run_dir, on_eval)
    (run_dir / "spec.json").write_text(json.dumps(dataclasses.asdict(spec)))
    write_results(kept_rows, run_dir / "evals.csv")


def test_a_stopped_run_of_ours_continues_exactly_from_its_last_evaluation(tmp_path):
    spec = _spec(algo="acktr", grid=(128, 256, 384))
    full = compare.run_one(spec, tmp_path / "full")

    def stop_after_first(*point):  # a run killed right after its first evaluation
        raise Stop

    run_dir = tmp_path / "stopped"
    _stop_run(spec, run_dir, stop_after_first, read_results(tmp_path / "full" / "evals.csv")[:1])
    with (run_dir / "evals.csv").open("a") as f:
        f.write("acktr,CartPole-v1,0,256,9.")  # a row the kill cut short: dropped, not extended
    assert compare.resumable(spec, run_dir)
    assert not compare.resumable(dataclasses.replace(spec, timesteps=512), run_dir)
    done = compare.run_one(spec, run_dir)
    a, b = (read_results(d / "evals.csv") for d in (tmp_path / "full", run_dir))
    assert [r["timesteps"] for r in b] == [128, 256, 384]
    assert [r["eval_return_mean"] for r in a] == [r["eval_return_mean"] for r in b]
    np.testing.assert_array_equal([r["train_return_mean"] for r in a],
                                  [r["train_return_mean"] for r in b])
    assert done["timesteps"] == full["timesteps"] == 384


def _final_params(train_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(train_dir / "checkpoint.pt", weights_only=True)["policy"]


def test_linear_kfac_schedule_runs_as_one_uninterrupted_train(tmp_path):
    # ACKTR with the classic config's linear lr decay, evaluated at three points off the update
    # grid (128 steps per update): the run ends with the parameters of a plain train() of the
    # same config, bit for bit, and is evaluated at the first boundaries past the points.
    spec = _spec(algo="acktr", timesteps=1280, grid=(300, 900, 1280),
                 overrides=("kfac.cold_start_steps=2",))
    done = compare.run_one(spec, tmp_path / "r")
    train_dir = tmp_path / "r" / "train"
    assert "lr_schedule: linear" in (train_dir / "config.yaml").read_text()
    rows = read_results(tmp_path / "r" / "evals.csv")
    assert [r["timesteps"] for r in rows] == [384, 1024, 1280]
    assert done["notes"] == [] and done["updates"] == 10
    plain = compare.our_config(spec)
    assert plain.algo.lr_schedule == "linear" and plain.num_updates == 10
    summary = train(plain, tmp_path / "plain", progress_bar=False, tensorboard=False)
    a, b = _final_params(train_dir), _final_params(tmp_path / "plain")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert rows[-1]["eval_return_mean"] == summary["final_return_mean"]


def test_a_run_stopped_while_evaluating_evaluates_its_checkpoint_first(tmp_path):
    # Killed during the evaluation at 256 steps, after its checkpoint: the rerun evaluates the
    # checkpoint as the hook would have, then continues to the same end.
    spec = _spec(algo="acktr", grid=(128, 256, 384))
    compare.run_one(spec, tmp_path / "full")
    full = read_results(tmp_path / "full" / "evals.csv")

    def stop_at_second(t, *rest):
        if t == 256:
            raise Stop

    run_dir = tmp_path / "stopped"
    _stop_run(spec, run_dir, stop_at_second, full[:1])
    compare.run_one(spec, run_dir)
    again = read_results(run_dir / "evals.csv")
    assert [(r["timesteps"], r["eval_return_mean"]) for r in again] == \
        [(r["timesteps"], r["eval_return_mean"]) for r in full]
    assert again[1]["wall_seconds"] > 0
    a, b = _final_params(tmp_path / "full" / "train"), _final_params(run_dir / "train")
    assert all(torch.equal(a[k], b[k]) for k in a)


def _finish(out: Path, spec: RunSpec) -> None:
    run_dir = out / "runs" / spec.key
    run_dir.mkdir(parents=True)
    write_results(_rows(spec.algo, spec.env_id, spec.seed, [(g, 1.0) for g in spec.grid]),
                  run_dir / "evals.csv")
    (run_dir / "done.json").write_text(json.dumps({"spec": spec.comparable(), "notes": []}))


def test_finished_runs_are_skipped_and_other_settings_are_an_error(tmp_path):
    spec = _spec()
    _finish(tmp_path, spec)
    started = []
    outcomes = compare.execute([spec], tmp_path, jobs=2, log=started.append)
    assert [o.status for o in outcomes] == ["skipped"]
    assert not any(m.startswith("started") for m in started)
    assert run_status(dataclasses.replace(spec, threads=4), tmp_path / "runs" / spec.key) == "done"
    with pytest.raises(ValueError, match="other settings.*timesteps: 256 then, 512 now"):
        run_status(dataclasses.replace(spec, timesteps=512), tmp_path / "runs" / spec.key)


def test_report_from_finished_runs(tmp_path):
    specs = [_spec(seed=0), _spec(seed=1), _spec(algo="trpo", seed=0), _spec(algo="acktr")]
    for spec in specs[:3]:
        _finish(tmp_path, spec)
    failed = compare.Outcome(specs[3], "failed", "exit code 1; log x\nTraceback")
    compare.write_report(tmp_path, specs, {"CartPole-v1": {"a2c": "configs/classic.yaml"}},
                         {"CartPole-v1": 1.0}, [failed])
    rows = read_results(tmp_path / "results.csv")
    assert len(rows) == 6 and {r["algo"] for r in rows} == {"a2c", "trpo"}
    summary = (tmp_path / "summary.md").read_text()
    assert "| a2c | 2 | 1.0 +- 0.0 |" in summary and "configs/classic.yaml" in summary
    assert "`CartPole-v1/acktr/seed0`: failed, exit code 1; log x" in summary
    assert (tmp_path / "curves_CartPole-v1.png").stat().st_size > 0


@pytest.mark.medium
def test_a_failing_run_is_reported_and_the_others_finish(tmp_path):
    good, bad = _spec(), _spec(seed=1, overrides=("kfac.lr=-1",))
    messages = []
    outcomes = {o.spec.seed: o for o in compare.execute([bad, good], tmp_path, 2,
                                                        messages.append)}
    assert outcomes[0].status == "done"
    assert outcomes[1].status == "failed" and "kfac.lr: invalid value -1" in outcomes[1].detail
    assert any(m.startswith("FAILED CartPole-v1/a2c/seed1") for m in messages)


@pytest.mark.medium
def test_compare_smoke_then_rerun_skips_finished_and_continues_unfinished(tmp_path):
    s = _settings(tmp_path, algos=["acktr", "a2c", "sb3-a2c", "trpo"], timesteps=1024,
                  jobs=2, command="test")
    assert compare.run_compare(s, log=lambda m: None) == 0
    rows = read_results(s.out / "results.csv")
    assert {r["algo"] for r in rows} == set(ALGOS)
    assert all(math.isfinite(r["eval_return_mean"]) for r in rows)
    # Every algorithm is evaluated at the first update boundary at or past 512 and 1024.
    per_algo = {a: [r["timesteps"] for r in rows if r["algo"] == a] for a in ALGOS}
    assert per_algo["a2c"] == [512, 1024] and per_algo["sb3-a2c"] == [520, 1040]  # 8 x 5
    assert per_algo["trpo"] == [1024]  # zoo CartPole TRPO: 2 envs x 512 steps per update
    runs = s.out / "runs" / "CartPole-v1"
    first = (runs / "acktr" / "seed0" / "done.json").stat().st_mtime
    before = read_results(runs / "a2c" / "seed0" / "evals.csv")
    for algo in ("a2c", "trpo"):  # unfinished: ours continue, baselines start over
        (runs / algo / "seed0" / "done.json").unlink()
    messages = []
    assert compare.run_compare(s, log=messages.append) == 0
    assert "skipping 2 finished run(s); 2 to run" in messages
    assert "continuing CartPole-v1/a2c/seed0" in messages
    assert "started CartPole-v1/trpo/seed0" in messages
    assert (runs / "acktr" / "seed0" / "done.json").stat().st_mtime == first
    assert read_results(runs / "a2c" / "seed0" / "evals.csv") == before
    assert len(strict_loads((s.out / "compare.json").read_text())["commands"]) == 2


# --- bad files in a compare folder: one-line errors naming them ---------------------------------


def test_bad_results_files_name_file_line_and_column(tmp_path):
    path = tmp_path / "evals.csv"
    write_results([{"algo": "a2c", "env": "CartPole-v1", "seed": 0, "timesteps": 128,
                    "eval_return_mean": 9.5, "eval_return_std": 0.5, "wall_seconds": 1.0,
                    "train_return_mean": float("nan")}], path)
    good = path.read_text()
    path.write_text(good + "a2c,CartPole-v1,0,2")  # a row cut short by a kill: left out
    assert [r["timesteps"] for r in read_results(path)] == [128]
    path.write_text(good.replace("9.5", "lots"))
    with pytest.raises(BadInputError, match=r"evals.csv: line 2, column 'eval_return_mean': "
                                            r"'lots' is not a number"):
        read_results(path)
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x01")
    with pytest.raises(BadInputError, match="evals.csv: not a results file: not UTF-8 text"):
        read_results(path)


def test_summary_null_reads_back_as_nan_and_old_nan_files_still_read(tmp_path):
    path = tmp_path / "summary.json"
    path.write_text('{"timesteps": 8, "train_return_mean": null, "fps": NaN}')
    summary = compare.read_summary(path)
    assert summary["timesteps"] == 8 and math.isnan(summary["train_return_mean"])
    assert math.isnan(summary["fps"])


def test_bad_records_name_the_file_and_what_to_do(tmp_path):
    record = tmp_path / "compare.json"
    assert compare.read_record(record) == {"commands": []}
    record.write_text('{"commands": "python train.py"}')
    with pytest.raises(BadInputError, match="compare.json: not a compare record"):
        compare.read_record(record)
    done = tmp_path / "done.json"
    done.write_text('{"spec": [1]}')
    with pytest.raises(BadInputError, match=f"no 'spec' mapping; remove {tmp_path}"):
        compare.read_done(done)
    done.write_text("{")
    with pytest.raises(BadInputError, match=f"done.json: not a valid .*; remove {tmp_path}"):
        compare.read_done(done)


@pytest.mark.parametrize(("text", "message"), [
    ("CartPole-v1: lots\n", "entry 'CartPole-v1': 'lots'; expected ENV_ID: NUMBER"),
    ("- CartPole-v1\n", "holds a mapping of keys at the top level; got list"),
    ("CartPole-v1: !!python/object/apply:os.system [id]\n", "is not allowed"),
    ("CartPole-v1: true\n", "entry 'CartPole-v1': True"),
])
def test_bad_thresholds_file_is_an_error_naming_it(text, message, tmp_path, monkeypatch):
    path = tmp_path / "thresholds.yaml"
    path.write_text(text)
    with pytest.raises(BadInputError, match=message):
        compare.read_thresholds(path)
    monkeypatch.setattr(compare, "THRESHOLDS_FILE", path)
    with pytest.raises(BadInputError, match=str(path)):
        compare.load_thresholds(["CartPole-v1"])


def test_a_bad_thresholds_file_fails_before_any_run(tmp_path, monkeypatch):
    path = tmp_path / "thresholds.yaml"
    path.write_text("CartPole-v1: [\n")
    monkeypatch.setattr(compare, "THRESHOLDS_FILE", path)
    settings = CompareSettings(envs=["CartPole-v1"], out=tmp_path / "out", algos=["a2c"],
                               seeds=1, timesteps=256)
    with pytest.raises(BadInputError, match="thresholds.yaml: not valid YAML"):
        compare.run_compare(settings, log=lambda _: None)
    assert not (tmp_path / "out").exists()


def test_a_damaged_spec_json_starts_the_run_over(tmp_path):
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    (run_dir / "spec.json").write_bytes(b"\x00\xff")
    assert not compare.resumable(_spec(algo="acktr"), run_dir)
    assert compare.worker_main(["worker", str(run_dir)]) == 2
