"""The comparison runner: ``python -m acktr.examples`` writes its PNG, CSV and JSON."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest

from acktr.examples.__main__ import build_parser, main


def test_runner_writes_png_csv_json(tmp_path, capsys):
    argv = [
        "cnn",
        "--iters",
        "12",
        "--out",
        str(tmp_path),
        "--kfac-lrs",
        "0.1",
        "--sgd-lrs",
        "0.03,0.1",
        "--adam-lrs",
        "0.01",
        "--quiet",
        "--threads",
        "1",
    ]
    assert main(argv) == 0
    png, csv_path, js = (tmp_path / f"cnn_digits.{ext}" for ext in ("png", "csv", "json"))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    assert {r["optimizer"] for r in rows} == {"kfac", "sgd", "adam"}
    assert len(rows) == 12 * 4  # every iteration of every run
    assert sum(int(r["best"]) for r in rows) == 12 * 3  # one best run per optimizer
    doc = json.loads(js.read_text())
    assert [r["optimizer"] for r in doc["summary"]] == ["kfac", "sgd", "adam"]
    assert doc["meta"]["command"].startswith("python -m acktr.examples cnn --iters 12")
    table = capsys.readouterr().out
    assert "best lr" in table and "kfac" in table


def test_runner_reports_missing_mnist(tmp_path):
    with pytest.raises(SystemExit, match="train-images-idx3-ubyte"):
        main(["autoencoder", "--mnist", str(tmp_path), "--iters", "10"])


def test_help_documents_every_option():
    parser = build_parser()
    undocumented = [a.dest for a in parser._actions if not a.help]
    assert undocumented == []
    out = subprocess.run(
        [sys.executable, "-m", "acktr.examples", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for option in ("--mnist", "--iters", "--seed", "--out", "--kfac-defaults"):
        assert option in out
