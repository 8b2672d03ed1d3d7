"""ISC DHCP's common/conflex.c (4.4.3), transliterated line by line: the reference the
lexer (agent/servers/dhcpd/lexer.py) is checked against. Slow, plain and literal on
purpose: get_char, unget_char, get_raw_token, read_whitespace, skip_to_eol,
read_string, read_number and read_num_or_name, with their shared tokbuf.

Tokens come out as dhcpd's parser receives them, whitespace left out:
(kind, value bytes, line, start offset), kind "name", "string", "punct" or "end"
(END_OF_FILE from a 0xFF byte; the real end of the file ends the list).
"""

from __future__ import annotations

from typing import Literal

EOF = -1
TOKBUF = 1500
_SPACE = frozenset(b" \t\n\v\f\r")  # isascii(c) && isspace(c) in the C locale
_DIGIT = frozenset(b"0123456789")
_XDIGIT = frozenset(b"0123456789abcdefABCDEF")
_ALPHA = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_ALNUM = _ALPHA | _DIGIT

Action = Literal["again", "continue", "break", "next"]
Ref = tuple[str, bytes, int, int]


class Fatal(Exception):
    """log_fatal: dhcpd exits ("whitespace too long, buffer overflow")."""


class Conflex:
    def __init__(self, data: bytes) -> None:
        self.inbuf = data
        self.bufix = 0
        self.line = 1
        self.ugflag = False
        self.tokbuf = bytearray(TOKBUF)
        self.bs = self.value = self.hex = 0
        self.read_at = -1  # offset of the byte get_char read last; len(inbuf): the end

    def tokens(self) -> list[Ref]:
        """Every token up to the end of the file; up to the fatal error, if one comes."""
        out: list[Ref] = []
        try:
            while True:
                kind, value, line, start = self.get_raw_token()
                if kind == "end" and start == len(self.inbuf):
                    return out
                if kind != "whitespace":
                    out.append((kind, value, line, start))
        except Fatal:
            return out

    def get_char(self) -> int:
        if self.bufix == len(self.inbuf):
            c = EOF
            self.read_at = len(self.inbuf)
        else:
            c = self.inbuf[self.bufix]
            c = c - 256 if c >= 128 else c  # inbuf is char *, and char is signed
            self.read_at = self.bufix
            self.bufix += 1
        if not self.ugflag:
            if c == ord("\n"):
                self.line += 1
        else:
            self.ugflag = False
        return c

    def unget_char(self, c: int) -> None:
        if c != EOF:
            self.bufix -= 1
            self.ugflag = True

    def get_raw_token(self) -> Ref:
        while True:
            line, start = self.line, self.bufix
            c = self.get_char()
            if 0 <= c < 128 and c in _SPACE:
                return self.read_whitespace(c)
            if c == ord("#"):
                self.skip_to_eol()
                continue
            if c == ord('"'):
                return ("string", self.read_string(), line, start)
            if (0 <= c < 128 and c in _DIGIT) or c == ord("-"):
                return ("name", self.read_number(c), line, start)
            if 0 <= c < 128 and c in _ALPHA:
                return ("name", self.read_num_or_name(c), line, start)
            if c == EOF:
                return ("end", b"", self.line, self.read_at)
            return ("punct", bytes([c & 0xFF]), line, start)

    def skip_to_eol(self) -> None:
        while True:
            c = self.get_char()
            if c == EOF or c == ord("\n"):
                return

    def read_whitespace(self, c: int) -> Ref:
        ofs = 0
        while True:
            if ofs >= TOKBUF - 1:
                raise Fatal
            self.tokbuf[ofs] = c
            ofs += 1
            c = self.get_char()
            if c == EOF:
                return ("end", b"", self.line, self.read_at)
            if not (0 <= c < 128 and c in _SPACE):
                break
        self.unget_char(c)
        self.tokbuf[ofs] = 0
        return ("whitespace", b"", self.line, 0)

    def read_string(self) -> bytes:
        self.bs = self.value = self.hex = 0
        i = 0
        while i < TOKBUF:  # for (i = 0; i < sizeof cfile -> tokbuf; i++)
            action = self._string_char(i)
            while action == "again":  # goto again: the same i, no bound check
                action = self._string_char(i)
            if action == "break":
                break
            i += 1  # `continue` and the end of the body alike
        if i == TOKBUF:  # "string constant larger than internal buffer"
            i -= 1
        self.tokbuf[i] = 0
        return bytes(self.tokbuf[:i])

    def _string_char(self, i: int) -> Action:
        """One pass of the loop's body, which conflex.c writes as one body."""
        c = self.get_char()
        if c == EOF:  # "eof in string constant"
            return "break"
        if self.bs == 1:
            if c == ord("t"):
                self.tokbuf[i] = ord("\t")
            elif c == ord("r"):
                self.tokbuf[i] = ord("\r")
            elif c == ord("n"):
                self.tokbuf[i] = ord("\n")
            elif c == ord("b"):
                self.tokbuf[i] = ord("\b")
            elif ord("0") <= c <= ord("3"):
                self.hex = 0
                self.value = c - ord("0")
                self.bs += 1
                return "again"
            elif c == ord("x"):
                self.hex = 1
                self.value = 0
                self.bs += 1
                return "again"
            else:
                self.tokbuf[i] = c & 0xFF
            self.bs = 0
        elif self.bs > 1:
            if self.hex:
                if ord("0") <= c <= ord("9"):
                    self.value = self.value * 16 + (c - ord("0"))
                elif ord("a") <= c <= ord("f"):
                    self.value = self.value * 16 + (c - ord("a") + 10)
                elif ord("A") <= c <= ord("F"):
                    self.value = self.value * 16 + (c - ord("A") + 10)
                else:  # "invalid hex digit"
                    self.bs = 0
                    return "continue"
                self.bs += 1
                if self.bs == 4:
                    self.tokbuf[i] = self.value & 0xFF
                    self.bs = 0
                else:
                    return "again"
            else:
                if ord("0") <= c <= ord("7"):
                    self.value = self.value * 8 + (c - ord("0"))
                else:
                    if self.value != 0:  # "invalid octal digit"
                        return "continue"
                    self.tokbuf[i] = 0
                    self.bs = 0
                self.bs += 1
                if self.bs == 4:
                    self.tokbuf[i] = self.value & 0xFF
                    self.bs = 0
                else:
                    return "again"
        elif c == ord("\\"):
            self.bs = 1
            return "again"
        elif c == ord('"'):
            return "break"
        else:
            self.tokbuf[i] = c & 0xFF
        return "next"

    def read_number(self, c: int) -> bytes:
        i = 0
        token = "NUMBER"
        self.tokbuf[i] = c
        i += 1
        while i < TOKBUF:
            c = self.get_char()
            state = token if 0 <= c < 128 else "BREAK"
            if state == "NUMBER":
                if c in _DIGIT:
                    self.tokbuf[i] = c
                    i += 1
                    continue
                state = "NUMBER_OR_NAME"  # FALLTHROUGH
            if state == "NUMBER_OR_NAME":
                if c in _XDIGIT:
                    token = "NUMBER_OR_NAME"
                    self.tokbuf[i] = c
                    i += 1
                    continue
                state = "NAME"  # FALLTHROUGH
            if state == "NAME":
                if (
                    i == 2
                    and c in _XDIGIT
                    and self.tokbuf[0] == ord("0")
                    and self.tokbuf[1] in b"xX"
                ):
                    token = "NUMBER_OR_NAME"
                    self.tokbuf[i] = c
                    i += 1
                    continue
                if c in b"-_" or c in _ALNUM:
                    token = "NAME"
                    self.tokbuf[i] = c
                    i += 1
                    continue
            self.unget_char(c)  # BREAK
            return self._ended(i)
        return self._ended(i - 1)  # "numeric token larger than internal buffer"

    def read_num_or_name(self, c: int) -> bytes:
        i = 0
        self.tokbuf[i] = c
        i += 1
        while i < TOKBUF:
            c = self.get_char()
            if not 0 <= c < 128 or (c not in b"-_" and c not in _ALNUM):
                self.unget_char(c)
                break
            self.tokbuf[i] = c
            i += 1
        if i == TOKBUF:  # "token larger than internal buffer"
            i -= 1
        return self._ended(i)

    def _ended(self, i: int) -> bytes:
        self.tokbuf[i] = 0
        return bytes(self.tokbuf[:i])
