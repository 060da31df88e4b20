#!/usr/bin/env python3
"""Structure test for the mesh-registry Helm chart.

For every matrix case (tests/helm/values/<case>.yaml) it reads what `helm template` rendered
(<render dir>/<case>.yaml) and the rendered NOTES (<render dir>/<case>.notes.txt), merges the case
over the chart's values.yaml the way Helm does, and asserts that the manifests say what those
values ask for: the workload (a Deployment whose rolling update never drops a replica, or a
StatefulSet whose replicas have DNS names through the headless Service), the env comes from
values, DATABASE_URL comes from the right Secret, the Services, probes, the preStop drain of this
replica only, the grace period, PodDisruptionBudget, spread, security contexts, resources, HPA,
the helm test pod, the NetworkPolicy (which ports it opens, to whom) and the NOTES' drain
commands.

Every upgrade case (tests/helm/reuse/<version>.yaml, an older chart's values.yaml) was rendered
as `helm upgrade --reuse-values` renders it (<render dir>/reuse-<version>.yaml): with the old
values in place of the chart's. The templates' defaults must then give what the current
values.yaml gives, so the expected values are the old ones merged over the current defaults.

Once per run it also checks the chart itself (apiVersion v2, values.schema.json describes every
value) and the Dockerfile.

Usage: check_render.py CHART_DIR VALUES_DIR REUSE_DIR RENDER_DIR RELEASE NAMESPACE [DOCKERFILE]
Prints one line per case and a closing "N passed, M failed"; exits 1 on any failure.
"""

import base64
import copy
import json
import os
import sys

import yaml

RESTRICTED_SECCOMP = {"type": "RuntimeDefault"}


class Case:
    """Collects the failures of one case, so a run reports all of them at once."""

    def __init__(self, name):
        self.name = name
        self.failures = []
        self.checks = 0

    def check(self, ok, what):
        self.checks += 1
        if not ok:
            self.failures.append(what)
        return ok

    def eq(self, got, want, what):
        return self.check(got == want, f"{what}: got {got!r}, want {want!r}")


