"""Reading the files users hand us (YAML, JSON, CSV) and writing strict JSON.

Every reader takes the path and a short name of what the file should be (``"config"``,
``"compare record"``, ...) and raises :class:`agents.errors.BadInputError` with a one-line
message naming the file, what is wrong and what is allowed, for every way a file can be bad:
missing (:class:`~agents.errors.MissingInputError`), a directory, not a regular file,
unreadable, larger than :data:`MAX_TEXT_BYTES` (YAML: :data:`MAX_YAML_BYTES`), not UTF-8 (with
a guess at what it is, e.g. a PNG image or a zip archive), malformed, nested deeper than
:data:`MAX_DEPTH` or holding more than :data:`MAX_VALUES` values (YAML alias bombs). YAML is
read with a ``yaml.SafeLoader`` that also refuses duplicate keys; a Python tag
(``!!python/object/apply:...``) is refused by name, never constructed.

JSON is written strictly (RFC 8259): NaN and +-Inf become ``null`` and ``allow_nan=False``
enforces it, so that every JSON parser reads our files; :func:`read_json` still accepts older
files holding ``NaN``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from agents.errors import BadInputError, MissingInputError

MAX_TEXT_BYTES = 16 * 2**20
"""Largest YAML / JSON / CSV file read (16 MiB; ours are a few kB)."""
MAX_YAML_BYTES = 2**20
"""Largest YAML file read (1 MiB; our configs are a few kB, and PyYAML parses ~1 MB/s)."""
MAX_DEPTH = 64
"""Deepest nesting of lists and mappings accepted in a YAML or JSON file."""
MAX_VALUES = 100_000
"""Most values (after YAML aliases are expanded) accepted in a YAML or JSON file."""
PLAIN_DATA = "mappings, lists, strings, numbers, booleans and null"

# Leading bytes of formats people pass by mistake, to say what a foreign file looks like.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"PK\x03\x04", "a zip archive (torch checkpoints are zip archives)"),
    (b"\x1f\x8b", "gzip-compressed data"),
    (b"%PDF", "a PDF document"),
    (b"\x7fELF", "an executable (ELF)"),
    (b"\x93NUMPY", "a NumPy array (.npy)"),
    (b"\x89HDF", "an HDF5 file"),
    (b"\x80\x02", "a Python pickle"),
    (b"\x80\x03", "a Python pickle"),
    (b"\x80\x04", "a Python pickle"),
    (b"\x80\x05", "a Python pickle"),
)


def looks_like(head: bytes) -> str | None:
    """What a file starting with ``head`` appears to be (``"a PNG image"``), or None."""
    return next((name for magic, name in _SIGNATURES if head.startswith(magic)), None)


def check_file(path: str | Path, what: str = "file") -> Path:
    """``path`` as a Path if it is an existing regular file.

    Raises:
        MissingInputError: nothing at ``path``.
        BadInputError: ``path`` is a directory or not a regular file (a FIFO, a device).
    """
    path = Path(path)
    if path.is_dir():
        raise BadInputError(f"{path}: is a directory; expected a {what} file")
    if not path.exists():
        raise MissingInputError(f"{path}: no such {what} file")
    if not path.is_file():
        raise BadInputError(f"{path}: not a regular file; expected a {what} file")
    return path


@contextmanager
def _reading(path: Path) -> Iterator[None]:
    """OS errors while reading ``path`` become BadInputErrors naming it."""
    try:
        yield
    except PermissionError:
        raise BadInputError(f"{path}: cannot be read (permission denied)") from None
    except OSError as err:
        raise BadInputError(f"{path}: cannot be read ({err.strerror or err})") from None


def read_bytes(path: str | Path, what: str = "file", max_bytes: int | None = None) -> bytes:
    """The content of the regular file ``path`` (see :func:`check_file`), at most ``max_bytes``
    (default: no limit).

    Raises:
        BadInputError: also when the file cannot be read (permissions, I/O error) or is larger
            than ``max_bytes``.
    """
    path = check_file(path, what)
    with _reading(path):
        size = path.stat().st_size
        if max_bytes is not None and size > max_bytes:
            raise BadInputError(f"{path}: {size:,} bytes is too large for a {what} file "
                                f"(at most {max_bytes:,})")
        with path.open("rb") as f:
            return f.read() if max_bytes is None else f.read(max_bytes + 1)


def read_head(path: str | Path, size: int = 16) -> bytes:
    """The first ``size`` bytes of ``path`` (to tell its format); an unreadable file is a
    BadInputError naming it."""
    path = Path(path)
    with _reading(path), path.open("rb") as f:
        return f.read(size)


def read_text(path: str | Path, what: str = "file", max_bytes: int = MAX_TEXT_BYTES) -> str:
    """The UTF-8 text of ``path`` (see :func:`read_bytes`; at most 16 MiB by default).

    Raises:
        BadInputError: also when the file is not UTF-8 text, naming the first bad byte and what
            the file looks like when its format is a known one.
    """
    data = read_bytes(path, what, max_bytes)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        kind = looks_like(data[:16])
        guess = f"; it looks like {kind}" if kind else ""
        raise BadInputError(
            f"{path}: not a {what} file: not UTF-8 text (byte {data[err.start]:#04x} at offset "
            f"{err.start}){guess}"
        ) from None


class _PlainDataLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key repeated in one mapping (YAML 1.2 forbids it;
    PyYAML would keep the last value silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                key = (key_node.tag, key_node.value)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping", node.start_mark,
                        f"found duplicate key {key_node.value!r}", key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep)


def _yaml_problem(err: yaml.YAMLError) -> str:
    """One line: what is wrong and where (line, column), from PyYAML's multi-line message."""
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    if problem.startswith("could not determine a constructor for the tag"):
        tag = problem.partition("'")[2].rstrip("'").replace("tag:yaml.org,2002:", "!!")
        return (f"the tag {tag!r}{where} is not allowed (no Python objects are ever built "
                f"from YAML; use plain data: {PLAIN_DATA})")
    if isinstance(err, yaml.reader.ReaderError):
        char = err.character if isinstance(err.character, int) else ord(err.character)
        return f"character {char:#04x} at offset {err.position} is not allowed in YAML text"
    return f"not valid YAML: {problem}{where}"


