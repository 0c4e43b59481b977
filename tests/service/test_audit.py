"""The audit log: exactly one JSON line per gallery add or delete, by key role, never with the key itself."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.app import create_app
from service.audit import AUDIT_LOGGER, audited_action
from service.settings import Settings
from tests.service.support import files, image_bytes, serve, with_settings

pytestmark = pytest.mark.anyio

REPO = Path(__file__).resolve().parents[2]
WRITE_KEY, READ_KEY = "w-s3cret-7f3a", "r-s3cret-91bc"


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("POST", "/gallery", ("gallery.add", [])),
        ("DELETE", "/gallery/17", ("gallery.delete", [17])),
        ("DELETE", "/gallery/x", ("gallery.delete", [])),
        ("DELETE", "/gallery/", None),
        ("GET", "/gallery/17", None),
        ("POST", "/search", None),
        ("DELETE", "/gallery/1/2", None),
    ],
)
def test_audited_actions(method: str, path: str, expected: object) -> None:
    assert audited_action(method, path) == expected


async def writes_and_reads(client: httpx.AsyncClient) -> list[int]:
    """Two adds (one refused), two deletes (one of a missing id) and reads that are not audited; the ids added."""
    write, read = {"X-API-Key": WRITE_KEY}, {"X-API-Key": READ_KEY}
    added = await client.post(
        "/gallery", params={"modality": "vis"}, files=files(image_bytes(1), image_bytes(2)), headers=write
    )
    assert added.status_code == 201
    ids = [int(i) for i in added.json()["ids"]]
    refused = await client.post("/gallery", params={"modality": "ir"}, files=files(image_bytes(3)), headers=read)
    assert refused.status_code == 403
    assert (await client.delete(f"/gallery/{ids[0]}", headers=write)).status_code == 204
    assert (await client.delete("/gallery/999", headers=write)).status_code == 404
    assert (await client.get("/gallery", headers=read)).status_code == 200
    assert (await client.post("/embed", params={"modality": "ir"}, files=files(image_bytes(4)))).status_code == 200
    return ids


def expected_events(ids: list[int]) -> list[dict[str, Any]]:
    """The audit events ``writes_and_reads`` produces, without their time."""
    client = "127.0.0.1"  # httpx.ASGITransport's client address
    return [
        {"action": "gallery.add", "key": "write", "client": client, "ids": ids, "count": 2, "status": 201},
        {"action": "gallery.add", "key": "read", "client": client, "ids": [], "count": 0, "status": 403},
        {"action": "gallery.delete", "key": "write", "client": client, "ids": ids[:1], "count": 1, "status": 204},
        {"action": "gallery.delete", "key": "write", "client": client, "ids": [999], "count": 0, "status": 404},
    ]


def without_time(lines: list[str], since: datetime) -> list[dict[str, Any]]:
    """The events of ``lines``, each checked to carry a UTC ISO-8601 time from ``since`` on, then dropped."""
    events = [json.loads(line) for line in lines]
    for event in events:
        time = datetime.fromisoformat(event.pop("time"))
        assert time.utcoffset() == timedelta(0) and since <= time <= datetime.now(UTC)
    return events


async def test_add_and_delete_append_exactly_these_lines_to_the_file(settings: Settings, tmp_path: Path) -> None:
    audit_file = tmp_path / "audit.jsonl"
    assert not audit_file.exists()
    protected = with_settings(settings, api_key=WRITE_KEY, read_api_key=READ_KEY, audit_log=audit_file)
    since = datetime.now(UTC).replace(microsecond=0)
    async with serve(protected) as (_, client):
        assert audit_file.read_text() == ""  # created at start-up
        ids = await writes_and_reads(client)
        text = audit_file.read_text()  # flushed line by line, while the service runs
    assert text.endswith("\n")
    assert without_time(text.splitlines(), since) == expected_events(ids)
    assert WRITE_KEY not in text and READ_KEY not in text


async def test_the_audit_goes_to_the_vireid_audit_logger_by_default(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    protected = with_settings(settings, api_key=WRITE_KEY, read_api_key=READ_KEY)
    since = datetime.now(UTC).replace(microsecond=0)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.WARNING)  # a quiet service log still carries the audit
    try:
        async with serve(protected) as (_, client):
            ids = await writes_and_reads(client)
    finally:
        root.setLevel(level)
    lines = [r.getMessage() for r in caplog.records if r.name == AUDIT_LOGGER]
    assert {r.levelno for r in caplog.records if r.name == AUDIT_LOGGER} == {logging.INFO}
    assert without_time(lines, since) == expected_events(ids)
    assert WRITE_KEY not in caplog.text and READ_KEY not in caplog.text


def test_audit_lines_reach_stderr_when_nothing_configured_logging() -> None:
    """Plain ``uvicorn --factory`` configures no root handler: the audit lines still go to stderr."""
    code = "from service.audit import AuditLog; AuditLog(None).write({'action': 'gallery.add', 'ids': [1]})"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert done.stderr == '{"action":"gallery.add","ids":[1]}\n'


def test_an_audit_log_that_cannot_be_written_fails_at_startup(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(OSError, match="VIREID_AUDIT_LOG=.*cannot append"):
        create_app(with_settings(settings, audit_log=tmp_path / "missing" / "audit.jsonl"))
