"""agents.files: every bad YAML / JSON / CSV file is a one-line BadInputError naming it, YAML
never builds Python objects, and JSON is written strictly (NaN -> null) yet read leniently."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from agents.config import ConfigError, load_config
from agents.errors import BadInputError, MissingInputError
from agents.files import (
    MAX_VALUES,
    check_size,
    csv_number,
    parse_yaml,
    read_csv,
    read_json,
    read_text,
    read_yaml,
    strict_json_data,
    write_json,
)
from tests.bad_inputs import CONFIG_CASES, MARKER, billion_laughs


def strict_loads(text: str):
    """``json.loads`` that refuses NaN / Infinity, as strict parsers (JavaScript, jq) do."""

    def refuse(name: str):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def _one_line(err: BaseException) -> str:
    message = str(err)
    assert "\n" not in message, message
    return message


# All but the one that needs a run's checkpoint (tests/test_train_bad_inputs.py has it).
FILE_CASES = [c for c in CONFIG_CASES if c.id != "config-is-a-checkpoint"]


@pytest.mark.parametrize("case", FILE_CASES, ids=[c.id for c in FILE_CASES])
def test_load_config_raises_a_clear_error_naming_the_file(case, tmp_path):
    argv, named = case.build(tmp_path, tmp_path / "no-run")
    with pytest.raises(BadInputError) as info:
        if argv[0] == "--config":
            load_config(argv[1], [])
        else:
            load_config(None, [argv[1]])
    message = _one_line(info.value)
    assert named in message and case.fragment in message, message
    if case.id == "config-missing":
        assert isinstance(info.value, MissingInputError | FileNotFoundError)
    elif case.id != "config-directory":
        assert isinstance(info.value, ConfigError)
    assert not (tmp_path / MARKER).exists()


def test_python_tags_are_never_constructed(tmp_path):
    for text in (f"!!python/object/apply:os.system ['touch {tmp_path / MARKER}']",
                 "!!python/object/new:os.system [echo]", "x: !!python/module:os",
                 "!!python/name:builtins.eval", "x: !custom 3"):
        with pytest.raises(BadInputError, match="is not allowed"):
            parse_yaml(text, "f.yaml")
    assert not (tmp_path / MARKER).exists()


def test_plain_yaml_still_reads(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("# comment\nbase: &b {x: 1}\nother: {<<: *b, y: [1, 2.5, null, true]}\n")
    assert read_yaml(path) == {"base": {"x": 1}, "other": {"x": 1, "y": [1, 2.5, None, True]}}
    path.write_text("# only a comment\n")
    assert read_yaml(path, empty={}) == {}
    with pytest.raises(BadInputError, match="holds a mapping of keys at the top level; got "
                                            "nothing"):
        read_yaml(path)


def test_alias_bomb_is_refused_without_expanding_it():
    with pytest.raises(BadInputError, match=f"more than {MAX_VALUES:,} values"):
        parse_yaml(billion_laughs(), "bomb.yaml")  # 9**9 values if expanded


def test_size_check_counts_shared_values_each_time():
    shared = list(range(1000))
    check_size([shared] * 99, "ok")
    with pytest.raises(BadInputError, match="more than"):
        check_size([shared] * 101, "big")


def test_unreadable_file_names_it(tmp_path, monkeypatch):
    path = tmp_path / "c.yaml"
    path.write_text("a: 1\n")

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "open", denied)
    with pytest.raises(BadInputError, match=f"{path}: cannot be read \\(permission denied\\)"):
        read_text(path, "config")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_fifo_is_not_read(tmp_path):
    path = tmp_path / "pipe.yaml"
    os.mkfifo(path)  # reading it would block forever
    with pytest.raises(BadInputError, match="not a regular file; expected a config file"):
        read_text(path, "config")


def test_json_errors_name_the_file(tmp_path):
    path = tmp_path / "r.json"
    with pytest.raises(MissingInputError, match="no such record file"):
        read_json(path, "record")
    path.write_text('{"a": 1,}')
    with pytest.raises(BadInputError, match=r"r.json: not a valid record file: .* at line 1"):
        read_json(path, "record")
    path.write_text("[1]")
    with pytest.raises(BadInputError, match="holds a mapping of keys at the top level; got list"):
        read_json(path, "record")
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(BadInputError, match="nested deeper than"):
        read_json(path, "record", expect=None)
    path.write_bytes(b"\xff\xfe{}")
    with pytest.raises(BadInputError, match="not UTF-8 text"):
        read_json(path, "record")


def test_old_json_with_nan_still_reads(tmp_path):
    path = tmp_path / "summary.json"
    path.write_text('{"train_return_mean": NaN, "fps": Infinity}')
    data = read_json(path, "run summary")
    assert math.isnan(data["train_return_mean"]) and data["fps"] == math.inf


def test_written_json_is_strict_with_null_for_nan_and_inf(tmp_path):
    data = {"a": math.nan, "b": [math.inf, 1.5, -math.inf], "c": {"d": (math.nan, 2)}, "e": "x"}
    path = write_json(tmp_path / "s.json", data)
    assert strict_loads(path.read_text()) == {"a": None, "b": [None, 1.5, None],
                                              "c": {"d": [None, 2]}, "e": "x"}
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]  # no temporary file left
    assert strict_json_data(data["c"]) == {"d": [None, 2]}


def test_csv_rows_carry_line_numbers_and_bad_rows_name_them(tmp_path):
    path = tmp_path / "evals.csv"
    path.write_text("a,b\n1,2\n\n3,4\n5,")  # a blank line; a last line cut short by a crash
    header, rows = read_csv(path, "results", required=("a",))
    assert header == ["a", "b"] and rows == [(2, {"a": "1", "b": "2"}), (4, {"a": "3", "b": "4"})]
    assert csv_number(path, 4, rows[1][1], "b", int) == 4
    with pytest.raises(BadInputError, match=r"line 7, column 'b': '2.5' is not a whole number"):
        csv_number(path, 7, {"b": "2.5"}, "b", int)
    path.write_text("a,b\n1,2,3\n")
    with pytest.raises(BadInputError, match=r"evals.csv: line 2: 3 field\(s\), the header has 2"):
        read_csv(path)
    path.write_text("x,y\n1,2\n")
    with pytest.raises(BadInputError, match="missing column\\(s\\) a; expected a"):
        read_csv(path, "results", required=("a",))
    path.write_text('a,b\n"1,2\n')
    with pytest.raises(BadInputError, match="not valid CSV"):
        read_csv(path)
