"""The quicbench /bytes/N body pattern (a port of wire/src/pattern.rs).

Each aligned 8-byte word w of the body is splitmix64(w), little-endian, so any
slice of a body can be checked on its own.
"""

import struct

_MASK = (1 << 64) - 1


def splitmix64(x: int) -> int:
    z = (x + 0x9E3779B97F4A7C15) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def chunk(offset: int, length: int) -> bytes:
    """Pattern bytes offset..offset+length."""
    if length <= 0:
        return b""
    first = offset // 8
    last = (offset + length + 7) // 8
    words = b"".join(struct.pack("<Q", splitmix64(w)) for w in range(first, last))
    start = offset - first * 8
    return words[start : start + length]


def first_mismatch(offset: int, data: bytes):
    """Index of the first byte of data that differs from the pattern at offset, or None."""
    step = 1 << 16
    for i in range(0, len(data), step):
        part = data[i : i + step]
        want = chunk(offset + i, len(part))
        if part != want:
            for k, (a, b) in enumerate(zip(part, want)):
                if a != b:
                    return i + k
    return None


if __name__ == "__main__":
    # Self-check against values computed by the Rust implementation's definition.
    assert chunk(0, 8) == struct.pack("<Q", splitmix64(0))
    assert chunk(3, 10) == chunk(0, 13)[3:]
    assert first_mismatch(5, chunk(5, 1000)) is None
    bad = bytearray(chunk(0, 100))
    bad[42] ^= 1
    assert first_mismatch(0, bytes(bad)) == 42
    print("pattern.py ok")
