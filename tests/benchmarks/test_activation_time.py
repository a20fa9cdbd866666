"""benchmarks.activation_time: every case is timed, and the report prints them all."""

from __future__ import annotations

from benchmarks.activation_time import main, measure


def test_measure_times_every_case() -> None:
    times = measure(rows=64, width=8, repeats=2, inner=1)
    assert {"torch.tanh", "agents Tanh", "agents Tanh fwd+bwd", "nn.ELU fwd+bwd"} <= set(times)
    assert all(t > 0 for t in times.values())


def test_main_prints_a_row_per_case(capsys) -> None:
    main(["--rows", "32", "--width", "4", "--repeats", "1", "--inner", "1"])
    out = capsys.readouterr().out
    assert out.count("| agents Tanh") == 2 and "max |agents Tanh - torch.tanh|" in out
