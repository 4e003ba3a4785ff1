"""Offline checks of the deployment artifacts (docs/deployment.md, "What is validated offline").

The image (deploy/Dockerfile), the compose stack (deploy/compose.yaml) and the Helm chart
(k8s/gateway) cannot be run here: no container engine, no cluster. What can be checked without
them is checked: the linters (hadolint, yamllint, helm lint, haproxy -c, promtool), Compose's own
model of the stack (`docker compose config`), the chart rendered by Helm's SDK for each values
file of k8s/gateway/ci/ and validated against Kubernetes' schemas, the values schema, and what
an operator would notice in the rendered objects.

Run with the project's virtualenv (deploy/requirements.txt): .venv/bin/python -m pytest deploy/tests
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import helm_python as helm
import kubernetes_validate.utils as kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "k8s" / "gateway"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
COMPOSE = ROOT / "deploy" / "compose.yaml"
ENV_EXAMPLE = ROOT / "deploy" / ".env.example"
# The tools the requirements install next to this interpreter (.venv/bin).
VENV_BIN = Path(sys.executable).parent

# The chart's kubeVersion floor (preStop `sleep` is on by default from 1.30) and the newest
# Kubernetes whose schemas kubernetes-validate ships.
K8S_VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]
# Custom resources: kubernetes-validate has schemas of Kubernetes' own kinds only, so these are
# checked by the assertions below instead (ServiceMonitor is the Prometheus Operator's CRD).
CUSTOM_KINDS = {"ServiceMonitor"}

RELEASE = "gw"
NAMESPACE = "realtime"
FULLNAME = "gw-gateway"
VARIANTS = ["default", "no-ingress", "autoscaling", "existing-secret"]
SECRET_ENV = ["JWT_SECRET", "INTERNAL_API_TOKEN", "DATABASE_URL", "REDIS_URL"]


def tool(name: str) -> str:
    path = VENV_BIN / name
    assert path.exists(), f"{path} missing: install deploy/requirements.txt into this virtualenv"
    return str(path)


def system_tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not installed (.ci/run installs it from Debian's packages)"
    return path


def run(*cmd: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )


# --- the chart --------------------------------------------------------------------------------


def ci_values(variant: str) -> dict:
    return yaml.safe_load((CHART / "ci" / f"{variant}-values.yaml").read_text())


def render_chart(values: dict | None) -> dict[str, str]:
    with helm.Chart.load(CHART) as chart:
        return chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)


def documents(rendered: dict[str, str]) -> list[dict]:
    docs = []
    for path, text in sorted(rendered.items()):
        if path.endswith(".yaml"):
            docs.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return docs


@functools.cache
def _rendered(variant: str) -> str:
    return json.dumps(documents(render_chart(ci_values(variant))))


def rendered(variant: str) -> list[dict]:
    """The manifests of a variant (a fresh copy: tests may not change each other's)."""
    return json.loads(_rendered(variant))


def render_with(variant: str, **overrides) -> list[dict]:
    values = copy.deepcopy(ci_values(variant))
    for key, value in overrides.items():
        node = values
        *parents, last = key.split("__")
        for parent in parents:
            node = node.setdefault(parent, {})
        node[last] = value
    return documents(render_chart(values))


def find(docs: list[dict], kind: str, name: str | None = None) -> list[dict]:
    return [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]


def one(docs: list[dict], kind: str, name: str | None = None) -> dict:
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
    return found[0]


def deployment(docs: list[dict]) -> dict:
    return one(docs, "Deployment", FULLNAME)


def gateway_container(docs: list[dict]) -> dict:
    (container,) = deployment(docs)["spec"]["template"]["spec"]["containers"]
    return container


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container["env"]}


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


@pytest.mark.parametrize("variant", VARIANTS)
def test_helm_lint_strict(variant):
    report = helm.lint(
        CHART, ci_values(variant), strict=True, namespace=NAMESPACE, kube_version="v1.30.0"
    )
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [] and problems == [], report


