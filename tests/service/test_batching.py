"""MicroBatcher on a real encoder: concurrent requests are grouped, results equal unbatched ones."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from common.modality import Modality
from common.model_card import ModelCard, encoder_filename
from service.batching import BatcherClosedError, EncodeTimeoutError, MicroBatcher, OverloadedError
from service.encoder import OnnxEncoder
from tests.service.conftest import TinyModels

pytestmark = pytest.mark.anyio
NEVER_MS = 600_000.0  # a batch closes only when full: grouping does not depend on timing


@pytest.fixture
def encoder(tiny_models: TinyModels) -> OnnxEncoder:
    return OnnxEncoder(tiny_models.model_dir / encoder_filename(Modality.VISIBLE), ("CPUExecutionProvider",))


def images(n: int, seed: int, card: ModelCard) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 3, card.input_height, card.input_width), dtype=np.float32)


async def run_concurrently(batcher: MicroBatcher, requests: list[np.ndarray]) -> list[np.ndarray]:
    await batcher.start()
    try:
        return list(await asyncio.gather(*(batcher.embed(r) for r in requests)))
    finally:
        await batcher.stop()


async def test_concurrent_requests_share_batches_and_match_unbatched(encoder: OnnxEncoder) -> None:
    sizes: list[int] = []
    batcher = MicroBatcher(
        encoder.embed, name="vis", max_batch=4, max_wait_ms=NEVER_MS, observer=lambda n, _: sizes.append(n)
    )
    requests = [images(1, seed, encoder.card) for seed in range(8)]
    results = await run_concurrently(batcher, requests)
    assert sizes == [4, 4]
    for request, result in zip(requests, results, strict=True):
        np.testing.assert_allclose(result, encoder.embed(request), atol=1e-5)


async def test_a_large_request_is_split_into_full_batches(encoder: OnnxEncoder) -> None:
    sizes: list[int] = []
    batcher = MicroBatcher(
        encoder.embed, name="vis", max_batch=4, max_wait_ms=NEVER_MS, observer=lambda n, _: sizes.append(n)
    )
    request = images(8, 1, encoder.card)
    (result,) = await run_concurrently(batcher, [request])
    assert sizes == [4, 4]
    np.testing.assert_allclose(result, encoder.embed(request), atol=1e-5)


async def test_a_request_that_does_not_fit_waits_for_the_next_batch(encoder: OnnxEncoder) -> None:
    sizes: list[int] = []
    batcher = MicroBatcher(encoder.embed, name="vis", max_batch=4, max_wait_ms=0, observer=lambda n, _: sizes.append(n))
    first, second = images(3, 2, encoder.card), images(2, 3, encoder.card)
    results = await run_concurrently(batcher, [first, second])
    assert sizes == [3, 2]
    np.testing.assert_allclose(results[0], encoder.embed(first), atol=1e-5)
    np.testing.assert_allclose(results[1], encoder.embed(second), atol=1e-5)


async def test_batching_off_runs_each_request_alone(encoder: OnnxEncoder) -> None:
    sizes: list[int] = []
    batcher = MicroBatcher(
        encoder.embed, name="vis", batching=False, max_batch=4, observer=lambda n, _: sizes.append(n)
    )
    requests = [images(1, seed, encoder.card) for seed in range(3)]
    results = await run_concurrently(batcher, requests)
    assert sizes == [1, 1, 1]
    for request, result in zip(requests, results, strict=True):
        np.testing.assert_allclose(result, encoder.embed(request), atol=1e-5)


async def test_an_encoder_error_reaches_every_request_of_the_batch(encoder: OnnxEncoder) -> None:
    batcher = MicroBatcher(encoder.embed, name="vis", max_batch=2, max_wait_ms=NEVER_MS)
    await batcher.start()
    try:
        bad = np.zeros((1, 3, encoder.card.input_height + 1, encoder.card.input_width), dtype=np.float32)
        results = await asyncio.gather(batcher.embed(bad), batcher.embed(bad), return_exceptions=True)
        assert all(isinstance(r, ValueError) for r in results)
        np.testing.assert_allclose(
            await batcher.embed(images(2, 5, encoder.card)), encoder.embed(images(2, 5, encoder.card)), atol=1e-5
        )
    finally:
        await batcher.stop()


@pytest.mark.parametrize("yields", [1, 5])  # 1: the job is still queued; 5: the collector holds it
async def test_closed_batcher_refuses_and_fails_waiting_requests(encoder: OnnxEncoder, yields: int) -> None:
    batcher = MicroBatcher(encoder.embed, name="vis", max_batch=4, max_wait_ms=NEVER_MS)
    with pytest.raises(BatcherClosedError):
        await batcher.embed(images(1, 0, encoder.card))
    await batcher.start()
    pending = asyncio.ensure_future(batcher.embed(images(1, 0, encoder.card)))  # waits for a batch that never fills
    for _ in range(yields):
        await asyncio.sleep(0)  # a bare yield to the loop, not a wait
    await batcher.stop()
    with pytest.raises(BatcherClosedError):
        await asyncio.wait_for(pending, 60)


async def test_a_dead_collector_fails_waiting_and_later_requests_and_logs_why(
    encoder: OnnxEncoder, caplog: pytest.LogCaptureFixture
) -> None:
    batcher = MicroBatcher(encoder.embed, name="vis", max_batch=2, max_wait_ms=NEVER_MS)
    await batcher.start()
    try:
        card = encoder.card
        odd = np.zeros((1, 3, card.input_height + 1, card.input_width), dtype=np.float32)
        # two shapes in one batch: concatenating them raises inside the collector task, which dies
        results = await asyncio.wait_for(
            asyncio.gather(batcher.embed(images(1, 0, card)), batcher.embed(odd), return_exceptions=True), 60
        )
        assert all(isinstance(r, BatcherClosedError) and "batching task died" in str(r) for r in results), results
        with pytest.raises(BatcherClosedError, match="batching task died"):
            await asyncio.wait_for(batcher.embed(images(1, 1, card)), 60)
        assert "batching task died" in caplog.text and "concatenat" in caplog.text  # the cause, in the log
    finally:
        await batcher.stop()


class HeldEncoder:
    """The real encoder behind a gate: each call signals ``entered`` and runs once ``release`` is set."""

    def __init__(self, encoder: OnnxEncoder) -> None:
        self.encoder = encoder
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, images: np.ndarray) -> np.ndarray:
        self.entered.set()
        assert self.release.wait(60), "the test never released the encoder"
        return self.encoder.embed(images)


async def test_a_full_queue_refuses_at_once_and_the_admitted_requests_complete(encoder: OnnxEncoder) -> None:
    held = HeldEncoder(encoder)
    batcher = MicroBatcher(held, name="vis", max_batch=2, max_wait_ms=0, max_queue=4, retry_after_s=3)
    await batcher.start()
    try:
        admitted = [images(1, 0, encoder.card), images(2, 1, encoder.card), images(1, 2, encoder.card)]
        first = asyncio.ensure_future(batcher.embed(admitted[0]))
        await asyncio.to_thread(held.entered.wait, 60)  # the first request holds the encoder
        rest = [asyncio.ensure_future(batcher.embed(r)) for r in admitted[1:]]  # 4 images admitted: the limit
        with pytest.raises(OverloadedError) as refused:
            await asyncio.wait_for(batcher.embed(images(1, 3, encoder.card)), 60)  # queued, it would hang
        assert refused.value.retry_after == 3
        assert not first.done() and not any(task.done() for task in rest)
        held.release.set()
        results = await asyncio.wait_for(asyncio.gather(first, *rest), 60)
        for request, result in zip(admitted, results, strict=True):
            np.testing.assert_allclose(result, encoder.embed(request), atol=1e-5)
        small = images(1, 4, encoder.card)
        np.testing.assert_allclose(await batcher.embed(small), encoder.embed(small), atol=1e-5)
    finally:
        held.release.set()
        await batcher.stop()


@pytest.mark.parametrize("batching", [True, False])
async def test_a_timed_out_request_is_refused_and_its_queued_work_withdrawn(
    encoder: OnnxEncoder, batching: bool
) -> None:
    held = HeldEncoder(encoder)
    sizes: list[int] = []
    batcher = MicroBatcher(
        held,
        name="vis",
        batching=batching,
        max_batch=4,
        max_wait_ms=0,
        max_queue=4,
        observer=lambda n, _: sizes.append(n),
    )
    await batcher.start()
    try:
        first = images(1, 0, encoder.card)
        running = asyncio.ensure_future(batcher.embed(first))  # no timeout: it holds the encoder until released
        await asyncio.to_thread(held.entered.wait, 60)
        batcher._timeout_s = 0.01  # the encoder is held: this request cannot be answered, however long it waits
        with pytest.raises(EncodeTimeoutError) as timed_out:
            await batcher.embed(images(3, 1, encoder.card))
        assert timed_out.value.retry_after == 1
        held.release.set()
        np.testing.assert_allclose(await asyncio.wait_for(running, 60), encoder.embed(first), atol=1e-5)
        batcher._timeout_s = None
        small = images(4, 2, encoder.card)  # 4 admitted again: the timed-out images left the queue
        np.testing.assert_allclose(await batcher.embed(small), encoder.embed(small), atol=1e-5)
        assert sizes == [1, 4]  # the withdrawn 3 images were never encoded
    finally:
        held.release.set()
        await batcher.stop()
