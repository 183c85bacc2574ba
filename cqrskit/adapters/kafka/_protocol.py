"""Kafka's ApiVersions exchange, to learn the cluster's ``metadata.version``.

No Kafka client for Python exposes the broker's software version, and the
protocol does not carry it. What every broker does report, in its
ApiVersions response, is the finalized ``metadata.version`` feature, whose
level names the release line (level 30 is 4.3-IV0). ``cqrskit doctor``
shows that; nothing else depends on it.
"""

from __future__ import annotations

import socket
import struct

__all__ = ["metadata_version"]

_API_VERSIONS = 18
_REQUEST_VERSION = 3

# Feature levels of metadata.version, from Kafka's MetadataVersion enum.
_RELEASES = {
    7: "3.3-IV3", 8: "3.4-IV0", 9: "3.5-IV0", 10: "3.5-IV1", 11: "3.5-IV2",
    12: "3.6-IV0", 13: "3.6-IV1", 14: "3.6-IV2", 15: "3.7-IV0", 16: "3.7-IV1",
    17: "3.7-IV2", 18: "3.7-IV3", 19: "3.7-IV4", 20: "3.8-IV0", 21: "3.9-IV0",
    22: "4.0-IV0", 23: "4.0-IV1", 24: "4.0-IV2", 25: "4.0-IV3", 26: "4.1-IV0",
    27: "4.1-IV1", 28: "4.2-IV0", 29: "4.2-IV1", 30: "4.3-IV0", 31: "4.4-IV0",
}  # fmt: skip


def metadata_version(host: str, port: int, timeout: float) -> str | None:
    """The cluster's finalized metadata.version, e.g. ``4.3-IV0``; None if unreported.

    Raises:
        OSError: the broker could not be reached or closed the connection.
        ValueError: the response could not be parsed.
    """
    software = b"cqrskit"
    body = _compact_string(software) + _compact_string(b"doctor") + b"\x00"
    header = struct.pack(">hhi", _API_VERSIONS, _REQUEST_VERSION, 1)
    header += struct.pack(">h", len(software)) + software + b"\x00"
    request = header + body
    with socket.create_connection((host, port), timeout=timeout) as conn:
        conn.sendall(struct.pack(">i", len(request)) + request)
        size = struct.unpack(">i", _read(conn, 4))[0]
        response = _read(conn, size)
    level = _finalized_level(response, b"metadata.version")
    if level is None:
        return None
    return _RELEASES.get(level, f"level {level}")


def _read(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise OSError("the broker closed the connection")
        data += chunk
    return data


def _compact_string(value: bytes) -> bytes:
    return _uvarint(len(value) + 1) + value


def _uvarint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


class _Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, size: int) -> bytes:
        if self.pos + size > len(self.data):
            raise ValueError("truncated ApiVersions response")
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk

    def int16(self) -> int:
        return int(struct.unpack(">h", self.take(2))[0])

    def uvarint(self) -> int:
        shift = result = 0
        while True:
            byte = self.take(1)[0]
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return result
            shift += 7

    def skip_tags(self) -> None:
        for _ in range(self.uvarint()):
            self.uvarint()
            self.take(self.uvarint())


def _finalized_level(response: bytes, feature: bytes) -> int | None:
    r = _Reader(response)
    r.take(4)  # correlation id (ApiVersions responses use header v0)
    error = r.int16()
    if error:
        raise ValueError(f"ApiVersions failed with error code {error}")
    for _ in range(r.uvarint() - 1):
        r.take(6)  # api key, min version, max version
        r.skip_tags()
    r.take(4)  # throttle time
    for _ in range(r.uvarint()):
        tag, size = r.uvarint(), r.uvarint()
        if tag != 2:  # FinalizedFeatures
            r.take(size)
            continue
        for _ in range(r.uvarint() - 1):
            name = r.take(r.uvarint() - 1)
            max_level = r.int16()
            r.int16()
            r.skip_tags()
            if name == feature:
                return max_level
        return None
    return None
