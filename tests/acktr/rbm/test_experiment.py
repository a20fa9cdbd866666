"""The experiment script end to end on tiny settings (digits, and fake MNIST IDX files)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from acktr.examples.data import write_idx
from acktr.rbm.experiment import eval_points, fisher_kl, main
from tests.acktr.rbm.helpers import random_rbm

TINY = [
    "--iters",
    "12",
    "--evals",
    "3",
    "--chains",
    "10",
    "--batch-size",
    "10",
    "--ais-chains",
    "10",
    "--ais-betas",
    "20",
    "--ais-betas-final",
    "30",
    "--sgd-lrs",
    "0.1",
    "--centered-lrs",
    "0.1",
    "--fang-lrs",
    "0.03",
    "0.3",
]


def test_eval_points_are_increasing_and_end_at_iters():
    points = eval_points(3000, 10)
    assert points[0] == 0 and points[-1] == 3000 and points == sorted(set(points))
    assert len(points) >= 10


@pytest.mark.medium
def test_digits_run_writes_plot_and_table(tmp_path):
    report = main(
        ["--hidden", "3", "21", "--timing-size", "20", "10", "--out", str(tmp_path), *TINY]
    )
    assert (tmp_path / "img" / "rbm_digits.png").stat().st_size > 10_000
    text = (tmp_path / "rbm_digits_results.md").read_text()
    assert text == report
    assert "**64 x 3** (test log-likelihood in nats, exact log Z)" in text
    assert "**64 x 21** (test log-likelihood in nats, AIS log Z" in text
    for row in ("| sgd", "| centered", "| fang", "| identity (SGD), best scale", "| FANG |"):
        assert row in text
    assert text.count("| fang") == 2 * 2 + 1  # two lrs per model, plus the cost table


def test_mnist_directory_is_used(tmp_path):
    rng = np.random.default_rng(0)
    mnist = tmp_path / "mnist"
    mnist.mkdir()
    for split, n in (("train", 30), ("t10k", 10)):
        write_idx(mnist / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        write_idx(mnist / f"{split}-labels-idx1-ubyte", rng.integers(0, 10, n))
    out = tmp_path / "out"
    args = ["--mnist", str(mnist), "--hidden", "4", "--no-timing", "--no-kl", "--out", str(out)]
    report = main([*args, *TINY])
    assert "Data: mnist" in report and "**784 x 4**" in report
    assert (out / "img" / "rbm_mnist.png").is_file()


def test_bad_arguments_exit_with_a_message(capsys):
    with pytest.raises(SystemExit):
        main(["--iters", "0"])
    assert "--iters must be >= 1, got 0" in capsys.readouterr().err


def test_fisher_kl_ranks_fang_first_on_a_small_model():
    torch.set_default_dtype(torch.float64)
    try:
        kl = fisher_kl(random_rbm(5, 3, seed=1))
    finally:
        torch.set_default_dtype(torch.float32)
    assert all(a >= 0 and b >= 0 for a, b in kl.values())
    assert min(kl, key=lambda k: kl[k][0]) == "FANG"
