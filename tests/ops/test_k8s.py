"""deploy/k8s renders with kubectl's kustomize and validates offline against the Kubernetes and KEDA schemas."""

import json
import shutil
import subprocess
from functools import cache

import jsonschema  # kubernetes-validate's own validator
import kubernetes_validate
import pytest
import yaml

from tests.live import ROOT

K8S = ROOT / "deploy/k8s"
KUBERNETES_VERSION = "1.30.0"
KEDA_SCHEMA = json.loads((K8S / "schemas/keda-scaledobject.json").read_text())


@cache
def rendered(path: str) -> list[dict]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is missing: .ci/run installs it (Debian's kubernetes-client)")
    result = subprocess.run([kubectl, "kustomize", str(K8S / path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return [document for document in yaml.safe_load_all(result.stdout) if document]


def by_kind(documents: list[dict], kind: str) -> dict[str, dict]:
    return {document["metadata"]["name"]: document for document in documents if document["kind"] == kind}


@pytest.mark.parametrize("path", ["base", "overlays/production"])
def test_every_kubernetes_resource_validates_against_its_schema(path):
    documents = rendered(path)
    checked = 0
    for document in documents:
        if document["apiVersion"].startswith("keda.sh/"):
            continue
        # strict: an unknown (misspelt) field fails instead of being dropped by the API server.
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        checked += 1
    assert checked == len(documents) - len(by_kind(documents, "ScaledObject"))


def test_keda_scaled_objects_validate_against_the_vendored_crd_schema():
    scaled = by_kind(rendered("overlays/production"), "ScaledObject")
    assert sorted(scaled) == ["web", "worker", "ws"]
    for document in scaled.values():
        jsonschema.validate(document, KEDA_SCHEMA)
    assert [trigger["type"] for trigger in scaled["ws"]["spec"]["triggers"]] == ["prometheus"]
    assert "xiaoxiang_ws_connections_open" in scaled["ws"]["spec"]["triggers"][0]["metadata"]["query"]
    assert [trigger["type"] for trigger in scaled["worker"]["spec"]["triggers"]] == ["redis"]
    assert scaled["worker"]["spec"]["triggers"][0]["metadata"]["listName"] == "celery"
    assert "xiaoxiang_http_requests_total" in scaled["web"]["spec"]["triggers"][0]["metadata"]["query"]


def test_the_keda_schema_refuses_a_misspelt_field():
    broken = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "ws"},
        "spec": {"scaleTargetRef": {"name": "ws"}, "maxReplicas": 3, "triggers": [{"type": "redis", "metadata": {}}]},
    }
    with pytest.raises(jsonschema.ValidationError, match="maxReplicas"):
        jsonschema.validate(broken, KEDA_SCHEMA)


def test_production_shape_probes_budgets_single_beat_and_socket_routing():
    documents = rendered("overlays/production")
    deployments = by_kind(documents, "Deployment")
    assert sorted(deployments) == ["beat", "web", "worker", "ws"]
    assert {document["metadata"]["namespace"] for document in documents if document["kind"] != "Namespace"} == {
        "xiaoxiang"
    }
    beat = deployments["beat"]["spec"]
    assert (beat["replicas"], beat["strategy"]["type"]) == (1, "Recreate")
    for name in ("web", "ws"):
        container = deployments[name]["spec"]["template"]["spec"]["containers"][0]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert set(container["resources"]) == {"requests", "limits"}
    ws_pod = deployments["ws"]["spec"]["template"]["spec"]
    assert ws_pod["containers"][0]["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "15"]
    assert ws_pod["terminationGracePeriodSeconds"] == 60
    assert sorted(by_kind(documents, "PodDisruptionBudget")) == ["web", "worker", "ws"]
    assert sorted(by_kind(documents, "Job")) == ["migrate"]

    ingresses = by_kind(documents, "Ingress")
    ws_paths = {
        path["path"]: path["backend"]["service"]["name"]
        for rule in ingresses["ws"]["spec"]["rules"]
        for path in rule["http"]["paths"]
    }
    assert ws_paths == {"/ws/": "ws", "/api/orders/[^/]+/poll/": "ws"}
    assert ingresses["ws"]["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "3600"
    assert ingresses["web"]["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] == "web"
    assert all(ingress["spec"]["tls"][0]["secretName"] == "xiaoxiang-tls" for ingress in ingresses.values())


def test_kubernetes_validate_refuses_a_misspelt_container_field():
    web = json.loads(json.dumps(by_kind(rendered("base"), "Deployment")["web"]))
    web["spec"]["template"]["spec"]["containers"][0]["comand"] = ["true"]
    with pytest.raises(kubernetes_validate.ValidationError, match="comand"):
        kubernetes_validate.validate(web, KUBERNETES_VERSION, strict=True)
