"""The gallery's background worker: runs requested passes on its thread, retries a failed one, stops cleanly."""

from __future__ import annotations

import threading

import pytest

from index.background import BackgroundWorker


def test_failed_pass_is_retried_without_a_new_request(caplog: pytest.LogCaptureFixture):
    attempts: list[int] = []
    succeeded = threading.Event()

    def work() -> None:
        attempts.append(len(attempts))
        if len(attempts) < 3:
            raise OSError(28, "No space left on device")
        succeeded.set()

    worker = BackgroundWorker(work, "test worker", retry_seconds=0.0)
    worker.start()
    worker.request()
    assert succeeded.wait(30)
    worker.stop()
    assert attempts == [0, 1, 2]
    assert caplog.text.count("test worker failed; retrying") == 2 and "No space left" in caplog.text


def test_wait_idle_waits_for_a_pass_that_started_after_the_call():
    seen: list[int] = []
    state = {"value": 0}
    worker = BackgroundWorker(lambda: seen.append(state["value"]), "test worker")
    worker.start()
    for value in (1, 2, 3):
        state["value"] = value
        worker.wait_idle()
        assert seen[-1] == value
    worker.stop()
    worker.stop()  # idempotent


def test_stop_lets_the_running_pass_finish_and_runs_no_other():
    started, release = threading.Event(), threading.Event()
    order: list[str] = []

    def work() -> None:
        started.set()
        release.wait(30)
        order.append("pass finished")

    worker = BackgroundWorker(work, "test worker")
    worker.start()
    worker.request()
    assert started.wait(30)
    worker.request()  # a second pass asked for while the first runs: stop() drops it
    stopper = threading.Thread(target=lambda: (worker.stop(), order.append("stopped")))
    stopper.start()
    order.append("release")
    release.set()
    stopper.join(30)
    assert order == ["release", "pass finished", "stopped"]
    worker.wait_idle()  # returns at once once stopped
