"""A real Milvus standalone server for tests and benchmarks, reachable from this machine's loopback only.

The ``milvus`` package (dev extra) ships the Milvus 2.3 standalone binary; its gRPC servers listen on every
interface and its embedded etcd on fixed ports, which no setting changes. So the server runs in a network namespace
of its own that holds only a loopback interface (nothing outside can reach it, and its fixed ports cannot collide
with another server's), and this process publishes its proxy port on ``127.0.0.1:<free port>`` through a relay
thread per connection that opens its upstream socket inside that namespace (``setns``). Creating a network
namespace needs root (CAP_SYS_ADMIN); without it ``start`` fails and says so.

Used by the ``milvus_server`` session fixture (``tests/conftest.py``) and ``bench/search.py --backend milvus``; it lives
here so that the benchmark does not import the tests. ``python bench/milvus_server.py DIR`` serves until Ctrl+C.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import http.client
import os
import selectors
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

CLONE_NEWNET = 0x40000000
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1
_METRICS_PORT = 9091  # Milvus's health endpoint, inside the namespace
_COMPONENTS = ("proxy", "rootCoord", "queryCoord", "queryNode", "indexCoord", "indexNode", "dataCoord", "dataNode")
_libc = ctypes.CDLL(None, use_errno=True)


def _enter_new_netns() -> None:
    """In the child before exec: a network namespace of its own, its loopback up (a new namespace's is down)."""
    if _libc.unshare(CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare(CLONE_NEWNET) failed ({os.strerror(err)}); the Milvus test server needs root")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sh", b"lo", 0)
        flags = struct.unpack("16sh", fcntl.ioctl(s.fileno(), _SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(s.fileno(), _SIOCSIFFLAGS, struct.pack("16sh", b"lo", flags | _IFF_UP))


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pump(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until either side closes."""
    sel = selectors.DefaultSelector()
    sel.register(a, selectors.EVENT_READ, b)
    sel.register(b, selectors.EVENT_READ, a)
    try:
        while True:
            for key, _ in sel.select():
                data = key.fileobj.recv(1 << 16)  # type: ignore[union-attr]
                if not data:
                    return
                key.data.sendall(data)
    except OSError:
        return
    finally:
        sel.close()
        a.close()
        b.close()


class LocalMilvusServer:
    """Milvus standalone on ``base_dir`` in its own network namespace, published on ``127.0.0.1:port``."""

    def __init__(self, base_dir: Path, port: int | None = None) -> None:
        """Nothing runs until ``start``; ``port`` (default: a free one) stays the same across restarts."""
        self.base_dir = Path(base_dir).resolve()
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._listener: socket.socket | None = None
        self._inner_port = 19530

    @property
    def uri(self) -> str:
        """What a client connects to."""
        return f"http://127.0.0.1:{self.port}"

    def _netns(self) -> str:
        if self.proc is None:
            raise ConnectionRefusedError("the Milvus server is stopped")
        return f"/proc/{self.proc.pid}/ns/net"

    def connect_inside(self, port: int, timeout: float = 5.0) -> socket.socket:
        """A TCP connection to ``127.0.0.1:port`` inside the server's namespace (the calling thread moves there)."""
        with open(self._netns()) as ns:
            if _libc.setns(ns.fileno(), CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns into the Milvus server's network namespace failed")
        return socket.create_connection(("127.0.0.1", port), timeout=timeout)

    def _relay(self, client: socket.socket) -> None:
        try:
            upstream = self.connect_inside(self._inner_port)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        _pump(client, upstream)

    def _accept_loop(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True, name="milvus relay").start()

    def start(self, timeout_s: float = 120.0) -> None:
        """Start the server (data kept in ``base_dir`` across restarts) and wait until it answers its health check."""
        from milvus import MilvusServerConfig, _initialize_data_files  # the dev extra's server package

        config = MilvusServerConfig(data_dir=str(self.base_dir))
        for component in _COMPONENTS:
            config.set(f"{component}.ip", "127.0.0.1")
        config.resolve()  # writes the server config (milvus.yaml) under base_dir
        self._inner_port = int(config.get("proxy_port"))
        _initialize_data_files(str(self.base_dir))
        exe = self.base_dir / "bin" / "milvus"
        env = {
            **os.environ,
            "DEPLOY_MODE": "STANDALONE",
            "METRICS_PORT": str(_METRICS_PORT),
            "MILVUS_RUN_DIR": str(self.base_dir / "run"),
            "LD_LIBRARY_PATH": f"{exe.parent}:{os.environ.get('LD_LIBRARY_PATH', '')}",
        }
        log = open(self.base_dir / "logs" / "milvus-stdout.log", "ab")  # noqa: SIM115 (the child holds it)
        self.proc = subprocess.Popen(
            [str(exe), "run", "standalone"],
            cwd=self.base_dir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_enter_new_netns,  # noqa: PLW1509 (single-threaded child up to exec)
        )
        log.close()
        if self._listener is None:
            self._listener = socket.create_server(("127.0.0.1", self.port))
            threading.Thread(target=self._accept_loop, args=(self._listener,), daemon=True).start()
        self._wait_healthy(timeout_s)

    def _healthy(self) -> bool:
        result: list[bool] = []

        def probe() -> None:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", _METRICS_PORT, timeout=2)
                conn.sock = self.connect_inside(_METRICS_PORT, timeout=2)
                conn.request("GET", "/healthz")
                result.append(b"OK" in conn.getresponse().read())
                conn.close()
            except OSError:
                result.append(False)

        thread = threading.Thread(target=probe)  # setns moves the thread; keep the caller where it is
        thread.start()
        thread.join()
        return result[0]

    def _wait_healthy(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"Milvus exited early; see {self.base_dir / 'logs'}")
            if self._healthy():
                return
            time.sleep(0.2)
        raise TimeoutError(f"Milvus did not become healthy in {timeout_s} s; see {self.base_dir / 'logs'}")

    def stop(self) -> None:
        """Stop the server process (SIGTERM, then SIGKILL after 5 s); the published port stays open."""
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def close(self) -> None:
        """Stop the server and the relay."""
        self.stop()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None


if __name__ == "__main__":
    server = LocalMilvusServer(Path(sys.argv[1]))
    server.start()
    print(f"Milvus serving at {server.uri}; Ctrl+C stops it", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.close()