def parse_yaml(text: str, where: str) -> Any:
    """Plain data from YAML ``text`` (see the module docstring); errors start with ``where``.

    Raises:
        BadInputError: malformed YAML, a Python or unknown tag, a duplicate key, nesting
            deeper than :data:`MAX_DEPTH` or more than :data:`MAX_VALUES` values.
    """
    _check_nesting(text, where)
    try:
        data = yaml.load(text, Loader=_PlainDataLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        raise BadInputError(f"{where}: {_yaml_problem(err)}") from None
    except RecursionError:
        raise BadInputError(f"{where}: nested deeper than {MAX_DEPTH} levels") from None
    check_size(data, where)
    return data


def _check_nesting(text: str, where: str) -> None:
    """Refuse deep nesting before PyYAML sees it: its parser recurses and slows down
    quadratically with depth (1000 brackets take seconds). Counts unclosed ``[``/``{`` (quotes
    ignored: a false alarm needs 64 unclosed brackets inside strings) and indentation."""
    depth = deepest = 0
    for char in text:
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    indent = max((len(ln) - len(ln.lstrip(" ")) for ln in text.splitlines()), default=0)
    if deepest > MAX_DEPTH or indent > 8 * MAX_DEPTH:
        raise BadInputError(f"{where}: nested deeper than {MAX_DEPTH} levels")


def check_size(data: Any, where: str) -> None:
    """Raises BadInputError when ``data`` nests lists / mappings deeper than :data:`MAX_DEPTH`
    (a self-referencing YAML alias does) or holds more than :data:`MAX_VALUES` values."""
    stack, count = [(data, 0)], 0
    while stack:
        value, depth = stack.pop()
        count += 1
        if count > MAX_VALUES:
            raise BadInputError(f"{where}: more than {MAX_VALUES:,} values (YAML aliases that "
                                "expand exponentially?); this is not a file of ours")
        if depth > MAX_DEPTH:
            raise BadInputError(f"{where}: nested deeper than {MAX_DEPTH} levels (or a YAML "
                                "alias that refers to itself)")
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)


def _expect(data: Any, expect: type | None, path: Path, what: str, shape: str | None) -> Any:
    if expect is not None and not isinstance(data, expect):
        shape = shape or {dict: "a mapping of keys", list: "a list"}.get(expect, expect.__name__)
        got = "nothing (an empty file)" if data is None else f"{type(data).__name__} {data!r:.40}"
        raise BadInputError(f"{path}: a {what} file holds {shape} at the top level; got {got}")
    return data


