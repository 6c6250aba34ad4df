"""Reading the text files d4m and its users write (YAML, JSON, JSON lines) with one-line errors, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

from d4m.errors import D4MError


def read_text(path: Path, what: str = "file") -> str:
    """A text file d4m or a user wrote, in UTF-8 (a BOM allowed) or UTF-16/32 with a BOM; one-line errors."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise D4MError(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
    for bom, codec in ((b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe\x00\x00", "utf-32"),
                       (b"\x00\x00\xfe\xff", "utf-32"), (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16")):
        if data.startswith(bom):
            break
    else:
        codec = "utf-8"
    try:
        return data.decode(codec)
    except UnicodeDecodeError as exc:
        raise D4MError(f"{path}: {what} is not {codec.upper()} text (byte {exc.start})") from None


def read_json(path: Path, what: str = "JSON file") -> dict:
    """A JSON object from ``path``; anything else (bad JSON, a list, a number) is a one-line error naming it."""
    try:
        data = json.loads(read_text(path, what))
    except ValueError as exc:
        raise D4MError(f"{path}: {what} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise D4MError(f"{path}: {what} must hold a JSON object, not {type(data).__name__}")
    return data


def read_jsonl(path: Path, strict: bool = True) -> list[dict]:
    """The records of a JSON-lines file (manifest.jsonl, log.jsonl); [] when the file does not exist.

    A line that is not a JSON object (a file cut mid-line by a kill, an edit) is an error naming the file and line;
    with ``strict=False`` (logs, journals: appended to, so a kill may cut their last line) it is skipped.
    """
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for n, line in enumerate(read_text(path, path.name).splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if not isinstance(row, dict):
            if strict:
                raise D4MError(f"{path}: line {n} is not a JSON object (a cut or edited file); "
                               "rerun the stage that wrote it")
            continue
        rows.append(row)
    return rows
