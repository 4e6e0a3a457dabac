"""Consistent Overhead Byte Stuffing (Cheshire & Baker, IEEE/ACM Trans. Networking 7(2), 1999).

Encodes any bytes without 0x00, so 0x00 can delimit frames on a byte stream: a receiver that
starts mid-stream, or loses bytes, resynchronises at the next 0x00. Overhead: 1 byte per 254.
Canonical form (as the Wikipedia "Consistent Overhead Byte Stuffing" examples): a final run of
exactly 254 non-zero bytes ends with its 0xFF group, without an extra 0x01.
"""

from __future__ import annotations


def cobs_encode(data: bytes) -> bytes:
    """COBS-encode ``data`` (no delimiter added)."""
    blocks = bytes(data).split(b"\x00")
    out = bytearray()
    for k, block in enumerate(blocks):
        last = k == len(blocks) - 1
        while len(block) >= 254:
            out.append(0xFF)
            out += block[:254]
            block = block[254:]
            if not block and last:
                return bytes(out)
        out.append(len(block) + 1)
        out += block
    return bytes(out)


def cobs_decode(data: bytes) -> bytes | None:
    """Decode one COBS frame (delimiter already removed); None if it is not valid COBS."""
    data = bytes(data)
    out = bytearray()
    i = 0
    n = len(data)
    while i < n:
        code = data[i]
        end = i + code
        if code == 0 or end > n:
            return None
        out += data[i + 1 : end]
        i = end
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)
