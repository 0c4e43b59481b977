"""The command-line tests run against the service tests' tiny ONNX encoders (session fixtures of tests/service)."""

from tests.service.conftest import anyio_backend, tiny_models  # noqa: F401  (fixtures, used by name)
