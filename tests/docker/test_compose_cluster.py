"""The `cluster` compose profile: Milvus with etcd and MinIO, two stateless replicas, one proxy publishing a port.

The whole file is validated against the Compose Specification in test_compose.py; these check what scaling out needs.
"""

from __future__ import annotations

import os
import re
from typing import Any

import pytest

from index.milvus.config import MilvusConfig
from service.healthcheck import build_parser
from service.settings import Settings
from tests.docker.dockerfile import DOCKER_DIR, REPO
from tests.docker.test_compose import mount_target

INFRA = ["milvus-etcd", "milvus-minio", "milvus"]
CLUSTER = [*INFRA, "vireid-replica", "vireid-proxy"]


def _cluster(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in compose["services"].items() if "cluster" in svc.get("profiles", [])}


def test_cluster_profile_holds_milvus_its_stores_the_replicas_and_a_proxy(compose: dict[str, Any]) -> None:
    assert sorted(_cluster(compose)) == sorted(CLUSTER)


@pytest.mark.parametrize("name", CLUSTER)
def test_images_are_pinned_and_health_checked(compose: dict[str, Any], name: str) -> None:
    svc = compose["services"][name]
    image = svc["image"]
    if name != "vireid-replica":  # official images, a fixed version tag (never latest)
        assert re.fullmatch(r"[\w./-]+:(v?\d+\.\d+\.\d+[\w.-]*|RELEASE\.[\w-]+)", image), image
    check = svc["healthcheck"]["test"]
    assert check[0] == "CMD" and len(check) > 1


@pytest.mark.parametrize("name", INFRA)
def test_milvus_and_its_stores_keep_data_in_named_volumes(compose: dict[str, Any], name: str) -> None:
    for mount in compose["services"][name]["volumes"]:
        assert mount.split(":")[0] in compose["volumes"], mount
    assert "ports" not in compose["services"][name], "reached over the compose network only"


def test_milvus_waits_for_healthy_etcd_and_minio(compose: dict[str, Any]) -> None:
    milvus = compose["services"]["milvus"]
    assert milvus["depends_on"] == {
        "milvus-etcd": {"condition": "service_healthy"},
        "milvus-minio": {"condition": "service_healthy"},
    }
    env = milvus["environment"]
    assert env["ETCD_ENDPOINTS"] == "milvus-etcd:2379" and env["MINIO_ADDRESS"] == "milvus-minio:9000"


def test_replicas_are_stateless_and_point_at_milvus(compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    replica = compose["services"]["vireid-replica"]
    assert replica["deploy"]["replicas"] == 2
    assert replica["ports"] == [] and {mount_target(m) for m in replica["volumes"]} == {"/models"}
    assert replica["depends_on"] == {"milvus": {"condition": "service_healthy"}}
    assert replica["build"]["target"] == "cpu"
    assert build_parser().parse_args(replica["healthcheck"]["test"][4:]).url.endswith("/readyz")
    for key in [k for k in os.environ if k.startswith("VIREID_")]:
        monkeypatch.delenv(key)
    for key, value in replica["environment"].items():
        if value is not None:
            monkeypatch.setenv(key, str(value))
    monkeypatch.setenv("VIREID_API_KEY", "from-the-shell")
    index = Settings().index
    assert isinstance(index, MilvusConfig) and index.uri == "http://milvus:19530"
    assert index.index_type == "FLAT" and index.consistency == "Strong"


def test_the_proxy_publishes_the_one_port_and_balances_over_the_replicas(compose: dict[str, Any]) -> None:
    proxy = compose["services"]["vireid-proxy"]
    assert [p.split(":")[-1] for p in proxy["ports"]] == ["8080"]
    assert [name for name, svc in _cluster(compose).items() if svc.get("ports")] == ["vireid-proxy"]
    assert proxy["depends_on"] == {"vireid-replica": {"condition": "service_healthy"}}
    (mount,) = proxy["volumes"]
    source, target, mode = mount.split(":")
    assert (REPO / source).resolve() == DOCKER_DIR / "nginx-cluster.conf" and mode == "ro"
    conf = (DOCKER_DIR / "nginx-cluster.conf").read_text()
    assert re.search(r"upstream vireid_replicas \{[^}]*server vireid-replica:8000", conf)
    assert "listen 8080;" in conf and "proxy_pass http://vireid_replicas;" in conf
    body = int(re.search(r"client_max_body_size (\d+)m;", conf).group(1)) * 2**20  # type: ignore[union-attr]
    assert body >= Settings.model_fields["max_body_bytes"].default, "the service, not nginx, answers 413"
    assert target == "/etc/nginx/conf.d/default.conf"
