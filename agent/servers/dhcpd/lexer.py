"""dhcpd.conf tokens, read as ISC dhcpd 4.4 reads them (common/conflex.c).

The include check must see the very strings dhcpd sees: a string read by other
rules than dhcpd's is how `include "/etc/passwd";` would slip past it. So this
follows conflex.c byte for byte where it decides what is code, what is a string
and what a string holds:

- read_string: escapes \\t \\r \\n \\b, octal \\0NN to \\3NN, hex \\xHH; any other
  escaped byte stands for itself (\\" is a quote). A bad hex digit, or a bad octal
  digit after a nonzero one, is swallowed (a quote too: the string goes on) and
  leaves its byte of the buffer unwritten. A string holds at most 1,499 bytes:
  reading stops there, before the closing quote, and the rest is code again.
- get_char: the buffer is of (signed) char, so a 0xFF byte reads as EOF. It ends
  a string or a comment; right after a name it is dropped; anywhere else it is
  an end-of-file token (at the start of a top-level statement dhcpd stops there).
- get_raw_token: whitespace is isspace() in ASCII; `#` starts a comment to the end
  of the line; `"` starts a string; a name or number starts with [-0-9A-Za-z] and
  goes on with [-_0-9A-Za-z] (read_number, read_num_or_name) for at most 1,499
  bytes (the 1,500th is lost); every other byte, NUL and non-ASCII too, is a
  token of its own. intern() matches keywords in any case.
- Lines: every newline byte counts, in strings and comments too; a token's line
  is the line its first byte is on.

One difference, for conf's parser: a name token keeps the dots between dhcpd's
names, so 192.0.2.1 and dhcp1.example.net are one token (dhcpd reads seven and
five, and joins them in its parser); dhcpd_tokens() splits one as dhcpd does.

tokens() is what conf's parser and import read; spans() is the same reading with
the code between strings and comments left whole, for the include check, which
goes through a file of 50,000 host declarations in a fraction of the time.

Not modelled, as neither can let dhcpd open a file we did not see: 1,500 bytes
of whitespace in a row (dhcpd exits), and which token a NUL byte is lost as.
"""

from __future__ import annotations

import re
from typing import Literal, NamedTuple

Kind = Literal["name", "string", "punct", "comment", "end", "code"]

BUFFER = 1500  # sizeof tokbuf: a token's bytes and their terminating NUL
_LONGEST = BUFFER - 1

_NAME_START = "-0-9A-Za-z"
_NAME_PART = "-_0-9A-Za-z"

