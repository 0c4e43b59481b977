"""Load and fault tests against the service as a real uvicorn subprocess on 127.0.0.1 with the tiny ONNX models.

kill -9 during a stream of writes, a burst of 200 mixed concurrent requests, a flood past ``VIREID_MAX_QUEUE``.
Each is bounded in requests and time; none depends on timing to pass (the flood runs until it has been refused).
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.settings import Settings
from tests.service.process import ServiceProcess, service_process
from tests.service.support import files, image_bytes, with_settings

pytestmark = pytest.mark.slow

WRITERS = 4


def all_items(client: httpx.Client) -> dict[int, str | None]:
    """Every gallery item's id and label, paging through GET /gallery."""
    items: dict[int, str | None] = {}
    while True:
        page = client.get("/gallery", params={"offset": len(items), "limit": 1000})
        assert page.status_code == 200, page.text
        batch = page.json()["items"]
        if not batch:
            return items
        items.update({i["id"]: i["label"] for i in batch})


class WriteStream:
    """``WRITERS`` threads adding labelled single images and deleting their own earlier items until the link dies.

    Records what the service acknowledged; any status other than 201/204 is kept in ``unexpected``.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.added: dict[int, str] = {}  # acknowledged adds: id -> label
        self.deleted: set[int] = set()  # acknowledged deletes
        self.unexpected: list[str] = []
        self.acks = 0
        self.changed = threading.Condition()
        self.threads = [threading.Thread(target=self._write, args=(w,), daemon=True) for w in range(WRITERS)]

    def _ack(self, record: Callable[[], None]) -> None:
        with self.changed:
            record()
            self.acks += 1
            self.changed.notify_all()

    def _write(self, writer: int) -> None:
        mine: list[int] = []
        with httpx.Client(base_url=self.url, timeout=60) as client:
            for n in range(10_000):
                try:
                    if n % 3 == 2 and mine:
                        victim = mine.pop(0)
                        r = client.delete(f"/gallery/{victim}")
                        if r.status_code == 204:
                            self._ack(lambda v=victim: self.deleted.add(v))
                            continue
                    else:
                        label = f"w{writer}-{n}"
                        payload = files(image_bytes(writer * 10_000 + n))
                        r = client.post("/gallery", params={"modality": "ir"}, files=payload, data={"label": label})
                        if r.status_code == 201:
                            (item,) = r.json()["ids"]
                            mine.append(item)
                            self._ack(lambda i=item, lb=label: self.added.__setitem__(i, lb))
                            continue
                    self.unexpected.append(f"{r.status_code} {r.text[:200]}")
                    return
                except httpx.TransportError:  # the service was killed
                    return

    def run_until(self, acks: int, timeout: float) -> None:
        """Start the writers and return once ``acks`` writes were acknowledged."""
        for thread in self.threads:
            thread.start()
        with self.changed:
            assert self.changed.wait_for(lambda: self.acks >= acks or self.unexpected, timeout), "writes stalled"

    def join(self) -> None:
        """Wait for every writer to stop."""
        for thread in self.threads:
            thread.join(timeout=120)
            assert not thread.is_alive()


def test_kill_9_during_writes_keeps_every_acknowledged_add_and_delete(settings: Settings, tmp_path: Path) -> None:
    log = tmp_path / "service.log"
    with service_process(settings, log) as service:
        stream = WriteStream(service.url)
        stream.run_until(acks=60, timeout=300)
        service.kill()  # while the writers still send
        stream.join()
    assert not stream.unexpected, stream.unexpected
    assert stream.deleted, "the stream acknowledged no delete before the kill"

    with service_process(settings, log) as service, httpx.Client(base_url=service.url, timeout=60) as client:
        present = all_items(client)
        kept = {i: lb for i, lb in stream.added.items() if i not in stream.deleted}
        assert {i: present.get(i) for i in kept} == kept  # every acknowledged add, with its label
        assert not stream.deleted & present.keys()  # every acknowledged delete gone
        # Beyond those, only adds that were in flight at the kill (at most one per writer) may have committed.
        assert len(present.keys() - kept.keys()) <= WRITERS
        assert sum(client.get("/gallery").json()["counts"].values()) == len(present)
        # The vector index agrees with SQLite: a stored image finds its own item first.
        survivor = max(kept)
        writer, n = (int(x) for x in kept[survivor][1:].split("-"))
        hit = client.post(
            "/search",
            params={"modality": "ir", "target": "ir", "top_k": 1},
            files=files(image_bytes(writer * 10_000 + n), field="file"),
        )
        assert hit.status_code == 200 and hit.json()["matches"][0]["id"] == survivor


async def _burst(url: str, doomed: list[int]) -> tuple[Counter[tuple[str, int]], list[int]]:
    """200 concurrent requests: 50 embed, 40 search, 40 add, 40 delete (of ``doomed``), 30 list."""
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        calls: list[tuple[str, Coroutine[Any, Any, httpx.Response]]] = []
        for i in range(50):
            calls.append(("embed", client.post("/embed", params={"modality": "vis"}, files=files(image_bytes(i)))))
        for i in range(40):
            search = client.post(
                "/search", params={"modality": "vis", "top_k": 5}, files=files(image_bytes(100 + i), field="file")
            )
            calls.append(("search", search))
        for i in range(40):
            add = client.post("/gallery", params={"modality": "vis"}, files=files(image_bytes(200 + i)))
            calls.append(("add", add))
        calls.extend(("delete", client.delete(f"/gallery/{item}")) for item in doomed)
        calls.extend(("list", client.get("/gallery", params={"offset": 5 * i})) for i in range(30))
        assert len(calls) == 200
        responses = await asyncio.gather(*(call for _, call in calls))
    statuses = Counter((kind, r.status_code) for (kind, _), r in zip(calls, responses, strict=True))
    added = [item for (kind, _), r in zip(calls, responses, strict=True) if kind == "add" for item in r.json()["ids"]]
    return statuses, added


def test_burst_of_200_mixed_requests_gives_exact_counts_and_no_5xx(settings: Settings, tmp_path: Path) -> None:
    with service_process(settings, tmp_path / "service.log") as service:
        with httpx.Client(base_url=service.url, timeout=60) as client:
            seeded = client.post(
                "/gallery", params={"modality": "ir"}, files=files(*(image_bytes(s) for s in range(60)))
            )
            assert seeded.status_code == 201
            doomed = seeded.json()["ids"][:40]
        statuses, added = asyncio.run(_burst(service.url, doomed))
        assert statuses == Counter(
            {("embed", 200): 50, ("search", 200): 40, ("add", 201): 40, ("delete", 204): 40, ("list", 200): 30}
        )
        with httpx.Client(base_url=service.url, timeout=60) as client:
            assert client.get("/gallery").json()["counts"] == {"vis": 40, "ir": 20}
            present = all_items(client)
            assert set(added) <= present.keys() and not set(doomed) & present.keys() and len(present) == 60
            assert all(client.get(f"/gallery/{item}").status_code == 404 for item in doomed[:5])


async def _flood(service: ServiceProcess, payload: bytes, small: bytes) -> tuple[Counter[int], list[str], int]:
    """Concurrent two-image /embed requests until one was refused and 200 were sent (at most 1000).

    Once the first refusal is seen, a one-image request starts and retries as Retry-After advises until it is
    answered; returns (statuses of the flood, Retry-After values of its 503s, the small request's status).
    """
    statuses: Counter[int] = Counter()
    retry_after: list[str] = []
    sent = 0
    refused = asyncio.Event()
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=service.url, timeout=120, limits=limits) as client:

        async def flooder() -> None:
            nonlocal sent
            while sent < 1000 and not (refused.is_set() and sent >= 200):
                sent += 1
                r = await client.post("/embed", params={"modality": "vis"}, files=files(payload, payload))
                statuses[r.status_code] += 1
                if r.status_code == 503:
                    retry_after.append(r.headers.get("retry-after", "missing") + " " + r.json()["error"])
                    refused.set()

        async def small_request() -> int:
            await refused.wait()
            ready = await client.get("/readyz")  # readiness does not wait on the encoder
            if ready.status_code != 200:
                return ready.status_code
            for _ in range(600):
                r = await client.post("/embed", params={"modality": "vis"}, files=files(small))
                if r.status_code != 503:
                    return r.status_code
                await asyncio.sleep(float(r.headers["retry-after"]))
            return 503

        *_, small_status = await asyncio.gather(*(flooder() for _ in range(32)), small_request())
    return statuses, retry_after, small_status


def test_flood_past_max_queue_gets_fast_503s_and_the_service_recovers(settings: Settings, tmp_path: Path) -> None:
    settings = with_settings(settings, max_queue=2, max_files_per_request=2, retry_after_s=1)
    payload, small = image_bytes(1, size=(320, 640)), image_bytes(2)
    with service_process(settings, tmp_path / "service.log") as service:
        statuses, refusals, small_status = asyncio.run(_flood(service, payload, small))
        assert statuses[503] >= 1 and set(statuses) <= {200, 503}, statuses
        assert set(refusals) == {"1 overloaded"}  # every refusal is the queue's, with its Retry-After
        assert small_status == 200
        with httpx.Client(base_url=service.url, timeout=60) as client:
            ready = client.get("/readyz")
            assert ready.status_code == 200 and ready.json()["status"] == "ready"
            after = client.post("/embed", params={"modality": "vis"}, files=files(small))
            assert after.status_code == 200
