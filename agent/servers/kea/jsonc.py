"""Kea's config text: JSON with comments and `<?include "path"?>`, read as Kea reads it.

Kea's lexer drops `#` and `//` comments to the end of the line and `/* */`
blocks, but never inside a string; an include is replaced by the text of the
file it names. Here comments become spaces (newlines kept), so every offset
of the expanded text still maps to a file and a line of the rendered tree:
a finding names the line of the JSON key it is about.
"""

from __future__ import annotations

import bisect
import json
import posixpath
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.errors import Problem

# One regex, tried left to right: a string is skipped whole, so a `#` or `//` in
# it is no comment; an unterminated `/*` runs to the end, as in Kea.
_LEXEME = re.compile(
    r'"(?:[^"\\\n]|\\.)*"'
    r"|(?P<comment>\#[^\n]*|//[^\n]*|/\*.*?(?:\*/|\Z))"
    r'|<\?include\s*"(?P<include>[^"]*)"\s*\?>',
    re.DOTALL,
)
MAX_DEPTH = 16  # includes within includes: a cycle ends here, as a Problem
JsonPath = tuple[str | int, ...]


def strip(text: str) -> str:
    """text with every comment blanked: same length, same lines, includes kept."""
    return _LEXEME.sub(_blank_comment, text)


def _blank_comment(found: re.Match[str]) -> str:
    if found["comment"] is None:
        return found[0]
    return re.sub(r"[^\n]", " ", found[0])


def includes(text: str) -> Iterator[tuple[int, str]]:
    """(line, path) of each `<?include "path"?>` outside strings and comments."""
    for found in _LEXEME.finditer(text):
        if found["include"] is not None:
            yield text.count("\n", 0, found.start()) + 1, found["include"]


def include_problem(path: str, target: str) -> str | None:
    """Why an include path is refused: relative (Kea resolves it against its working
    directory, not the file), or outside the target (its text would reach our
    error reports). None when it names a file inside the target."""
    if not path.startswith("/"):
        return f'include "{path}" is relative: name it as {target}/{path}'
    if inside(path, target) is None:
        return f'include "{path}" is outside {target}: refused'
    return None


def inside(path: str, target: str) -> str | None:
    """An absolute path relative to the target, or None when it leaves the target."""
    rel = posixpath.relpath(posixpath.normpath(path), target)
    return None if rel == ".." or rel.startswith("../") else rel


@dataclass
class _Piece:
    start: int  # offset in the expanded text
    file: str  # path in the target
    line: int  # line of the file at that offset


@dataclass
class Document:
    """The expanded text of a main file, its JSON value, and where each key came from."""

    text: str
    value: Any
    pieces: list[_Piece] = field(default_factory=list)

    def where(self, path: JsonPath) -> tuple[str, int | None]:
        """(file, line) of the key (or list item) at path; the main file when absent."""
        offset = locate(self.text, path)
        if offset is None:
            return self.pieces[0].file, None
        starts = [p.start for p in self.pieces]
        piece = self.pieces[bisect.bisect_right(starts, offset) - 1]
        return piece.file, piece.line + self.text.count("\n", piece.start, offset)


class ParseError(Exception):
    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


def load(files: Mapping[str, bytes], main: str, target: str) -> Document:
    """The main file with includes expanded from the rendered tree, parsed; ParseError
    naming file and line when it cannot be read so."""
    doc = Document("", None)
    parts: list[str] = []
    _expand(files, main, target, doc.pieces, parts, 0)
    doc.text = "".join(parts)
    try:
        doc.value = json.loads(doc.text)
    except json.JSONDecodeError as err:
        file, line = _at(doc, err.pos)
        raise ParseError(Problem(file, line, f"not JSON: {err.msg}")) from err
    return doc


def _at(doc: Document, offset: int) -> tuple[str, int]:
    starts = [p.start for p in doc.pieces]
    piece = doc.pieces[max(bisect.bisect_right(starts, offset) - 1, 0)]
    return piece.file, piece.line + doc.text.count("\n", piece.start, offset)


def _expand(
    files: Mapping[str, bytes],
    rel: str,
    target: str,
    pieces: list[_Piece],
    parts: list[str],
    depth: int,
) -> None:
    data = files.get(rel)
    if data is None:
        raise ParseError(Problem(rel, None, "included, but not in the rendered tree"))
    text = strip(data.decode("utf-8", "replace"))
    done, line = 0, 1
    for found in _LEXEME.finditer(text):
        if found["include"] is None:
            continue
        pieces.append(_Piece(sum(map(len, parts)), rel, line))
        parts.append(text[done : found.start()])
        line += text.count("\n", done, found.end())
        done = found.end()
        _include(files, rel, found, target, pieces, parts, depth, line)
    pieces.append(_Piece(sum(map(len, parts)), rel, line))
    parts.append(text[done:])


def _include(
    files: Mapping[str, bytes],
    rel: str,
    found: re.Match[str],
    target: str,
    pieces: list[_Piece],
    parts: list[str],
    depth: int,
    line: int,
) -> None:
    path = found["include"]
    refused = include_problem(path, target)
    if refused is not None:
        raise ParseError(Problem(rel, line, refused))
    if depth >= MAX_DEPTH:
        raise ParseError(Problem(rel, line, f"includes nest deeper than {MAX_DEPTH}"))
    _expand(files, inside(path, target) or "", target, pieces, parts, depth + 1)


# --- locating a key -------------------------------------------------------------

_DECODER = json.JSONDecoder()
_SPACE = re.compile(r"[ \t\n\r]*")


def locate(text: str, path: JsonPath) -> int | None:
    """Offset of the key (or list item) at path in valid JSON text; None if absent.

    Values on the way are skipped by the C decoder, so finding one key in a file of
    10,000 reservations costs about what parsing it once does.
    """
    at, found = _skip_space(text, 0), None
    for step in path:
        found = _key(text, at, step) if isinstance(step, str) else _item(text, at, step)
        if found is None:
            return None
        at = found[1]
    return found[0] if found else None


def _skip_space(text: str, at: int) -> int:
    found = _SPACE.match(text, at)
    return found.end() if found else at


def _key(text: str, at: int, key: str) -> tuple[int, int] | None:
    """(offset of the key, offset of its value) in the object at `at`."""
    if not text.startswith("{", at):
        return None
    at = _skip_space(text, at + 1)
    while text.startswith('"', at):
        start = at
        name, at = json.decoder.scanstring(text, at + 1)  # type: ignore[attr-defined]
        at = _skip_space(text, _skip_space(text, at) + 1)  # past the ':'
        if name == key:
            return start, at
        at = _next(text, at)
    return None


def _item(text: str, at: int, index: int) -> tuple[int, int] | None:
    if not text.startswith("[", at):
        return None
    at = _skip_space(text, at + 1)
    for _ in range(index):
        if text.startswith("]", at):
            return None
        at = _next(text, at)
    return None if text.startswith("]", at) else (at, at)


def _next(text: str, at: int) -> int:
    """Past the value at `at` and its comma."""
    _, at = _DECODER.raw_decode(text, at)
    return _skip_space(text, _skip_space(text, at) + 1)