def test_helm_lint_with_the_chart_defaults():
    # helm lint k8s/gateway as a user types it (the missing secrets only fail an install).
    report = helm.lint(CHART, strict=True)
    assert report["errors"] == [], report


@pytest.mark.parametrize("variant", VARIANTS)
def test_rendered_manifests_are_valid_kubernetes(variant):
    docs = rendered(variant)
    assert docs
    checked = 0
    for doc in docs:
        if doc["kind"] in CUSTOM_KINDS:
            continue
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} on {version}: {e.message}")
            checked += 1
    assert checked >= 2 * 8


def test_the_validator_refuses_unknown_fields():
    # A control: strict validation is what catches a misspelt or misplaced field.
    bad = copy.deepcopy(deployment(rendered("default")))
    bad["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSIONS[-1], strict=True)


def test_install_without_secrets_says_what_to_set():
    with pytest.raises(helm.HelmRenderError) as failure:
        render_chart(None)
    message = str(failure.value)
    assert "existingSecret" in message
    for key in ("secrets.jwtSecret", "secrets.internalApiToken", "secrets.databaseUrl", "secrets.redisUrl"):
        assert key in message


@pytest.mark.parametrize("variant", VARIANTS)
def test_schema_accepts_every_ci_values_file(variant):
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema(ci_values(variant))


@pytest.mark.parametrize(
    "url", ["redis://r:6379", "rediss://u:p@r:6380/0", "redis-cluster://r1:6379?node=r2:6379", "rediss-cluster://r1:6379"]
)
def test_schema_accepts_every_redis_topology(url):
    values = {**ci_values("default")}
    values["secrets"] = {**values["secrets"], "redisUrl": url}
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema(values)


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"replicaCount": "three"}, "/replicaCount"),
        ({"replicaCount": 0}, "/replicaCount"),
        ({"replicaCount": 2.5}, "/replicaCount"),
        ({"ingress": {"enabled": "yes"}}, "/ingress/enabled"),
        ({"ingress": {"hosts": [{"host": "a.example.com"}]}}, "/ingress/hosts/0"),
        ({"autoscaling": {"enabled": True, "maxReplicas": "10"}}, "/autoscaling/maxReplicas"),
        ({"settings": {"PING_INTERVAL_MS": 25000}}, "/settings/PING_INTERVAL_MS"),
        ({"settings": {"RUST_LOG": True}}, "/settings/RUST_LOG"),
        ({"settings": {"SHUTDOWN_GRACE_MS": "25s"}}, "/settings/SHUTDOWN_GRACE_MS"),
        ({"settings": {"LOG_FORMAT": "xml"}}, "/settings/LOG_FORMAT"),
        ({"settings": {"JWT_SECRET": "plain"}}, "JWT_SECRET"),
        ({"settings": {"BIND_ADDR": "0.0.0.0:80"}}, "BIND_ADDR"),
        ({"settings": {"rust_log": "debug"}}, "rust_log"),
        # Only the settings gateway/src/settings.rs lists: a typo is refused, not ignored.
        ({"settings": {"SHUTDOWN_GRACE": "25000"}}, "SHUTDOWN_GRACE"),
        ({"preStopSleepSeconds": "5"}, "/preStopSleepSeconds"),
        ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
        ({"podDisruptionBudget": {"maxUnavailable": "half"}}, "/podDisruptionBudget/maxUnavailable"),
        ({"serviceMonitor": {"enabled": "true"}}, "/serviceMonitor/enabled"),
        ({"networkPolicy": {"enabled": 1}}, "/networkPolicy/enabled"),
        ({"secrets": {"databaseUrl": "mysql://db/gateway"}}, "/secrets/databaseUrl"),
        ({"secrets": {"redisUrl": "redis-sentinel://s:26379"}}, "/secrets/redisUrl"),
        ({"replicacount": 3}, "replicacount"),
    ],
)
def test_schema_refuses_wrong_values(values, where):
    merged = {**ci_values("default"), **values}
    with helm.Chart.load(CHART) as chart:
        with pytest.raises(helm.HelmValuesError) as refused:
            chart.validate_schema(merged)
        assert where in str(refused.value)
        # And an install is refused too, before anything is rendered.
        with pytest.raises(helm.HelmValuesError):
            chart.render(merged, name=RELEASE, namespace=NAMESPACE)


