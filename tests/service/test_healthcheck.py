"""``python -m service.healthcheck``: the serving image's probe, against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.healthcheck import check, probe
from tests.service.support import free_port

REPO = Path(__file__).resolve().parents[2]


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802  (http.server's name)
        self.send_response(200 if self.path == "/healthz" else 503)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    """A stdlib HTTP server answering 200 on /healthz and 503 elsewhere."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_probe_and_check(server: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert probe(f"{server}/healthz") == 200 and check(f"{server}/healthz") == 0
    assert probe(f"{server}/readyz") == 503 and check(f"{server}/readyz") == 1
    assert "unhealthy: GET" in capsys.readouterr().err
    assert probe(f"http://127.0.0.1:{free_port()}/healthz", timeout=2) is None


def test_module_exit_status_and_it_imports_only_the_standard_library(server: str) -> None:
    script = (
        "import runpy, sys\n"
        "before = set(sys.modules)\n"
        "sys.argv = ['healthcheck', sys.argv[1]]\n"
        "try:\n"
        "    runpy.run_module('service.healthcheck', run_name='__main__')\n"
        "except SystemExit:\n"
        "    new = {m.split('.')[0] for m in set(sys.modules) - before}\n"
        "    print(sorted(new - set(sys.stdlib_module_names) - {'service'}))\n"
        "    raise\n"
    )
    ok = subprocess.run([sys.executable, "-c", script, f"{server}/healthz"], cwd=REPO, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "[]", "the probe runs every few seconds: a bare interpreter, no third-party import"
    bad = subprocess.run([sys.executable, "-m", "service.healthcheck", f"{server}/nope"], cwd=REPO, capture_output=True)
    assert bad.returncode == 1
