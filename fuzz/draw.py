"""Structured inputs from the fuzzer's bytes, without atheris: `Draw` reads the bytes as a
sequence of choices (a byte a choice, zeros once the input is used up), so a corpus file always
means the same input and replays in `make test` without the fuzzer.

The pools put the ordinary value first (an exhausted input draws zeros: a plain, valid
message) and then the values at and across the protocol's bounds, the database's column
limits and the characters that break text: where a writer bug would hide.
"""

from __future__ import annotations

import struct


class Draw:
    """Choices read from bytes; past the end every choice is 0."""

    def __init__(self, data: bytes):
        self.data = data
        self.i = 0

    def byte(self) -> int:
        if self.i >= len(self.data):
            return 0
        b = self.data[self.i]
        self.i += 1
        return b

    def uint(self, n: int) -> int:
        """An n-byte unsigned integer (big-endian)."""
        value = 0
        for _ in range(n):
            value = value << 8 | self.byte()
        return value

    def pick(self, pool):
        return pool[self.byte() % len(pool)]

    def chance(self, in256: int) -> bool:
        """True with probability in256/256 (false on exhausted input)."""
        return self.byte() >= 256 - in256 if in256 else False

    def blob(self, max_len: int) -> bytes:
        n = self.byte() % (max_len + 1)
        out = self.data[self.i:self.i + n]
        self.i += n
        return out

    def rest(self) -> bytes:
        out = self.data[self.i:]
        self.i = len(self.data)
        return out

    def float64(self) -> float:
        return struct.unpack(">d", self.uint(8).to_bytes(8, "big"))[0]

    def text(self, max_len: int = 48) -> str:
        """Any text, lone surrogates included (bytes taken as UTF-16 code units in pairs)."""
        raw = self.blob(max_len * 2)
        if self.chance(128):
            return raw.decode("utf-8", "replace")
        return "".join(chr(int.from_bytes(raw[i:i + 2], "big"))
                       for i in range(0, len(raw) - 1, 2))
