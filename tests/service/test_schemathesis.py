"""Schemathesis against the real app behind real uvicorn: no 5xx, and every response as the document says.

Real uvicorn rather than schemathesis' ASGI client: that client starts the app's lifespan on its own event loop
and keeps it running until the process exits (the gallery lock and the batchers would outlive the test).
Seeded and bounded: a few examples per operation, generation only, no example database.
"""

from __future__ import annotations

from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from schemathesis import Case
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from service.app import create_app
from service.settings import Settings
from tests.service.conftest import TinyModels
from tests.service.support import uvicorn_server

WRITE_KEY = "w" * 16
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
EXAMPLES_PER_OPERATION = 8


def test_generated_requests_get_no_5xx_and_only_documented_responses(tiny_models: TinyModels, tmp_path: Path) -> None:
    app = create_app(
        Settings(
            model_dir=tiny_models.model_dir,
            data_dir=tmp_path / "gallery",
            providers=("CPUExecutionProvider",),
            intra_op_threads=1,
            max_wait_ms=1.0,
            api_key=WRITE_KEY,
        )
    )
    failures: list[str] = []
    with uvicorn_server(app) as base:
        schema = schemathesis.openapi.from_url(f"{base}/openapi.json")  # fetched once loaded: the model's dim
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) == 10
        for operation in operations:

            @seed(9)
            @settings(
                max_examples=EXAMPLES_PER_OPERATION,
                deadline=None,
                phases=[Phase.generate],
                suppress_health_check=list(HealthCheck),
                database=None,
            )
            @given(case=operation.as_strategy())
            def call(case: Case) -> None:
                response = case.call(base_url=base, headers={"X-API-Key": WRITE_KEY})
                case.validate_response(response, checks=CHECKS)

            try:
                call()
            except BaseException as exc:  # schemathesis reports a FailureGroup  # noqa: BLE001
                failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    assert not failures, "\n\n".join(failures)
