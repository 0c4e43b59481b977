"""The Milvus test server (bench/milvus_server.py) is reachable from this machine's loopback only."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def _listening(tcp_table: str) -> list[tuple[str, int]]:
    """(hex address, port) of the LISTEN sockets in a /proc/<pid>/net/tcp{,6} table."""
    out = []
    for line in tcp_table.splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        if state == "0A":
            address, port = local.split(":")
            out.append((address, int(port, 16)))
    return out


@pytest.mark.slow
def test_server_sockets_are_loopback_only(milvus_server: object) -> None:
    pid = milvus_server.proc.pid  # type: ignore[attr-defined]
    port = milvus_server.port  # type: ignore[attr-defined]
    # The server lives in a network namespace of its own whose only interface is loopback ...
    assert os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net")
    devices = [line.split(":")[0].strip() for line in Path(f"/proc/{pid}/net/dev").read_text().splitlines()[2:]]
    assert devices == ["lo"]
    inside = _listening(Path(f"/proc/{pid}/net/tcp").read_text()) + _listening(
        Path(f"/proc/{pid}/net/tcp6").read_text()
    )
    assert any(p == 19530 for _, p in inside)  # its gRPC proxy, and etcd, coordinators ... all in there
    # ... and what this namespace sees of it is the relay, bound to 127.0.0.1 alone.
    mine = _listening(Path("/proc/self/net/tcp").read_text()) + _listening(Path("/proc/self/net/tcp6").read_text())
    assert [a for a, p in mine if p == port] == ["0100007F"]