# Both read the text decoded as latin-1, one character per byte, so that offsets
# in it are offsets in the bytes. Code is whatever is not a string or a comment:
# in code, every `"` starts a string and every `#` a comment (names hold neither).
# A string with a backslash, a 0xFF byte or more bytes than the buffer holds
# misses the `string` alternative; _read_string reads it.
_SPAN = re.compile(
    rf"""(?P<code>[^"\#]+)
    | (?P<string>"[^"\\\xff]{{0,{_LONGEST}}}")
    | (?P<comment>\#[^\n\xff]*)[\n\xff]?
    | (?P<slow>")
    """,
    re.DOTALL | re.VERBOSE,
)
_CODE = re.compile(rf"[{_NAME_PART}][{_NAME_PART}.]*|[^ \t\n\v\f\r]")
_NAME_CHARS = frozenset("-_0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_DHCPD_NAME = re.compile(rf"[{_NAME_START}][{_NAME_PART}]{{0,{_LONGEST - 1}}}")
_EOF = 0xFF  # (char)0xFF == EOF in get_char
_ESCAPES = {ord("t"): 9, ord("r"): 13, ord("n"): 10, ord("b"): 8}


class Token(NamedTuple):
    kind: Kind
    # name, punct, comment, code: the bytes as written; string: the bytes dhcpd
    # keeps (escapes read, NULs kept); end: "". Bytes that are not UTF-8 are kept as
    # surrogates (surrogateescape), so value.encode(..., "surrogateescape") is exact.
    value: str
    line: int
    start: int  # byte offsets: data[start:end] is the token as written
    end: int

    @property
    def c_string(self) -> str:
        """The value up to its first NUL: what dhcpd's C code sees, e.g. the file an
        include opens."""
        return self.value.partition("\0")[0]


def tokens(data: bytes) -> list[Token]:
    """The tokens of one file, comments included."""
    return _scan(data, fine=True)


def spans(data: bytes) -> list[Token]:
    """The strings and comments of one file as tokens() reads them, and the code
    between them, each stretch one token of kind "code": far fewer to go through."""
    return _scan(data, fine=False)


def code_tokens(data: bytes, code: Token) -> list[Token]:
    """The tokens of one code span of spans(data), as tokens(data) has them."""
    text = data[code.start : code.end].decode("latin-1")
    return _code_tokens(text, (0, len(text)), code.start, code.line, None)


def dhcpd_tokens(word: str) -> list[str]:
    """dhcpd's own tokens in a name token: 192.0.2.1 is 192 . 0 . 2 . 1."""
    return _dhcpd_tokens(word)[0]


def last_name(word: str) -> str:
    """The last name dhcpd reads in a name token, "" when it ends in a dot:
    "include" for x.include, but "x_include" for x_include."""
    parts = dhcpd_tokens(word)
    return parts[-1] if parts and parts[-1] not in (".", "_") else ""


def decoded(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _scan(data: bytes, fine: bool) -> list[Token]:
    try:
        return _Scanner(data, None, fine).run()
    except _Unwritten:
        # A string kept bytes of the buffer that no byte of it wrote: they hold what
        # earlier tokens of the file left there, so read again, keeping the buffer.
        return _Scanner(data, bytearray(BUFFER), fine).run()


# Token(...) without the Python-level __new__ of a NamedTuple: a third faster, and
# a file of 50,000 host declarations has 1.3 million tokens.
_token = tuple.__new__


class _Unwritten(Exception):
    """A string used bytes of the buffer that only a kept buffer knows."""


class _Scanner:
    def __init__(self, data: bytes, buffer: bytearray | None, fine: bool) -> None:
        self.data = data
        self.text = data.decode("latin-1")
        self.buffer = buffer  # dhcpd's tokbuf, kept only when a string needs it
        self.fine = fine  # code as its tokens, or as one span
        self.out: list[Token] = []
        self.line = 1
        self.counted = 0  # newlines are counted up to here

    def run(self) -> list[Token]:
        pos: int | None = 0
        while pos is not None:
            pos = self._spans(pos)
        return self.out

    def _spans(self, pos: int) -> int | None:
        """Tokens from pos to the end, or to a string _read_string must read: after it."""
        text, out, buffer = self.text, self.out, self.buffer
        line, counted = self.line, self.counted
        for m in _SPAN.finditer(text, pos):
            kind = m.lastgroup or "slow"
            start, end = m.span(kind)
            line += text.count("\n", counted, start)
            counted = start
            if kind == "code":
                self._code(start, end, line)
            elif kind == "string":
                out.append(Token("string", self._decoded(start + 1, end - 1), line, start, end))
                if buffer is not None:
                    _write_string(buffer, text[start + 1 : end - 1])
            elif kind == "comment":
                out.append(Token("comment", self._decoded(start, end), line, start, end))
            else:
                self.line, self.counted = line, counted
                return self._string(start)
        return None

    def _code(self, start: int, end: int, line: int) -> None:
        found: list[Token] = []
        if self.fine or self.buffer is not None:  # a kept buffer needs every token read
            found = _code_tokens(self.text, (start, end), 0, line, self.buffer)
        if not self.fine:
            found = [Token("code", self._decoded(start, end), line, start, end)]
        self.out += found

    def _decoded(self, start: int, end: int) -> str:
        text = self.text[start:end]
        return text if text.isascii() else decoded(self.data[start:end])

    def _string(self, start: int) -> int:
        value, end, unwritten = _read_string(self.data, start + 1, self.buffer)
        if unwritten and self.buffer is None:
            raise _Unwritten
        self.out.append(Token("string", decoded(value), self.line, start, end))
        return end


def _code_tokens(
    text: str, span: tuple[int, int], base: int, line: int, buffer: bytearray | None
) -> list[Token]:
    """The names and punctuation of a stretch of code, text[start:end], on `line` at
    its start (text: the bytes as latin-1; text[0] is at offset `base` in them)."""
    out: list[Token] = []
    append, count, new = out.append, text.count, _token  # locals: the hottest loop
    start, end = span
    counted = after = start
    for m in _CODE.finditer(text, start, end):  # finditer steps over the whitespace
        a, b = m.span()
        line += count("\n", counted, a)
        counted, c = a, text[a]
        if buffer is not None:  # whitespace is a token too, read into the buffer
            _write(buffer, text[after:a], nul=c != "\xff")
            after = b
        if c in _NAME_CHARS:
            append(new(Token, ("name", text[a:b], line, base + a, base + b)))
            if buffer is not None:
                _write_names(buffer, text[a:b])
        elif c < "\x80":
            append(new(Token, ("punct", c, line, base + a, base + b)))
        elif c != "\xff":
            surrogate = chr(0xDC00 + ord(c))  # a lone byte >= 0x80 is never UTF-8
            append(Token("punct", surrogate, line, base + a, base + b))
        elif not (out and _ends_name(out[-1], base + a)):
            # 0xFF reads as EOF: the end-of-file token, unless it ends a name (which
            # ungets EOF, a no-op: the byte is gone)
            append(Token("end", "", line, base + a, base + b))
    if buffer is not None:
        _write(buffer, text[after:end])
    return out


def _ends_name(token: Token, at: int) -> bool:
    return token.kind == "name" and token.end == at and _dhcpd_tokens(token.value)[1]


def _dhcpd_tokens(word: str) -> tuple[list[str], bool]:
    """dhcpd's tokens in a name token: its names and the dots and underscores that
    start none; and whether the byte after the word is read as the end of a name."""
    parts: list[str] = []
    i, n = 0, len(word)
    reading = False
    while i < n:
        m = _DHCPD_NAME.match(word, i)
        if m is None:  # "." or an "_" where a name cannot start
            parts.append(word[i])
            i, reading = i + 1, False
            continue
        parts.append(m.group())
        i, reading = m.end(), True
        if len(parts[-1]) == _LONGEST and i < n and word[i] != ".":
            i, reading = i + 1, False  # read_number's 1,500th byte: read, then lost
    return parts, reading


def _read_string(data: bytes, pos: int, buffer: bytearray | None) -> tuple[bytes, int, bool]:
    """read_string from just after the opening quote: (the bytes kept, where reading
    stopped, whether a kept byte is one no byte of the string wrote)."""
    reader = _StringReader(buffer if buffer is not None else bytearray(BUFFER))
    while pos < len(data):  # else "eof in string constant"
        c = data[pos]
        pos += 1
        if c == _EOF or not reader.take(c):
            break
    return reader.kept(), pos, reader.unwritten


class _StringReader:
    """read_string's locals, and its loop body one byte at a time."""

    def __init__(self, buffer: bytearray) -> None:
        self.buffer = buffer
        self.i = 0  # the byte slot being written
        self.escape = 0  # conflex.c's bs: 1 after a backslash, 2 and 3 in its digits
        self.value = 0
        self.is_hex = False
        self.unwritten = False

    def take(self, c: int) -> bool:
        """One byte of the string; False when the string ends (its closing quote, or
        a full buffer: then the rest is code again)."""
        if self.escape == 1:
            done = self._escaped(c)
        elif self.escape > 1:
            done = self._digit(c)
        elif c == 0x5C:
            self.escape, done = 1, False
        elif c == 0x22:
            return False
        else:
            self.buffer[self.i], done = c, True
        if done:  # conflex.c's i++; a slot not done is its `goto again`
            self.i += 1
        return self.i < BUFFER

    def _escaped(self, c: int) -> bool:
        if c in _ESCAPES:
            self.buffer[self.i] = _ESCAPES[c]
        elif 0x30 <= c <= 0x33 or c == 0x78:  # \0 to \3, \x: digits follow
            self.is_hex, self.value, self.escape = c == 0x78, 0 if c == 0x78 else c - 0x30, 2
            return False
        else:
            self.buffer[self.i] = c  # \" \\ \q ...: the byte itself
        self.escape = 0
        return True

    def _digit(self, c: int) -> bool:
        digit = _digit(c, self.is_hex)
        if digit is None and (self.is_hex or self.value != 0):
            # "invalid digit": the byte is swallowed, the slot left as it was; after
            # a nonzero octal digit, octal digits are still awaited
            self.escape = 0 if self.is_hex else self.escape
            self.unwritten = True
            return True
        if digit is None:
            self.buffer[self.i] = 0  # \0 and a non-digit: NUL, and the next byte escaped
            self.escape = 1
            return False
        self.value = self.value * (16 if self.is_hex else 8) + digit
        self.escape += 1
        if self.escape < 4:
            return False
        self.buffer[self.i] = self.value & 0xFF
        self.escape = 0
        return True

    def kept(self) -> bytes:
        # "string constant larger than internal buffer": its last byte gives way to the NUL
        i = min(self.i, _LONGEST)
        self.buffer[i] = 0
        return bytes(self.buffer[:i])


def _digit(c: int, is_hex: bool) -> int | None:
    if 0x30 <= c <= (0x39 if is_hex else 0x37):
        return c - 0x30
    if is_hex and 0x61 <= (c | 0x20) <= 0x66:
        return (c | 0x20) - 0x61 + 10
    return None


def _write(buffer: bytearray, text: str, nul: bool = True) -> None:
    """A token (or a run of whitespace) as read into the buffer, with its NUL."""
    if not text:
        return
    raw = text.encode("latin-1")[:_LONGEST]
    buffer[: len(raw)] = raw
    if nul:
        buffer[len(raw)] = 0


def _write_string(buffer: bytearray, text: str) -> None:
    """A plain string as read_string leaves the buffer: its bytes and a NUL; an empty
    string "" writes that NUL too, at the buffer's start."""
    if text:
        _write(buffer, text)
    else:
        buffer[0] = 0


def _write_names(buffer: bytearray, word: str) -> None:
    for part in _dhcpd_tokens(word)[0]:
        if part not in (".", "_"):  # single-byte tokens live in a buffer of their own
            _write(buffer, part)
