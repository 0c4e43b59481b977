"""The service as a real uvicorn subprocess on 127.0.0.1 (for tests that kill it or load it from outside)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cli.demo import wait_ready
from service.settings import Settings

REPO = Path(__file__).resolve().parents[2]
# A socket bound here and handed over: no port race, and requests wait in the backlog while the app loads.
_LAUNCHER = (
    "import socket, sys, uvicorn; sock = socket.socket(fileno=int(sys.argv[1])); "
    "uvicorn.Server(uvicorn.Config('service.app:create_app', factory=True, log_level='warning', "
    "access_log=False)).run(sockets=[sock])"
)


def settings_env(settings: Settings) -> dict[str, str]:
    """``VIREID_*`` variables that make ``Settings()`` in the child equal ``settings``."""
    env = {}
    for name, value in settings.model_dump(mode="json").items():
        secret = getattr(settings, name)
        if value is None:
            continue
        if hasattr(secret, "get_secret_value"):
            value = secret.get_secret_value()
        env[f"VIREID_{name.upper()}"] = value if isinstance(value, str) else json.dumps(value)
    return env


@dataclass
class ServiceProcess:
    """A running ``uvicorn --factory service.app:create_app`` child and its base URL."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def kill(self) -> None:
        """SIGKILL the child (no shutdown code runs) and reap it."""
        self.process.send_signal(signal.SIGKILL)
        assert self.process.wait(timeout=60) == -signal.SIGKILL


@contextmanager
def service_process(settings: Settings, log: Path) -> Iterator[ServiceProcess]:
    """Start the service with ``settings`` in a child process, wait until it is ready, stop it on exit."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(512)
    port = sock.getsockname()[1]
    env = {**os.environ, **settings_env(settings), "PYTHONPATH": str(REPO)}  # this checkout's code, not main's
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", _LAUNCHER, str(sock.fileno())],
            cwd=REPO,
            env=env,
            pass_fds=[sock.fileno()],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    sock.close()  # the child holds its own copy
    service = ServiceProcess(process, f"http://127.0.0.1:{port}", log)
    try:
        wait_ready(service.url, process, log, timeout=120)  # fails with the log's tail if the child exits
        yield service
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=60)