def test_pdb_refuses_both_bounds():
    with pytest.raises(helm.HelmRenderError, match="either minAvailable or maxUnavailable"):
        render_with("default", podDisruptionBudget__minAvailable=2)


def test_probes_on_the_internal_port():
    container = gateway_container(rendered("default"))
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 3000, "internal": 9000}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "internal"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "internal"}
    assert container["args"] == ["serve"]


@pytest.mark.parametrize(
    ("grace_ms", "sleep", "expected"),
    [("25000", 5, 35), ("40500", 10, 56), ("1000", 0, 6)],
)
def test_termination_grace_covers_prestop_and_drain(grace_ms, sleep, expected):
    docs = render_with("default", settings__SHUTDOWN_GRACE_MS=grace_ms, preStopSleepSeconds=sleep)
    pod = deployment(docs)["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert env_of(container)["SHUTDOWN_GRACE_MS"]["value"] == grace_ms
    assert pod["terminationGracePeriodSeconds"] == expected
    assert pod["terminationGracePeriodSeconds"] > int(grace_ms) / 1000 + sleep
    if sleep:
        assert container["lifecycle"] == {"preStop": {"sleep": {"seconds": sleep}}}
    else:
        assert "lifecycle" not in container


def test_default_drain_budget():
    pod = deployment(rendered("default"))["spec"]["template"]["spec"]
    # SHUTDOWN_GRACE_MS 25000 + preStop 5 s + 5 s margin.
    assert pod["terminationGracePeriodSeconds"] == 35
    assert pod["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"] == 5


def test_node_id_is_the_pod_name():
    env = env_of(gateway_container(rendered("default")))
    assert env["NODE_ID"] == {"name": "NODE_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}


@pytest.mark.parametrize(("variant", "secret"), [("default", FULLNAME), ("existing-secret", "gateway-secrets")])
def test_secrets_come_from_the_secret(variant, secret):
    docs = rendered(variant)
    env = env_of(gateway_container(docs))
    for name in SECRET_ENV:
        assert "value" not in env[name]
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert (ref["name"], ref["key"]) == (secret, name)
        # Three replicas share state through Redis: every key is required.
        assert not ref.get("optional", False)
    text = json.dumps(deployment(docs))
    assert "test-jwt-secret" not in text and "test-internal-token" not in text


def test_the_charts_secret_holds_the_values():
    secret = one(rendered("default"), "Secret", FULLNAME)
    values = ci_values("default")["secrets"]
    assert secret["stringData"] == {
        "JWT_SECRET": values["jwtSecret"],
        "INTERNAL_API_TOKEN": values["internalApiToken"],
        "DATABASE_URL": values["databaseUrl"],
        "REDIS_URL": values["redisUrl"],
    }


def test_existing_secret_creates_no_secret():
    docs = rendered("existing-secret")
    assert find(docs, "Secret") == []
    annotations = deployment(docs)["spec"]["template"]["metadata"].get("annotations") or {}
    assert "checksum/secret" not in annotations


def test_pods_roll_when_the_secret_changes():
    def checksum(docs):
        return deployment(docs)["spec"]["template"]["metadata"]["annotations"]["checksum/secret"]

    before = checksum(rendered("default"))
    after = checksum(render_with("default", secrets__jwtSecret="rotated"))
    assert re.fullmatch(r"[0-9a-f]{64}", before) and before != after


def test_single_replica_runs_without_redis():
    docs = render_with("default", replicaCount=1, secrets__redisUrl="")
    env = env_of(gateway_container(docs))
    assert env["REDIS_URL"]["valueFrom"]["secretKeyRef"]["optional"] is True
    assert "REDIS_URL" not in one(docs, "Secret", FULLNAME)["stringData"]


def test_security_context():
    for docs in (rendered("default"), rendered("existing-secret")):
        pods = [deployment(docs)["spec"]["template"]["spec"]]
        pods += [j["spec"]["template"]["spec"] for j in find(docs, "Job")]
        pods += find(docs, "Pod")  # the helm test pod
        for pod in (p.get("spec", p) for p in pods):
            assert pod["securityContext"]["runAsNonRoot"] is True
            assert pod["securityContext"]["runAsUser"] == 10001
            assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
            assert pod["automountServiceAccountToken"] is False
            for container in pod["containers"]:
                sc = container["securityContext"]
                assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 10001
                assert sc["readOnlyRootFilesystem"] is True
                assert sc["allowPrivilegeEscalation"] is False
                assert sc["capabilities"] == {"drop": ["ALL"]}
                assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
                assert container["resources"]["requests"] and container["resources"]["limits"]


def test_topology_spread_over_nodes_and_zones():
    pod = deployment(rendered("default"))["spec"]["template"]
    constraints = pod["spec"]["topologySpreadConstraints"]
    assert [c["topologyKey"] for c in constraints] == ["kubernetes.io/hostname", "topology.kubernetes.io/zone"]
    for c in constraints:
        assert selects(c["labelSelector"]["matchLabels"], pod["metadata"]["labels"])


def test_services_public_and_internal():
    docs = rendered("default")
    labels = deployment(docs)["spec"]["template"]["metadata"]["labels"]
    public = one(docs, "Service", FULLNAME)
    internal = one(docs, "Service", f"{FULLNAME}-internal")
    assert public["spec"]["ports"] == [{"name": "http", "port": 3000, "targetPort": "http", "protocol": "TCP"}]
    assert internal["spec"]["ports"] == [
        {"name": "internal", "port": 9000, "targetPort": "internal", "protocol": "TCP"}
    ]
    assert internal["spec"]["type"] == "ClusterIP"
    for service in (public, internal):
        assert selects(service["spec"]["selector"], labels)


def test_ingress_for_ingress_nginx_with_cookie_affinity():
    docs = rendered("default")
    ingress = one(docs, "Ingress", FULLNAME)
    assert ingress["spec"]["ingressClassName"] == "nginx"
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/affinity"] == "cookie"
    assert annotations["nginx.ingress.kubernetes.io/affinity-mode"] == "persistent"
    assert annotations["nginx.ingress.kubernetes.io/session-cookie-name"] == "io_node"
    assert annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "3600"
    assert annotations["nginx.ingress.kubernetes.io/proxy-send-timeout"] == "3600"
    (rule,) = ingress["spec"]["rules"]
    assert "host" not in rule
    assert rule["http"]["paths"] == [
        {
            "path": "/socket.io/",
            "pathType": "Prefix",
            "backend": {"service": {"name": FULLNAME, "port": {"name": "http"}}},
        }
    ]


def test_ingress_hosts_and_tls():
    ingress = one(rendered("autoscaling"), "Ingress", FULLNAME)
    assert [r["host"] for r in ingress["spec"]["rules"]] == ["gateway.example.com"]
    assert ingress["spec"]["tls"] == [{"hosts": ["gateway.example.com"], "secretName": "gateway-tls"}]
    for rule in ingress["spec"]["rules"]:
        assert [p["path"] for p in rule["http"]["paths"]] == ["/socket.io/"]


def test_ingress_off():
    docs = rendered("no-ingress")
    assert find(docs, "Ingress") == []
    assert find(docs, "Service", FULLNAME)


def test_replicas_or_autoscaling():
    assert deployment(rendered("default"))["spec"]["replicas"] == 3
    assert find(rendered("default"), "HorizontalPodAutoscaler") == []

    docs = rendered("autoscaling")
    assert "replicas" not in deployment(docs)["spec"]
    hpa = one(docs, "HorizontalPodAutoscaler", FULLNAME)
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": FULLNAME}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 12)
    targets = {m["resource"]["name"]: m["resource"]["target"]["averageUtilization"] for m in hpa["spec"]["metrics"]}
    assert targets == {"cpu": 70, "memory": 80}
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 600


def test_rolling_update_keeps_capacity():
    strategy = deployment(rendered("default"))["spec"]["strategy"]
    assert strategy == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}


def test_pod_disruption_budget():
    docs = rendered("default")
    pdb = one(docs, "PodDisruptionBudget", FULLNAME)
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["maxUnavailable"] == 1 and "minAvailable" not in pdb["spec"]
    assert selects(pdb["spec"]["selector"]["matchLabels"], deployment(docs)["spec"]["template"]["metadata"]["labels"])

    pdb = one(
        render_with("default", podDisruptionBudget__minAvailable=2, podDisruptionBudget__maxUnavailable=None),
        "PodDisruptionBudget",
    )
    assert pdb["spec"]["minAvailable"] == 2 and "maxUnavailable" not in pdb["spec"]


def test_service_monitor_scrapes_the_internal_port():
    assert find(rendered("default"), "ServiceMonitor") == []
    docs = rendered("autoscaling")
    monitor = one(docs, "ServiceMonitor", FULLNAME)
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"], endpoint["interval"]) == ("internal", "/metrics", "15s")
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    matched = [s for s in find(docs, "Service") if selects(monitor["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])]
    assert [s["metadata"]["name"] for s in matched] == [f"{FULLNAME}-internal"]
    # The alert rules (deploy/prometheus/alerts.yaml) select job="gateway".
    assert matched[0]["metadata"]["labels"][monitor["spec"]["jobLabel"]] == "gateway"
    assert 'job="gateway"' in (ROOT / "deploy" / "prometheus" / "alerts.yaml").read_text()


def test_network_policy():
    assert find(rendered("default"), "NetworkPolicy") == []
    docs = rendered("autoscaling")
    policy = one(docs, "NetworkPolicy", FULLNAME)
    assert selects(policy["spec"]["podSelector"]["matchLabels"], deployment(docs)["spec"]["template"]["metadata"]["labels"])
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    public, internal = policy["spec"]["ingress"]
    # Public port from anywhere (no `from`), internal port from the cluster's pods only.
    assert public == {"ports": [{"port": "http", "protocol": "TCP"}]}
    assert internal == {"from": [{"namespaceSelector": {}}], "ports": [{"port": "internal", "protocol": "TCP"}]}


def test_settings_become_environment():
    env = env_of(gateway_container(rendered("default")))
    assert env["LOG_FORMAT"]["value"] == "json" and env["RUST_LOG"]["value"] == "info"
    assert env["PING_INTERVAL_MS"]["value"] == "25000"
    # Empty settings are left out (unset), set ones are passed on.
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in env
    env = env_of(gateway_container(rendered("autoscaling")))
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"]["value"] == "http://otel-collector.observability:4318"
    names = [e["name"] for e in gateway_container(rendered("default"))["env"]]
    assert len(names) == len(set(names))


@pytest.mark.parametrize(("variant", "secret"), [("default", f"{FULLNAME}-migrate"), ("existing-secret", "gateway-secrets")])
def test_migrations_run_as_a_hook_job(variant, secret):
    docs = rendered(variant)
    job = one(docs, "Job", f"{FULLNAME}-migrate")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"] == ["migrate"]
    assert container["image"] == gateway_container(docs)["image"]
    assert env_of(container)["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": secret, "key": "DATABASE_URL"}
    assert pod["restartPolicy"] == "Never"
    # Runs before the release's ServiceAccount exists: the namespace's default one.
    assert "serviceAccountName" not in pod
    # Not one of the gateway's pods: Services, PDB and NetworkPolicy never select it.
    selector = deployment(docs)["spec"]["selector"]["matchLabels"]
    assert not selects(selector, job["spec"]["template"]["metadata"]["labels"])


def test_migrate_hook_secret_exists_before_the_job():
    docs = rendered("default")
    hook_secret = one(docs, "Secret", f"{FULLNAME}-migrate")
    job = one(docs, "Job", f"{FULLNAME}-migrate")
    assert hook_secret["metadata"]["annotations"]["helm.sh/hook"] == job["metadata"]["annotations"]["helm.sh/hook"]
    weight = lambda d: int(d["metadata"]["annotations"]["helm.sh/hook-weight"])  # noqa: E731
    assert weight(hook_secret) < weight(job)
    assert hook_secret["stringData"] == {"DATABASE_URL": ci_values("default")["secrets"]["databaseUrl"]}
    # The release's own Secret is an ordinary resource (kept across upgrades, removed on uninstall).
    assert "helm.sh/hook" not in (one(docs, "Secret", FULLNAME)["metadata"].get("annotations") or {})


def test_migrate_can_be_turned_off():
    docs = render_with("default", migrate__enabled=False)
    assert find(docs, "Job") == [] and find(docs, "Secret", f"{FULLNAME}-migrate") == []


def test_helm_test_probes_readiness():
    pod = one(rendered("default"), "Pod", f"{FULLNAME}-test-connection")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["containers"][0]["args"] == ["probe", "--url", f"http://{FULLNAME}-internal:9000/readyz"]


def test_versions_agree():
    cargo = tomllib.loads((ROOT / "gateway" / "Cargo.toml").read_text())["package"]["version"]
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["appVersion"] == cargo
    assert re.search(rf"^ARG VERSION={re.escape(cargo)}$", DOCKERFILE.read_text(), re.M)
    assert gateway_container(rendered("default"))["image"] == f"gateway:{cargo}"


# --- the image ----------------------------------------------------------------------------------


def test_hadolint():
    result = run(tool("hadolint"), "--no-color", str(DOCKERFILE))
    assert result.returncode == 0 and result.stdout.strip() == "", result.stdout + result.stderr


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [tuple(line.split(None, 1)) for line in lines if line and not line.startswith("#")]


def test_image_contract():
    instructions = dockerfile_instructions()
    stages = [args for op, args in instructions if op == "FROM"]
    assert stages == ["rust:1.95-bookworm AS builder", "debian:bookworm-slim"]
    runtime = instructions[[op for op, _ in instructions].index("FROM", 1) :]
    final = {op: args for op, args in runtime}
    assert final["USER"] == "10001:10001"
    assert final["EXPOSE"].split() == ["3000", "9000"]
    assert final["ENTRYPOINT"] == '["/usr/local/bin/gateway"]'
    assert final["CMD"] == '["serve"]'
    assert final["HEALTHCHECK"].endswith('CMD ["/usr/local/bin/gateway", "probe"]')
    # Only the binary comes from the builder; nothing is installed or written in the runtime stage.
    assert [args for op, args in runtime if op == "COPY"] == ["--from=builder /out/gateway /usr/local/bin/gateway"]
    assert not [op for op, _ in runtime if op in ("RUN", "VOLUME", "ADD")]
    labels = dict(re.findall(r'(org\.opencontainers\.image\.[a-z]+)="([^"]*)"', final["LABEL"]))
    assert set(labels) >= {f"org.opencontainers.image.{k}" for k in ("title", "description", "source", "licenses", "version")}
    assert labels["org.opencontainers.image.licenses"] == "MIT"
    assert labels["org.opencontainers.image.version"] == "${VERSION}"
    builds = [args for op, args in instructions if op == "RUN" and "cargo build" in args]
    assert len(builds) == 2 and all("--release --locked -p gateway" in b for b in builds)


def test_build_context_keeps_out_what_the_build_does_not_need():
    patterns = [
        line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*"
    allowed = {p[1:] for p in patterns if p.startswith("!")}
    assert allowed == {"Cargo.toml", "Cargo.lock", "gateway", "shared", "vendor", "loadtest/Cargo.toml", "loadtest/src"}
    # What the Dockerfile copies is all let in.
    copied = re.findall(r"^COPY (?!--from)(.+) \S+$", DOCKERFILE.read_text(), re.M)
    for sources in copied:
        for source in sources.split():
            assert source.rstrip("/") in allowed or source.split("/")[0] in allowed, source
            assert (ROOT / source).exists(), source


# --- the compose stack --------------------------------------------------------------------------


def compose_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "DOCKER_"))}
    for name in ("JWT_SECRET", "INTERNAL_API_TOKEN", "POSTGRES_PASSWORD", "GRAFANA_ADMIN_PASSWORD"):
        env.pop(name, None)
    env.update(extra)
    return env


@functools.cache
def compose_model() -> dict:
    result = run(
        tool("docker-compose"), "--env-file", str(ENV_EXAMPLE), "-f", str(COMPOSE), "config", "--format", "json",
        env=compose_env(),
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_compose_config_is_valid():
    services = compose_model()["services"]
    assert set(services) == {
        "gateway-1", "gateway-2", "gateway-3", "migrate", "haproxy", "redis", "postgres",
        "otel-collector", "tempo-init", "tempo", "prometheus", "grafana",
    }


def test_compose_refuses_to_start_without_secrets(tmp_path):
    empty = tmp_path / "empty.env"
    empty.write_text("")
    result = run(tool("docker-compose"), "--env-file", str(empty), "-f", str(COMPOSE), "config", env=compose_env())
    assert result.returncode != 0
    for name in ("JWT_SECRET", "INTERNAL_API_TOKEN", "POSTGRES_PASSWORD"):
        assert f"required variable {name} is missing" in result.stderr


def test_compose_has_no_secrets_of_its_own():
    raw = yaml.safe_load(COMPOSE.read_text())
    env = raw["x-gateway-env"]
    assert env["JWT_SECRET"].startswith("${JWT_SECRET:?")
    assert env["INTERNAL_API_TOKEN"].startswith("${INTERNAL_API_TOKEN:?")
    assert "${POSTGRES_PASSWORD:?" in env["DATABASE_URL"]
    assert "dev-only" not in COMPOSE.read_text()
    assert "DEVELOPMENT VALUES ONLY" in ENV_EXAMPLE.read_text()
    assert "deploy/.env" in (ROOT / ".gitignore").read_text()


@pytest.mark.parametrize("n", [1, 2, 3])
def test_compose_replicas(n):
    services = compose_model()["services"]
    gw = services[f"gateway-{n}"]
    assert gw["read_only"] is True
    assert gw["user"] == "10001:10001"
    assert gw["image"] == services["migrate"]["image"]
    assert gw["build"]["dockerfile"] == "deploy/Dockerfile" and Path(gw["build"]["context"]) == ROOT
    env = gw["environment"]
    assert env["NODE_ID"] == f"gateway-{n}"
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4318"
    assert env["REDIS_URL"] == "redis://redis:6379"
    assert env["DATABASE_URL"].endswith("@postgres:5432/gateway")
    for name in ("JWT_SECRET", "INTERNAL_API_TOKEN"):
        assert env[name]
    assert gw["healthcheck"]["test"][:3] == ["CMD", "/usr/local/bin/gateway", "probe"]
    assert gw["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert gw["depends_on"]["redis"]["condition"] == "service_healthy"
    # Longer than the drain (SHUTDOWN_GRACE_MS), so Compose does not SIGKILL it halfway.
    assert int(env["SHUTDOWN_GRACE_MS"]) < 30000 and gw["stop_grace_period"] == "30s"


def test_compose_migrate_is_one_shot():
    services = compose_model()["services"]
    migrate = services["migrate"]
    assert migrate["command"] == ["migrate"]
    assert migrate["restart"] == "no"
    assert migrate["read_only"] is True and migrate["user"] == "10001:10001"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["postgres"]["image"].startswith("postgres:15")
    assert services["redis"]["image"].startswith("redis:7")


def test_compose_bind_mounts_exist():
    for name, service in compose_model()["services"].items():
        for volume in service.get("volumes", []):
            if volume["type"] == "bind":
                assert Path(volume["source"]).exists(), f"{name}: {volume['source']}"


def test_balancer_and_prometheus_know_the_replicas():
    replicas = sorted(s for s in compose_model()["services"] if s.startswith("gateway-"))
    haproxy = (ROOT / "deploy" / "compose" / "haproxy.cfg").read_text()
    servers = re.findall(r"^\s*server (\S+) (\S+):3000 check cookie (\S+)$", haproxy, re.M)
    assert [host for _, host, _ in servers] == replicas
    assert all(name == cookie for name, _, cookie in servers)
    assert "cookie io_node insert indirect nocache" in haproxy
    assert "option httpchk GET /healthz" in haproxy
    prometheus = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    (job,) = prometheus["scrape_configs"]
    assert job["job_name"] == "gateway" and job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == [f"{r}:9000" for r in replicas]


def test_compose_observability_wiring():
    services = compose_model()["services"]
    collector = yaml.safe_load((ROOT / "deploy" / "compose" / "otel-collector.yaml").read_text())
    assert collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"].endswith(":4318")
    assert collector["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].endswith(":4317")
    assert collector["exporters"]["otlp/tempo"]["endpoint"] == "tempo:4317"
    assert collector["service"]["pipelines"]["traces"]["exporters"] == ["otlp/tempo"]
    tempo = yaml.safe_load((ROOT / "deploy" / "compose" / "tempo.yaml").read_text())
    assert tempo["server"]["http_listen_port"] == 3200
    assert "--config.file=/etc/prometheus/prometheus.yml" in services["prometheus"]["command"]
    # Grafana's data sources point at these service names.
    datasources = yaml.safe_load(
        (ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "datasources.yaml").read_text()
    )["datasources"]
    urls = {d["type"]: d["url"] for d in datasources}
    assert urls == {"prometheus": "http://prometheus:9090", "tempo": "http://tempo:3200"}
    mounts = {v["target"] for v in services["grafana"]["volumes"]}
    assert {"/etc/grafana/provisioning", "/var/lib/grafana/dashboards"} <= mounts
    assert [p["published"] for p in services["grafana"]["ports"]] == ["3001"]
    # The balancer where the guide's examples and the local cluster have it.
    assert [(p["published"], p["target"]) for p in services["haproxy"]["ports"]] == [("3000", 3000)]
    assert re.search(r"^\s*bind :3000$", (ROOT / "deploy" / "compose" / "haproxy.cfg").read_text(), re.M)


def test_haproxy_config_is_valid():
    result = run(system_tool("haproxy"), "-c", "-f", "deploy/compose/haproxy.cfg")
    assert result.returncode == 0 and "Configuration file is valid" in result.stdout + result.stderr, result.stderr


def test_prometheus_config_is_valid():
    result = run(system_tool("promtool"), "check", "config", "deploy/prometheus/prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


# --- YAML ---------------------------------------------------------------------------------------


def test_yamllint():
    # The repository's .yamllint; Helm's templates/ are ignored there (rendered and validated above).
    listed = run(tool("yamllint"), "--list-files", "deploy", "k8s")
    files = set(listed.stdout.split())
    assert {"deploy/compose.yaml", "k8s/gateway/values.yaml", "k8s/gateway/Chart.yaml"} <= files
    assert not [f for f in files if "/templates/" in f]
    result = run(tool("yamllint"), "--strict", "--format", "parsable", "deploy", "k8s", ".yamllint")
    assert result.returncode == 0, result.stdout + result.stderr