def read_yaml(path: str | Path, what: str = "YAML", expect: type | None = dict,
              empty: Any = None, shape: str | None = None) -> Any:
    """Plain data from the YAML file ``path`` (at most :data:`MAX_YAML_BYTES`; see
    :func:`read_text` and :func:`parse_yaml`).

    Args:
        path: the file.
        what: what the file should be, for messages (e.g. ``"config"``). Default ``"YAML"``.
        expect: type of the top-level value (default ``dict``; None: any).
        empty: returned for an empty file (or one holding only comments); default None, which
            ``expect`` then rejects.
        shape: what the top level should be, for messages; default from ``expect``.

    Raises:
        BadInputError: naming ``path``; MissingInputError when there is no file.
    """
    path = Path(path)
    data = parse_yaml(read_text(path, what, MAX_YAML_BYTES), str(path))
    if data is None and empty is not None:
        return empty
    return _expect(data, expect, path, what, shape)


def read_json(path: str | Path, what: str = "JSON", expect: type | None = dict) -> Any:
    """Data from the JSON file ``path``; ``NaN`` / ``Infinity`` (older files) are accepted.

    Raises:
        BadInputError: naming ``path``: malformed, too deep or large, not of type ``expect``
            (default ``dict``); MissingInputError when there is no file.
    """
    path = Path(path)
    text = read_text(path, what)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise BadInputError(f"{path}: not a valid {what} file: {err.msg} at line {err.lineno}, "
                            f"column {err.colno} (expected JSON)") from None
    except RecursionError:
        raise BadInputError(f"{path}: nested deeper than {MAX_DEPTH} levels") from None
    check_size(data, str(path))
    return _expect(data, expect, path, what, None)


def read_csv(path: str | Path, what: str = "CSV", required: tuple[str, ...] = ()
             ) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """The header and the rows of the CSV file ``path``, each row as ``(line number,
    {column: text})``. A last line without its line break (a write cut short by a crash) is
    left out.

    Raises:
        BadInputError: naming ``path``: not CSV text, no header, a missing ``required`` column
            (listing the expected ones), a row with another number of fields than the header.
    """
    path = Path(path)
    text = read_text(path, what)
    if not text.endswith(("\n", "\r")):
        text = text[: max(text.rfind("\n"), text.rfind("\r")) + 1]
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, [])
        missing = [c for c in required if c not in header]
        if missing:
            raise BadInputError(f"{path}: not a {what} file: missing column(s) "
                                f"{', '.join(missing)}; expected {', '.join(required)}")
        rows = []
        for fields_ in reader:
            if not fields_:  # a blank line
                continue
            if len(fields_) != len(header):
                raise BadInputError(f"{path}: line {reader.line_num}: {len(fields_)} field(s), "
                                    f"the header has {len(header)}")
            rows.append((reader.line_num, dict(zip(header, fields_, strict=True))))
    except csv.Error as err:
        raise BadInputError(f"{path}: line {reader.line_num}: not valid CSV ({err})") from None
    return list(header), rows


def ends_cleanly(path: str | Path) -> bool:
    """Whether the text file ``path`` is empty or ends with a line break (else its last line
    is a write cut short, which :func:`read_csv` leaves out and an appender must not extend)."""
    with Path(path).open("rb") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() == 0:
            return True
        f.seek(-1, os.SEEK_END)
        return f.read(1) in (b"\n", b"\r")


def csv_number(path: Path, line: int, row: dict[str, str | None], column: str,
               kind: type = float) -> Any:
    """``row[column]`` converted by ``kind`` (``float`` or ``int``; an int column accepts
    ``'1e3'`` and ``'1000.0'``); an empty or bad value is a BadInputError naming file, line and
    column."""
    text = row.get(column)
    try:
        value = float(text)  # type: ignore[arg-type]
        if kind is int:
            if not value.is_integer():
                raise ValueError
            return int(value)
        return value
    except (TypeError, ValueError):
        expected = "a whole number" if kind is int else "a number"
        raise BadInputError(f"{path}: line {line}, column {column!r}: {text!r} is not "
                            f"{expected}") from None


def strict_json_data(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, +-Inf) replaced by None, recursively
    through dicts, lists and tuples (tuples become lists)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: strict_json_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json_data(v) for v in value]
    return value


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as strict JSON (indent 2, NaN/Inf as null) atomically: a temporary file
    in the same folder renamed over ``path``, so readers never see half a file."""
    path = Path(path)
    text = json.dumps(strict_json_data(data), indent=2, allow_nan=False) + "\n"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