def merge(base, over):
    """Helm's coalescing: maps merge key by key, anything else replaces, null deletes."""
    out = copy.deepcopy(base)
    for key, value in (over or {}).items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def env_string(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def fullname(values, release, chart_name):
    if values.get("fullnameOverride"):
        return values["fullnameOverride"][:54].rstrip("-")
    name = values.get("nameOverride") or chart_name
    if name in release:
        return release[:54].rstrip("-")
    return f"{release}-{name}"[:54].rstrip("-")


def load_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def labels_match(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_case(name, values, docs, notes, release, namespace, chart):
    c = Case(name)
    full = fullname(values, release, chart["name"])
    headless = f"{full}-headless"
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d.get("kind"), []).append(d)

    # Never a Namespace object; never a namespace other than the release's.
    c.check("Namespace" not in by_kind, "a Namespace object is rendered")
    for d in docs:
        ns = (d.get("metadata") or {}).get("namespace")
        c.check(ns in (None, namespace), f"{d['kind']}/{d['metadata']['name']} hard-codes namespace {ns!r}")

    # The workload: a Deployment rolls out surge-first (maxUnavailable 0); a StatefulSet names
    # its pods through the headless Service.
    kind = values["workload"]
    stateful = kind == "StatefulSet"
    c.eq(sorted(k for k in by_kind if k in ("Deployment", "StatefulSet")), [kind], "workload kinds")
    workloads = by_kind.get(kind, [])
    if not c.eq(len(workloads), 1, f"{kind}s"):
        return c
    dep = workloads[0]
    spec = dep["spec"]
    c.eq(dep["metadata"]["name"], full, f"{kind} name")
    autoscaling = values["autoscaling"]["enabled"]
    if autoscaling:
        c.check("replicas" not in spec, f"{kind} sets replicas although autoscaling is on")
    else:
        c.eq(spec.get("replicas"), values["replicaCount"], f"{kind} replicas")
    if stateful:
        c.eq(spec.get("serviceName"), headless, "StatefulSet serviceName (the replicas' DNS names)")
        c.eq(spec.get("podManagementPolicy"), "Parallel", "StatefulSet podManagementPolicy")
        c.eq((spec.get("updateStrategy") or {}).get("type"), "RollingUpdate", "StatefulSet updateStrategy")
        c.check("volumeClaimTemplates" not in spec, "StatefulSet claims volumes")
        c.check(len(full) <= 52, f"StatefulSet name {full!r} is longer than 52 characters")
    else:
        strategy = spec.get("strategy") or {}
        c.eq(strategy.get("type"), "RollingUpdate", "strategy type")
        c.eq(strategy.get("rollingUpdate"), {"maxUnavailable": 0, "maxSurge": 1}, "rollingUpdate")
    selector = spec["selector"]["matchLabels"]
    pod = spec["template"]
    pod_labels = pod["metadata"]["labels"]
    c.check(labels_match(selector, pod_labels), "the Deployment's selector does not match its pods")
    pspec = pod["spec"]
    containers = {ct["name"]: ct for ct in pspec["containers"]}
    if not c.check("mesh-registry" in containers, "no mesh-registry container"):
        return c
    ct = containers["mesh-registry"]
    c.check(ct["image"].startswith(values["image"]["repository"] + ":"), f"image {ct['image']!r}")

    # Environment from values.
    env_list = ct.get("env") or []
    names = [e["name"] for e in env_list]
    c.check(len(names) == len(set(names)), f"duplicate env names in {names}")
    env = {e["name"]: e for e in env_list}

    def env_value(key):
        return (env.get(key) or {}).get("value")

    admin_enabled = values["admin"]["enabled"]
    c.eq(env_value("HOST"), values["host"], "env HOST")
    c.eq(env_value("PORT"), str(values["port"]), "env PORT")
    c.eq(env_value("MCP_MESH_LOG_LEVEL"), values["logLevel"], "env MCP_MESH_LOG_LEVEL")
    if admin_enabled:
        c.eq(env_value("MCP_MESH_ADMIN_PORT"), str(values["admin"]["port"]), "env MCP_MESH_ADMIN_PORT")
    else:
        c.check("MCP_MESH_ADMIN_PORT" not in env, "MCP_MESH_ADMIN_PORT set although admin is disabled")
    # MCP_MESH_ADMIN_HOST only when admin.host is set; "podIP" from the downward API, with
    # MCP_MESH_REGISTRY_URL after it (the kubelet expands $(VAR) only from earlier entries) so
    # that commands run in the container find the admin port off loopback.
    admin_host = values["admin"].get("host") or ""
    on_pod_ip = admin_host == "podIP"
    if not admin_host:
        c.check("MCP_MESH_ADMIN_HOST" not in env, "MCP_MESH_ADMIN_HOST set although admin.host is not")
    elif on_pod_ip:
        c.eq((env.get("MCP_MESH_ADMIN_HOST") or {}).get("valueFrom"), {"fieldRef": {"fieldPath": "status.podIP"}},
             "env MCP_MESH_ADMIN_HOST (the pod's IP)")
        c.eq(env_value("MCP_MESH_REGISTRY_URL"), f"http://$(MCP_MESH_ADMIN_HOST):{values['admin']['port']}",
             "env MCP_MESH_REGISTRY_URL (the admin port on the pod's IP)")
        if "MCP_MESH_REGISTRY_URL" in env and "MCP_MESH_ADMIN_HOST" in env:
            c.check(names.index("MCP_MESH_ADMIN_HOST") < names.index("MCP_MESH_REGISTRY_URL"),
                    "MCP_MESH_REGISTRY_URL comes before MCP_MESH_ADMIN_HOST: $(MCP_MESH_ADMIN_HOST) stays unexpanded")
    else:
        c.eq(env_value("MCP_MESH_ADMIN_HOST"), admin_host, "env MCP_MESH_ADMIN_HOST")
    if not on_pod_ip:
        c.check("MCP_MESH_REGISTRY_URL" not in env, "MCP_MESH_REGISTRY_URL set although the admin port is on loopback")
    for key, value in values["config"].items():
        if value is not None:
            c.eq(env_value(key), env_string(value), f"env {key} (from config)")
    for extra in values["extraEnv"]:
        c.eq(env.get(extra["name"]), extra, f"env {extra['name']} (from extraEnv)")
    # The trace pipeline's environment: all of it with tracing.enabled, none of it without
    # (releases from older charts have no tracing values at all).
    tracing = values.get("tracing") or {}
    if tracing.get("enabled"):
        c.eq(env_value("MCP_MESH_DISTRIBUTED_TRACING_ENABLED"), "true", "env MCP_MESH_DISTRIBUTED_TRACING_ENABLED")
        c.eq(env_value("TELEMETRY_ENDPOINT"), tracing["endpoint"], "env TELEMETRY_ENDPOINT")
        c.eq(env_value("TELEMETRY_PROTOCOL"), tracing["protocol"], "env TELEMETRY_PROTOCOL")
        c.eq(env_value("TEMPO_URL"), tracing["tempoUrl"], "env TEMPO_URL")
        secret = tracing.get("existingSecret") or {}
        if secret.get("name"):
            c.eq((env.get("REDIS_URL") or {}).get("valueFrom"),
                 {"secretKeyRef": {"name": secret["name"], "key": secret["key"]}}, "env REDIS_URL (from the Secret)")
        else:
            c.eq(env_value("REDIS_URL"), tracing["redisUrl"], "env REDIS_URL")
    else:
        for key in ["MCP_MESH_DISTRIBUTED_TRACING_ENABLED", "REDIS_URL", "TELEMETRY_ENDPOINT",
                    "TELEMETRY_PROTOCOL", "TEMPO_URL"]:
            if key not in values["config"] and all(e["name"] != key for e in values["extraEnv"]):
                c.check(key not in env, f"{key} set although tracing is off")
    c.eq(pspec.get("enableServiceLinks"), False, "enableServiceLinks")

    # Prometheus: the pod annotations point at the port GET /metrics is on (the admin port when
    # there is one); the opt-in ServiceMonitor scrapes each replica through the headless Service
    # only (the public Service would scrape one replica at random, twice over).
    metrics = values["metrics"]
    metrics_port = "admin" if admin_enabled else "http"
    annotations = pod["metadata"].get("annotations") or {}
    if metrics["podAnnotations"]:
        c.eq(annotations.get("prometheus.io/scrape"), "true", "prometheus.io/scrape")
        c.eq(annotations.get("prometheus.io/port"),
             str(values["admin"]["port"] if admin_enabled else values["port"]), "prometheus.io/port")
        c.eq(annotations.get("prometheus.io/path"), "/metrics", "prometheus.io/path")
    else:
        c.check("prometheus.io/scrape" not in annotations, "scrape annotations although metrics.podAnnotations is false")
    monitors = by_kind.get("ServiceMonitor", [])
    if not metrics["serviceMonitor"]["enabled"]:
        c.eq(len(monitors), 0, "ServiceMonitors without metrics.serviceMonitor.enabled")
    elif c.eq(len(monitors), 1, "ServiceMonitors"):
        monitor = monitors[0]
        endpoint = monitor["spec"]["endpoints"][0]
        c.eq((endpoint["port"], endpoint["path"]), (metrics_port, "/metrics"), "ServiceMonitor endpoint")
        c.eq(endpoint["interval"], metrics["serviceMonitor"]["interval"], "ServiceMonitor interval")
        for key, value in metrics["serviceMonitor"]["labels"].items():
            c.eq(monitor["metadata"]["labels"].get(key), value, f"ServiceMonitor label {key}")
        wanted = monitor["spec"]["selector"]["matchLabels"]
        chosen = [s["metadata"]["name"] for s in by_kind.get("Service", [])
                  if labels_match(wanted, s["metadata"]["labels"])]
        c.eq(chosen, [headless], "Services the ServiceMonitor selects")
        ports = [p["name"] for s in by_kind.get("Service", []) if s["metadata"]["name"] == headless
                 for p in s["spec"]["ports"]]
        c.check(metrics_port in ports, f"the headless Service has no port {metrics_port!r}: {ports}")

    # DATABASE_URL from a Secret: the operator's, or one the chart creates and keeps.
    secret_ref = ((env.get("DATABASE_URL") or {}).get("valueFrom") or {}).get("secretKeyRef") or {}
    c.check("value" not in (env.get("DATABASE_URL") or {}), "DATABASE_URL given as a plain value")
    secrets = by_kind.get("Secret", [])
    existing = values["database"]["existingSecret"]
    if existing["name"]:
        c.eq((secret_ref.get("name"), secret_ref.get("key")), (existing["name"], existing["key"]), "DATABASE_URL secretKeyRef")
        c.eq(len(secrets), 0, "Secrets rendered with existingSecret")
    else:
        c.eq((secret_ref.get("name"), secret_ref.get("key")), (f"{full}-database", "DATABASE_URL"), "DATABASE_URL secretKeyRef")
        if c.eq(len(secrets), 1, "Secrets created by the chart"):
            secret = secrets[0]
            c.eq(secret["metadata"]["name"], secret_ref.get("name"), "created Secret name")
            c.eq((secret["metadata"].get("annotations") or {}).get("helm.sh/resource-policy"), "keep", "created Secret resource-policy")
            stored = (secret.get("data") or {}).get("DATABASE_URL")
            c.eq(stored and base64.b64decode(stored).decode(), values["database"]["url"], "created Secret DATABASE_URL")

    # Ports: http, and admin as its own named port.
    ports = {p["name"]: p for p in ct.get("ports") or []}
    c.eq((ports.get("http") or {}).get("containerPort"), values["port"], "container port http")
    if admin_enabled:
        c.eq((ports.get("admin") or {}).get("containerPort"), values["admin"]["port"], "container port admin")
    else:
        c.check("admin" not in ports, "admin container port although admin is disabled")

    # Services: the public one keeps the admin port out unless asked; the headless one lists every replica.
    services = {s["metadata"]["name"]: s for s in by_kind.get("Service", [])}
    c.eq(sorted(services), sorted([full, headless]), "Services")
    public = services.get(full)
    if public:
        pports = {p["name"]: p for p in public["spec"]["ports"]}
        c.eq(public["spec"].get("type"), values["service"]["type"], "public Service type")
        c.eq(public["spec"].get("selector"), selector, "public Service selector")
        c.eq((pports.get("http") or {}).get("port"), values["service"]["port"], "public Service http port")
        c.eq((pports.get("http") or {}).get("targetPort"), "http", "public Service http targetPort")
        c.check(public["spec"].get("clusterIP") != "None", "public Service is headless")
        admin_public = admin_enabled and values["service"]["exposeAdmin"]
        if admin_public:
            c.eq((pports.get("admin") or {}).get("targetPort"), "admin", "public Service admin port (asked for)")
        else:
            c.check("admin" not in pports, "public Service carries the admin port without being asked")
        for p in public["spec"]["ports"]:
            c.check(p.get("targetPort") != values["admin"]["port"] or admin_public, "public Service targets the admin port by number")
    hl = services.get(headless)
    if hl:
        hspec = hl["spec"]
        c.eq(hspec.get("clusterIP"), "None", "headless Service clusterIP")
        c.eq(hspec.get("publishNotReadyAddresses"), True, "headless Service publishNotReadyAddresses")
        c.eq(hspec.get("selector"), selector, "headless Service selector")
        hports = {p["name"]: p.get("targetPort") for p in hspec["ports"]}
        c.eq(hports, {"http": "http", "admin": "admin"} if admin_enabled else {"http": "http"}, "headless Service ports")

    # TLS: the reference's variables point into the mounted Secrets, each mounted read-only.
    tls = values.get("tls") or {}
    tls_mode = tls.get("mode") or "off"
    mounted = {m["mountPath"]: m for m in ct.get("volumeMounts") or []}
    secret_of = {v["name"]: (v.get("secret") or {}).get("secretName") for v in pspec.get("volumes") or []}
    expected_mounts = {}
    if tls_mode != "off":
        c.eq(env_value("MCP_MESH_TLS_MODE"), tls_mode, "env MCP_MESH_TLS_MODE")
        c.eq(env_value("MCP_MESH_TLS_CERT"), "/etc/mesh-registry/tls/tls.crt", "env MCP_MESH_TLS_CERT")
        c.eq(env_value("MCP_MESH_TLS_KEY"), "/etc/mesh-registry/tls/tls.key", "env MCP_MESH_TLS_KEY")
        expected_mounts["/etc/mesh-registry/tls"] = tls["certSecret"]
        if tls.get("caSecret"):
            c.eq(env_value("MCP_MESH_TLS_CA"), "/etc/mesh-registry/ca/ca.crt", "env MCP_MESH_TLS_CA")
            expected_mounts["/etc/mesh-registry/ca"] = tls["caSecret"]
        if tls.get("trustSecret"):
            c.eq(env_value("MCP_MESH_TRUST_BACKEND"), "filestore", "env MCP_MESH_TRUST_BACKEND")
            c.eq(env_value("MCP_MESH_TRUST_DIR"), "/etc/mcp-mesh/trust", "env MCP_MESH_TRUST_DIR")
            expected_mounts["/etc/mcp-mesh/trust"] = tls["trustSecret"]
    else:
        c.check(not {"MCP_MESH_TLS_MODE", "MCP_MESH_TLS_CERT"} & set(env), "TLS env set although tls.mode is off")
    if (values.get("database") or {}).get("tlsSecret"):
        expected_mounts["/etc/mesh-registry/postgres"] = values["database"]["tlsSecret"]
    for path, secret in expected_mounts.items():
        mount = mounted.get(path) or {}
        c.check(mount.get("readOnly") is True, f"{path} is not mounted read-only: {mount}")
        c.eq(secret_of.get(mount.get("name")), secret, f"the Secret mounted at {path}")
    c.eq(set(mounted) - {"/tmp"}, set(expected_mounts), "Secret mounts")

    # Probes: truthful endpoints, timings from values.
    probe_values = values["probes"]
    for probe, path, key in (
        ("livenessProbe", "/health", "liveness"),
        ("readinessProbe", "/ready", "readiness"),
        ("startupProbe", "/health", "startup"),
    ):
        got = ct.get(probe) or {}
        if tls_mode == "strict":
            # No client certificate in the kubelet: strict TLS would answer 403.
            c.eq(got.get("tcpSocket"), {"port": "http"}, f"{probe} endpoint (strict TLS)")
        elif tls_mode == "auto":
            c.eq(got.get("httpGet"), {"path": path, "port": "http", "scheme": "HTTPS"}, f"{probe} endpoint")
        else:
            c.eq(got.get("httpGet"), {"path": path, "port": "http"}, f"{probe} endpoint")
        timings = {k: v for k, v in got.items() if k not in ("httpGet", "tcpSocket")}
        c.eq(timings, probe_values[key], f"{probe} timings (from probes.{key})")

    # preStop drains this replica only, on the admin port (public port when admin is off), and
    # never waits for the fleet's running jobs; the grace period covers the drain request, the
    # graceful shutdown and a margin.
    request_timeout = values["drain"]["requestTimeoutSeconds"]
    linger = values["drain"].get("lingerSeconds", 5)
    drain_port = values["admin"]["port"] if admin_enabled else values["port"]
    pre_stop = ((ct.get("lifecycle") or {}).get("preStop") or {}).get("exec", {}).get("command")
    # Loopback reaches the admin port unless it binds the pod's IP; then the command takes the
    # address from MCP_MESH_REGISTRY_URL (checked above), as the kubelet expands nothing in it.
    local_flag = [] if on_pod_ip else ["--registry-url", f"http://127.0.0.1:{drain_port}"]
    c.eq(
        pre_stop,
        ["mesh-registry", "registry", "drain", "--timeout", str(request_timeout),
         "--linger", str(linger), *local_flag],
        "preStop command",
    )
    c.check(not {"--wait", "--fleet"} & set(pre_stop or []), f"preStop waits for or drains the fleet: {pre_stop}")
    grace = pspec.get("terminationGracePeriodSeconds")
    shutdown = int(values["config"].get("MCP_MESH_SHUTDOWN_TIMEOUT") or 30)
    c.eq(
        grace,
        request_timeout + linger + shutdown + values["drain"]["graceMarginSeconds"],
        "terminationGracePeriodSeconds",
    )

    # PodDisruptionBudget exactly when more than one replica can run.
    if autoscaling:
        multi = values["autoscaling"]["maxReplicas"] > 1
    else:
        multi = values["replicaCount"] > 1
    pdbs = by_kind.get("PodDisruptionBudget", [])
    want_pdb = values["podDisruptionBudget"]["enabled"] and multi
    if c.eq(len(pdbs), 1 if want_pdb else 0, "PodDisruptionBudgets"):
        for pdb in pdbs:
            c.eq(pdb["spec"].get("selector", {}).get("matchLabels"), selector, "PDB selector")
            c.eq(pdb["spec"].get("maxUnavailable"), values["podDisruptionBudget"]["maxUnavailable"], "PDB maxUnavailable")
            c.check("minAvailable" not in pdb["spec"], "PDB sets minAvailable")

    # Soft topology spread, each revision on its own (the label its controller stamps on pods).
    spread = pspec.get("topologySpreadConstraints") or []
    revision_label = "controller-revision-hash" if stateful else "pod-template-hash"
    if values["topologySpread"]["enabled"]:
        c.eq([t["topologyKey"] for t in spread], values["topologySpread"]["topologyKeys"], "spread topology keys")
        for t in spread:
            c.eq(t.get("whenUnsatisfiable"), "ScheduleAnyway", f"spread on {t.get('topologyKey')}: whenUnsatisfiable")
            c.eq(t.get("maxSkew"), values["topologySpread"]["maxSkew"], "spread maxSkew")
            c.eq((t.get("labelSelector") or {}).get("matchLabels"), selector, "spread labelSelector")
            c.eq(t.get("matchLabelKeys"), [revision_label], "spread matchLabelKeys")
    else:
        c.eq(spread, [], "spread constraints when disabled")

    # Restricted security contexts, from values; resources from values.
    check_restricted(c, pspec, ct, "registry pod")
    c.eq(pspec.get("securityContext"), values["podSecurityContext"], "pod securityContext (from values)")
    c.eq(ct.get("securityContext"), values["securityContext"], "container securityContext (from values)")
    c.eq(ct.get("resources"), values["resources"], "resources (from values)")
    c.eq(pspec.get("automountServiceAccountToken"), False, "automountServiceAccountToken")
    mounts = {m["mountPath"] for m in ct.get("volumeMounts") or []}
    c.check("/tmp" in mounts, "no writable /tmp next to the read-only root filesystem")

    # HPA when autoscaling is on.
    hpas = by_kind.get("HorizontalPodAutoscaler", [])
    if c.eq(len(hpas), 1 if autoscaling else 0, "HorizontalPodAutoscalers"):
        for hpa in hpas:
            a = values["autoscaling"]
            c.eq(hpa["apiVersion"], "autoscaling/v2", "HPA apiVersion")
            c.eq(hpa["spec"]["scaleTargetRef"], {"apiVersion": "apps/v1", "kind": kind, "name": full}, "HPA target")
            c.eq((hpa["spec"].get("minReplicas"), hpa["spec"]["maxReplicas"]), (a["minReplicas"], a["maxReplicas"]), "HPA min/max")
            want = {}
            if a["targetCPUUtilizationPercentage"]:
                want["cpu"] = a["targetCPUUtilizationPercentage"]
            if a["targetMemoryUtilizationPercentage"]:
                want["memory"] = a["targetMemoryUtilizationPercentage"]
            got = {m["resource"]["name"]: m["resource"]["target"]["averageUtilization"] for m in hpa["spec"]["metrics"]}
            c.eq(got, want, "HPA metrics")

    # The helm test hook pod checks /health through the public Service, and no registry selector picks it.
    pods = by_kind.get("Pod", [])
    tests = [p for p in pods if (p["metadata"].get("annotations") or {}).get("helm.sh/hook") == "test"]
    c.eq(len(pods), len(tests), "Pods that are not helm test hooks")
    if c.eq(len(tests), 1, "helm test hook pods"):
        t = tests[0]
        tct = t["spec"]["containers"]
        cmd = " ".join(tct[0].get("command", []) + tct[0].get("args", []))
        scheme = "http" if tls_mode == "off" else "https"
        c.check(f"{scheme}://{full}:{values['service']['port']}/health" in cmd, f"helm test pod does not GET /health on the Service: {cmd!r}")
        c.eq("--insecure" in cmd, tls_mode != "off", "helm test pod's --insecure (TLS on)")
        c.eq("--fail" in cmd, tls_mode != "strict", "helm test pod's --fail (not in strict TLS, which answers it 403)")
        c.eq(t["spec"].get("restartPolicy"), "Never", "helm test pod restartPolicy")
        c.check(not labels_match(selector, t["metadata"].get("labels") or {}), "the registry's selector picks the helm test pod")
        check_restricted(c, t["spec"], tct[0], "helm test pod")

    check_network_policy(c, values, by_kind.get("NetworkPolicy", []), pod_labels, selector, ports)

    # Service account: created or not, never with an API token.
    sas = by_kind.get("ServiceAccount", [])
    c.eq(len(sas), 1 if values["serviceAccount"]["create"] else 0, "ServiceAccounts")
    for sa in sas:
        c.eq(sa["metadata"]["name"], pspec.get("serviceAccountName"), "ServiceAccount name")
        c.eq(sa.get("automountServiceAccountToken"), False, "ServiceAccount automountServiceAccountToken")

    # NOTES: a stopping pod drains only itself; before an upgrade, drain and wait on every
    # replica (a StatefulSet's by name, a Deployment's inside each pod); upgrade in place; never
    # uninstall.
    needles = [
        "A STOPPING POD DRAINS ONLY ITSELF",
        f"grace period of {grace} s",
        f"helm upgrade {release} <chart> -n {namespace} --reuse-values",
        f"helm get values {release} -n {namespace}",
        f"NEVER run `helm uninstall {release}`",
    ]
    # A StatefulSet's replicas are drained by name from another pod, unless their admin port
    # binds loopback only; then, as a Deployment's, through kubectl exec into each pod.
    admin_loopback_only = admin_enabled and admin_host == "127.0.0.1"
    by_name = stateful and not admin_loopback_only
    if by_name:
        ordinals = ["$i"] if autoscaling else [str(i) for i in range(values["replicaCount"])]
        for n in ordinals:
            url = f"http://{full}-{n}.{headless}.{namespace}.svc:{drain_port}"
            needles += [f"mesh-registry registry drain --registry-url {url}\n",
                        f"mesh-registry registry drain --wait --wait-timeout 600 --registry-url {url}\n",
                        f"mesh-registry registry resume --registry-url {url}\n"]
        if autoscaling:
            needles.append(f"N=$(kubectl get statefulset {full} -n {namespace} -o jsonpath='{{.spec.replicas}}')")
        else:
            c.check(f"{full}-{values['replicaCount']}." not in notes, "NOTES name a replica past replicaCount")
    else:
        flag = "".join(" " + f for f in local_flag)
        needles += [
            f"kubernetes.io/service-name={headless}",
            f"mesh-registry registry drain{flag}\n",
            f"mesh-registry registry drain --wait --wait-timeout 600{flag}\n",
            f"mesh-registry registry resume{flag}\n",
            "for p in $PODS; do",
        ]
        c.check(f"{full}-0.{headless}" not in notes, "NOTES drain replicas by name although no other pod reaches them")
        c.eq(f"replica <a.b.c.d> is also http://<a-b-c-d>.{headless}.{namespace}.svc:{drain_port}" in notes,
             not admin_loopback_only,
             "NOTES offer the replica's address exactly when other pods reach its admin port")
    for needle in needles:
        c.check(needle in notes, f"NOTES lack {needle!r}")
    policy = values["networkPolicy"]
    if policy["enabled"]:
        c.check(f"NetworkPolicy {full} admits only:\n  port {values['port']} (API) from " in notes,
                "NOTES do not describe the NetworkPolicy")
        c.eq("THE NETWORKPOLICY\nCANNOT KEEP IT APART" in notes, not admin_enabled,
             "NOTES warn that the policy cannot keep /admin/* apart exactly when admin is disabled")
        if by_name:
            where = "admitted by networkPolicy.adminFrom" if policy["adminFrom"] else f"in namespace {namespace}"
            c.check(f"run these from any pod {where}" in notes, f"NOTES do not say the drain runs from a pod {where}")
    else:
        c.check("NetworkPolicy" not in notes, "NOTES mention a NetworkPolicy that is not rendered")
    old_wait = values["drain"].get("waitTimeoutSeconds")
    c.eq(f"drain.waitTimeoutSeconds ({old_wait}, from chart 0.1.0) is no longer used" in notes, bool(old_wait),
         "NOTES say drain.waitTimeoutSeconds is no longer used exactly when it is set")

    c.kinds = sorted(f"{k}" for k in by_kind)
    return c


def check_network_policy(c, values, policies, pod_labels, selector, container_ports):
    """Opt-in: the registry pods admit the public port from publicFrom (everyone when empty) and
    the admin port from adminFrom and each other (the release's namespace when empty), ingress
    only, nothing else."""
    policy = values["networkPolicy"]
    if not c.eq(len(policies), 1 if policy["enabled"] else 0, "NetworkPolicies") or not policies:
        return
    spec = policies[0]["spec"]
    c.check(labels_match(spec.get("podSelector", {}).get("matchLabels"), pod_labels),
            "the NetworkPolicy's podSelector does not select the registry pods")
    c.eq(spec.get("policyTypes"), ["Ingress"], "NetworkPolicy policyTypes (egress stays open)")
    c.check("egress" not in spec, "NetworkPolicy restricts egress")
    want = [{"ports": [{"port": values["port"], "protocol": "TCP"}],
             **({"from": policy["publicFrom"]} if policy["publicFrom"] else {})}]
    if values["admin"]["enabled"]:
        # An empty podSelector without a namespaceSelector: every pod of the policy's namespace.
        # Given peers, the registry's own pods join them, so that a drain run through one replica
        # (the NOTES) reaches the others.
        peers = policy["adminFrom"] + [{"podSelector": {"matchLabels": selector}}] if policy["adminFrom"] else [{"podSelector": {}}]
        want.append({"ports": [{"port": values["admin"]["port"], "protocol": "TCP"}], "from": peers})
    c.eq(spec.get("ingress"), want, "NetworkPolicy ingress rules")
    # Every port the container serves is covered by exactly one rule.
    opened = [p["port"] for rule in spec.get("ingress") or [] for p in rule.get("ports") or []]
    c.eq(sorted(opened), sorted(p["containerPort"] for p in container_ports.values()),
         "NetworkPolicy ports against the container's ports")


def check_restricted(c, pod_spec, container, what):
    psc = pod_spec.get("securityContext") or {}
    csc = container.get("securityContext") or {}
    c.check(csc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True, f"{what}: runAsNonRoot")
    c.check(csc.get("runAsUser", psc.get("runAsUser", 1)) != 0, f"{what}: runs as uid 0")
    c.eq(csc.get("readOnlyRootFilesystem"), True, f"{what}: readOnlyRootFilesystem")
    c.eq(csc.get("allowPrivilegeEscalation"), False, f"{what}: allowPrivilegeEscalation")
    c.check(csc.get("privileged") is not True, f"{what}: privileged")
    caps = csc.get("capabilities") or {}
    c.check("ALL" in (caps.get("drop") or []), f"{what}: capabilities not all dropped")
    c.check(not caps.get("add"), f"{what}: capabilities added")
    c.eq(csc.get("seccompProfile", psc.get("seccompProfile")), RESTRICTED_SECCOMP, f"{what}: seccompProfile")


def check_schema(c, values, schema, path="values"):
    """Every value in values.yaml is described by values.schema.json."""
    if not isinstance(values, dict):
        return
    props = schema.get("properties")
    if props is None:  # a free-form map (annotations, nodeSelector, ...)
        c.check("description" in schema, f"{path}: free-form map without a description")
        return
    c.eq(schema.get("additionalProperties"), False, f"{path}: schema accepts unknown keys")
    for key, value in values.items():
        sub = props.get(key)
        if c.check(sub is not None, f"{path}.{key}: not in values.schema.json"):
            c.check("description" in sub, f"{path}.{key}: no description in values.schema.json")
            check_schema(c, value, sub, f"{path}.{key}")
    for key, sub in props.items():
        c.check("description" in sub, f"{path}.{key}: no description in values.schema.json")


def check_chart(chart_dir, values, chart):
    c = Case("chart")
    c.eq(chart.get("apiVersion"), "v2", "Chart.yaml apiVersion")
    with open(os.path.join(chart_dir, "values.schema.json")) as f:
        schema = json.load(f)
    check_schema(c, values, schema)
    c.check(os.path.isfile(os.path.join(chart_dir, "templates", "NOTES.txt")), "no NOTES.txt")
    for root, _, files in os.walk(os.path.join(chart_dir, "templates")):
        for name in files:
            with open(os.path.join(root, name)) as f:
                text = f.read()
            c.check("kind: Namespace" not in text, f"{name} declares a Namespace")
            c.check("namespace:" not in text, f"{name} sets a namespace (the release's is used)")
    return c


def check_dockerfile(path):
    c = Case("Dockerfile")
    with open(path) as f:
        lines = [ln.strip() for ln in f if ln.strip() and not ln.lstrip().startswith("#")]
    froms = [ln for ln in lines if ln.upper().startswith("FROM ")]
    c.check(len(froms) >= 2, f"not a multi-stage build: {froms}")
    final = lines[lines.index(froms[-1]):] if froms else []
    users = [ln.split(None, 1)[1] for ln in final if ln.upper().startswith("USER ")]
    c.check(bool(users) and users[-1].split(":")[0] not in ("0", "root"), f"final stage user {users}")
    c.check(any(ln.startswith("COPY --from=") and "/usr/local/bin/mesh-registry" in ln for ln in final), "binary not copied to /usr/local/bin/mesh-registry")
    entry = [ln for ln in final if ln.upper().startswith("ENTRYPOINT")]
    c.check(bool(entry) and json.loads(entry[-1].split(None, 1)[1]) in (["mesh-registry"], ["/usr/local/bin/mesh-registry"]), f"ENTRYPOINT {entry}")
    return c


def main(argv):
    if len(argv) not in (7, 8):
        print(__doc__.strip().splitlines()[-2], file=sys.stderr)
        return 2
    chart_dir, values_dir, reuse_dir, render_dir, release, namespace = argv[1:7]
    with open(os.path.join(chart_dir, "Chart.yaml")) as f:
        chart = yaml.safe_load(f)
    with open(os.path.join(chart_dir, "values.yaml")) as f:
        defaults = yaml.safe_load(f)

    results = [check_chart(chart_dir, defaults, chart)]
    if len(argv) == 8:
        results.append(check_dockerfile(argv[7]))
    # A matrix case is merged over the defaults by Helm; an upgrade case's old values stand in
    # for the defaults, and the templates' defaults fill what they lack: the same merge.
    for directory, prefix in ((values_dir, ""), (reuse_dir, "reuse-")):
        for file in sorted(os.listdir(directory)):
            if not file.endswith(".yaml"):
                continue
            name = prefix + file[: -len(".yaml")]
            with open(os.path.join(directory, file)) as f:
                values = merge(defaults, yaml.safe_load(f) or {})
            with open(os.path.join(render_dir, f"{name}.notes.txt")) as f:
                notes = f.read()
            docs = load_docs(os.path.join(render_dir, f"{name}.yaml"))
            results.append(check_case(name, values, docs, notes, release, namespace, chart))

    failed = 0
    for r in results:
        if r.failures:
            failed += 1
            print(f"FAIL {r.name}: {len(r.failures)} of {r.checks} checks failed")
            for f in r.failures:
                print(f"     - {f}")
        else:
            kinds = f" [{', '.join(getattr(r, 'kinds', []))}]" if getattr(r, "kinds", None) else ""
            print(f"ok   {r.name}: {r.checks} checks{kinds}")
    print(f"helm: {len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
