#!/usr/bin/env python3
"""Our image in the reference's charts: the registry container that the reference's
`mcp-mesh-registry` chart, and its `mcp-mesh-core` umbrella, render with default values must come
up healthy and serve with our binary.

What those charts render is recorded as data in reference-charts.json (CI cannot download the
charts): per chart, the registry container (env from a ConfigMap, Secrets and the downward API;
ports, probes, security context, volume mounts), its pod (security context, volumes,
annotations, grace period) and the objects it reads (ConfigMap, Secrets, the Services whose
links Kubernetes puts into the environment). Only the database endpoint a user sets in values is
a placeholder: {db_host}, {db_name}, {db_user}, {db_password}.

For each chart, against a fresh PostgreSQL database, the test plays the kubelet:
  * builds the container's environment as the kubelet does: service links (enableServiceLinks is
    on in those charts), envFrom, then env in order with $(VAR) expansion, Secret and
    downward-API values, and checks that of these mesh-registry reads exactly what docs/helm.md
    says it reads (`mesh-registry serve --help` names every variable it reads);
  * runs our binary (no command or args: the chart relies on the image's entrypoint, which is
    `mesh-registry serve`) in a pod-like sandbox: its own network namespace (so the chart's
    ports are the real ones), a mount namespace in which every filesystem is remounted read-only
    (readOnlyRootFilesystem), a fresh tmpfs on /tmp (the chart's emptyDir, the only writable
    path; TMPDIR=/tmp), the working directory / (read-only), and the chart's uid/gid with
    no_new_privs (when run as root; otherwise as the invoking user in a user namespace). The
    database is reached through 127.0.0.1:5432 inside the sandbox, relayed to PostgreSQL's Unix
    socket;
  * probes it as the kubelet would (startup, then readiness and liveness: path and named port
    from the chart, within their timeouts and the startup budget), registers an agent and runs a
    job cycle (submit, claim, progress, complete) on the chart's port, reads /admin/drain there
    (the chart has no admin port), and checks that nothing serves the metrics port the chart's
    prometheus.io annotations point at;
  * sends SIGTERM and expects exit 0 within the pod's grace period.

Usage: tests/helm/dropin.py [BINARY]          (default target/debug/mesh-registry)
       tests/helm/dropin.py --record REFERENCE_HELM_DIR [--helm HELM]
           re-renders the reference's charts (a checkout's helm/ directory) and rewrites
           reference-charts.json; `git diff` then shows what changed upstream.
Needs: psql, unshare, ip, mount; TEST_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432)
and TEST_POSTGRES_SOCKET (default /var/run/postgresql/.s.PGSQL.5432), the same server.
"""

import base64
import ctypes
import http.client
import json
import os
import pathlib
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
FACTS = HERE / "dropin" / "reference-charts.json"
PG_SERVER = os.environ.get("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432")
PG_SOCKET = os.environ.get("TEST_POSTGRES_SOCKET", "/var/run/postgresql/.s.PGSQL.5432")
# Inside the sandbox: where the database answers, and the pod's downward-API values.
DB_HOST, DB_PORT, DB_USER, DB_PASSWORD = "127.0.0.1", 5432, "postgres", "not-checked-by-trust-auth"
POD_IP = "127.0.0.1"
# What mesh-registry takes from those charts' environment (docs/helm.md says what each means).
READ_FROM_CHART = sorted(["DATABASE_URL", "DEFAULT_TIMEOUT_THRESHOLD", "HEALTH_CHECK_INTERVAL", "HOST",
                          "MCP_MESH_DEBUG_MODE", "MCP_MESH_DISTRIBUTED_TRACING_ENABLED", "MCP_MESH_LOG_LEVEL",
                          "MCP_MESH_TLS_MODE", "MCP_MESH_TRACE_RETENTION", "MCP_MESH_TRUST_DIR", "PORT",
                          "REDIS_URL", "TELEMETRY_ENDPOINT", "TRACE_EXPORTER_TYPE"])
# Fake ClusterIPs for the service links; the master Service is in every pod's environment.
MASTER_SERVICE = {"name": "kubernetes", "clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443}]}


def log(message):
    print(f"[dropin {time.strftime('%H:%M:%S')}] {message}", flush=True)


# ---------------------------------------------------------------- the kubelet's environment


def service_links(services):
    """The variables Kubernetes derives from the Services in the pod's namespace."""
    env = {}
    for index, service in enumerate(services):
        if service["clusterIP"] == "None":
            continue  # headless: no links
        ip = service["clusterIP"] or f"10.96.{index // 250}.{index % 250 + 2}"  # as if allocated
        name = service["name"].upper().replace("-", "_")
        ports = service["ports"]
        env[f"{name}_SERVICE_HOST"] = ip
        env[f"{name}_SERVICE_PORT"] = str(ports[0]["port"])
        env[f"{name}_PORT"] = f"tcp://{ip}:{ports[0]['port']}"
        for port in ports:
            if port.get("name"):
                env[f"{name}_SERVICE_PORT_{port['name'].upper().replace('-', '_')}"] = str(port["port"])
            prefix = f"{name}_PORT_{port['port']}_TCP"
            env.update({prefix: f"tcp://{ip}:{port['port']}", f"{prefix}_PROTO": "tcp",
                        f"{prefix}_PORT": str(port["port"]), f"{prefix}_ADDR": ip})
    return env


def expand(value, known):
    """Kubernetes' $(VAR) expansion: defined names expand, $$ escapes, anything else stays."""
    def one(match):
        if match.group(0) == "$$":
            return "$"
        return known.get(match.group(1), match.group(0))
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)", one, value)


def container_env(chart, pod_name):
    """The environment the kubelet gives the registry container."""
    links = service_links([MASTER_SERVICE] + chart["services"])
    env = {}
    for source in chart["container"].get("envFrom", []):
        env.update(chart["configMaps"][source["configMapRef"]["name"]])
    fields = {"metadata.name": pod_name, "metadata.namespace": chart["namespace"], "status.podIP": POD_IP}
    for entry in chart["container"].get("env", []):
        if "value" in entry:
            env[entry["name"]] = expand(entry["value"], {**links, **env})
        elif "fieldRef" in entry.get("valueFrom", {}):
            env[entry["name"]] = fields[entry["valueFrom"]["fieldRef"]["fieldPath"]]
        else:
            ref = entry["valueFrom"]["secretKeyRef"]
            env[entry["name"]] = chart["secrets"][ref["name"]][ref["key"]]
    return {**links, **env}


def reads_env(binary):
    """The environment variables `mesh-registry serve` reads (its --help names them), and RUST_LOG."""
    help_text = subprocess.run([binary, "serve", "--help"], capture_output=True, text=True, check=True,
                               pass_fds=BINARY_FDS).stdout
    return set(re.findall(r"\[env: ([A-Z0-9_]+)", help_text)) | {"RUST_LOG"}


def fill(chart, database):
    """The facts with the database endpoint of this run in place of the placeholders."""
    text = json.dumps(chart)
    for key, value in (("db_host", DB_HOST), ("db_name", database), ("db_user", DB_USER),
                       ("db_password", DB_PASSWORD)):
        text = text.replace("{" + key + "}", value)
    return json.loads(text)


# ---------------------------------------------------------------- the sandbox


def read_only_everywhere():
    """Remounts every filesystem read-only in this (private) mount namespace, except /proc."""
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split() for line in f]
    for fields in mounts:
        target = fields[4].encode().decode("unicode_escape")
        if target == "/proc" or target.startswith("/proc/"):
            continue
        # Keep the flags a user namespace may not clear; add ro.
        kept = [o for o in fields[5].split(",") if o in ("nosuid", "nodev", "noexec", "relatime", "noatime")]
        subprocess.run(["mount", "-o", ",".join(["remount", "bind", "ro", *kept]), target],
                       check=False, capture_output=True)


def sandbox():
    read_only_everywhere()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m,mode=1777", "tmpfs", "/tmp"], check=True)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    for path in ("/", str(ROOT), "/var/tmp", "/dev/shm"):
        if not os.path.isdir(path):
            continue
        try:
            with open(os.path.join(path, f".dropin-write-probe-{os.getpid()}"), "w"):
                pass
        except OSError as error:
            if error.errno != 30:  # EROFS
                raise
        else:
            raise SystemExit(f"{path} is still writable in the sandbox")


def relay_database():
    """127.0.0.1:5432 in the sandbox's network namespace → PostgreSQL's Unix socket."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((DB_HOST, DB_PORT))
    listener.listen(64)

    def pipe(client):
        upstream = socket.socket(socket.AF_UNIX)
        upstream.connect(PG_SOCKET)
        pair = {client: upstream, upstream: client}
        try:
            while True:
                for ready in select.select(list(pair), [], [])[0]:
                    data = ready.recv(65536)
                    if not data:
                        return
                    pair[ready].sendall(data)
        except OSError:
            pass
        finally:
            client.close()
            upstream.close()

    def accept():
        while True:
            client, _ = listener.accept()
            threading.Thread(target=pipe, args=(client,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()


def as_pod_user(security_context):
    """preexec_fn: the chart's uid and gid (and fsGroup) with no_new_privs, when we can."""
    uid, gid = security_context.get("runAsUser"), security_context.get("runAsGroup")
    groups = [g for g in (gid, security_context.get("fsGroup")) if g is not None]

    def drop():
        ctypes.CDLL(None, use_errno=True).prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS
        if os.environ.get("DROPIN_USERNS") != "1":
            os.setgroups(sorted(set(groups)))
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
    return drop


# ---------------------------------------------------------------- the pod's life


def http_get(port, path, timeout):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def call(port, method, path, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=json.dumps(body) if body is not None else None,
                     headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        data = response.read()
        return response.status, (json.loads(data) if data else None)
    finally:
        conn.close()


def probe_ok(port, probe):
    try:
        status, _ = http_get(port, probe["httpGet"]["path"], probe.get("timeoutSeconds", 1))
        return 200 <= status < 400
    except OSError:
        return False


def run_pod(name, chart, binary, database):
    chart = fill(chart, database)
    container, pod = chart["container"], chart["pod"]
    pod_name = f"{chart['workloadName']}-7c9d8b6f5d-x2k4q"
    env = container_env(chart, pod_name)
    # What the container runtime adds: the image's PATH, the pod's hostname, HOME of an unknown
    # uid; and TMPDIR, pointing at the one writable path.
    env.update(PATH="/usr/local/bin:/usr/bin:/bin", HOSTNAME=pod_name, HOME="/", TMPDIR="/tmp")
    links = service_links([MASTER_SERVICE] + chart["services"])
    read = sorted(reads_env(binary) & set(env))
    unread = sorted(set(env) - set(read) - set(links))
    log(f"{name}: {len(env)} environment variables ({len(links)} service links); mesh-registry reads "
        + ", ".join(f"{k}={env[k]}" for k in read) + f"; and not {', '.join(unread)}")
    assert read == READ_FROM_CHART, (
        f"{name}: mesh-registry now reads {read} from this chart's environment, not {READ_FROM_CHART}: "
        "check docs/helm.md (Using our image in the reference's charts) and update READ_FROM_CHART")
    security = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
    assert security.get("readOnlyRootFilesystem") is True, "the chart no longer sets readOnlyRootFilesystem"
    mounts = [m["mountPath"] for m in container.get("volumeMounts", [])]
    assert mounts == ["/tmp"], f"the chart mounts {mounts}; the sandbox provides /tmp only"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}

    started = time.monotonic()
    # No command or args in the chart: the image's ENTRYPOINT and CMD, `mesh-registry serve`.
    assert "command" not in container and "args" not in container
    process = subprocess.Popen([binary, "serve"], env=env, cwd="/", stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               preexec_fn=as_pod_user(security), pass_fds=BINARY_FDS)
    output = []  # kept in memory: /tmp must hold only what the registry writes
    threading.Thread(target=lambda: output.extend(process.stdout), daemon=True).start()
    try:
        # Startup probe: the kubelet gives it initialDelaySeconds + periodSeconds × failureThreshold.
        startup = container["startupProbe"]
        budget = startup.get("initialDelaySeconds", 0) + startup.get("periodSeconds", 10) * startup.get("failureThreshold", 3)
        while not probe_ok(ports[startup["httpGet"]["port"]], startup):
            if process.poll() is not None or time.monotonic() - started > budget:
                raise AssertionError(f"{name}: not healthy on the startup probe (exit {process.poll()}):\n"
                                     + b"".join(output).decode(errors="replace"))
            time.sleep(0.1)
        healthy_after = time.monotonic() - started
        with open(f"/proc/{process.pid}/status") as f:
            ids = {line.split(":")[0]: line.split()[1] for line in f if line.startswith(("Uid", "Gid"))}
        for probe_name in ("readinessProbe", "livenessProbe"):
            probe = container[probe_name]
            assert probe_ok(ports[probe["httpGet"]["port"]], probe), f"{name}: {probe_name} {probe['httpGet']} fails"
        http_port = ports["http"]

        # Serve: an agent registers, a job goes through a whole cycle.
        agent = f"dropin-{uuid.uuid4().hex[:6]}"
        status, _ = call(http_port, "POST", "/heartbeat", {"agent_id": agent, "name": agent, "tools": [
            {"function_name": "run", "capability": "dropin", "kwargs": {"task": True}}]})
        assert status == 200, f"{name}: register answered {status}"
        status, job = call(http_port, "POST", "/jobs", {"capability": "dropin", "submitted_by": "dropin",
                                                        "submitted_payload": {"chart": name}})
        assert status == 201, f"{name}: submit answered {status}"
        status, claimed = call(http_port, "POST", "/jobs/claim", {"capability": "dropin", "instance_id": agent})
        assert status == 200 and claimed["claimed"] and claimed["claimed"][0]["id"] == job["id"], claimed
        epoch = claimed["claimed"][0]["claim_epoch"]
        for delta in ({"progress": 0.5}, {"status": "completed", "result": {"ok": True}}):
            status, answer = call(http_port, "POST", "/jobs/batch", {"instance_id": agent, "deltas": [
                {"id": job["id"], "claim_epoch": epoch, **delta}]})
            assert status == 200 and answer["accepted"] == 1, answer
        status, done = call(http_port, "GET", f"/jobs/{job['id']}")
        assert status == 200 and done["status"] == "completed" and done["result"] == {"ok": True}, done
        status, agents = call(http_port, "GET", "/agents")
        assert status == 200 and any(a["name"] == agent for a in agents["agents"]), agents
        # No admin port in the chart (registry.security.adminPort 0): /admin/* is on the public port.
        assert "MCP_MESH_ADMIN_PORT" not in env
        status, drain = call(http_port, "GET", "/admin/drain")
        assert status == 200 and drain["draining"] is False, drain

        # The chart's prometheus.io/port annotation and its "metrics" container port: nothing
        # serves them (docs/helm.md, limits).
        annotated = int(pod["annotations"]["prometheus.io/port"])
        assert ports.get("metrics") == annotated
        with socket.socket() as s:
            refused = s.connect_ex(("127.0.0.1", annotated)) != 0
        assert refused, f"{name}: something now listens on {annotated}: update docs/helm.md's limits"

        grace = pod.get("terminationGracePeriodSeconds") or 30  # the Kubernetes default
        stopping = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=grace)
        stopped_in = time.monotonic() - stopping
        assert code == 0, f"{name}: exit {code} after SIGTERM"
        leftovers = os.listdir("/tmp")
        user = f"uid {ids['Uid']} gid {ids['Gid']}" + (
            " in a user namespace (the invoking user)" if os.environ.get("DROPIN_USERNS") == "1" else "")
        log(f"{name}: {user}; "
            f"healthy on {startup['httpGet']['path']} (port {startup['httpGet']['port']}={http_port}) "
            f"after {healthy_after:.2f} s; readiness and liveness ok; agent registered, job submitted, claimed, "
            f"completed; /admin/drain on the public port; nothing on the metrics port {annotated}; "
            f"SIGTERM → exit 0 in {stopped_in:.2f} s (grace {grace} s); /tmp holds {leftovers or 'nothing'}")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


# ---------------------------------------------------------------- outside and inside


def psql(statement):
    subprocess.run(["psql", f"{PG_SERVER}/postgres", "-v", "ON_ERROR_STOP=1", "-qc", statement],
                   check=True, capture_output=True)


# The binary, kept open across the sandbox: the checkout may live under /tmp, which the sandbox
# replaces with an empty tmpfs (CI clones anywhere), so it is run as /proc/self/fd/<fd>.
BINARY_FDS = ()


def inside(binary, databases):
    global BINARY_FDS
    facts = json.loads(FACTS.read_text())  # before the sandbox hides the checkout
    fd = os.open(binary, os.O_RDONLY)
    os.set_inheritable(fd, True)
    BINARY_FDS = (fd,)
    binary = f"/proc/self/fd/{fd}"
    sandbox()
    relay_database()
    for name, chart in facts["charts"].items():
        run_pod(name, chart, binary, databases[name])
    return 0


def outside(binary):
    facts = json.loads(FACTS.read_text())
    for tool in ("psql", "unshare", "ip", "mount"):
        if not shutil.which(tool):
            raise SystemExit(f"dropin: {tool} is needed")
    if not os.path.exists(PG_SOCKET):
        raise SystemExit(f"dropin: no PostgreSQL socket at {PG_SOCKET} (set TEST_POSTGRES_SOCKET)")
    databases = {name: f"mesh_dropin_{uuid.uuid4().hex[:8]}" for name in facts["charts"]}
    started = time.monotonic()
    namespaces = ["unshare", "--mount", "--net", "--propagation", "private"]
    env = dict(os.environ)
    if os.geteuid() != 0:
        namespaces[1:1] = ["--user", "--map-root-user"]
        env["DROPIN_USERNS"] = "1"
    try:
        for database in databases.values():
            psql(f"CREATE DATABASE {database}")
        code = subprocess.run(namespaces + [sys.executable, __file__, "--inside", binary, json.dumps(databases)],
                              env=env).returncode
    finally:
        for database in databases.values():
            psql(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
    if code == 0:
        log(f"{len(databases)} charts ({', '.join(facts['charts'])}): our binary serves in their registry "
            f"container, in {time.monotonic() - started:.1f} s")
    return code


# ---------------------------------------------------------------- recording the facts


def record(reference_helm_dir, helm):
    """Renders the reference's charts with default values (database endpoint set to sentinels) and
    writes what the registry pod gets to reference-charts.json."""
    import yaml  # only here: the test itself needs nothing beyond the standard library

    sentinels = {"db_host": "sentinel-db-host", "db_name": "sentinel_db_name", "db_user": "sentinel_db_user",
                 "db_password": "sentinel-db-password"}
    charts = {
        "mcp-mesh-registry": {"release": "mcp-registry", "dir": "mcp-mesh-registry", "set": {
            "registry.database.host": "db_host", "registry.database.name": "db_name",
            "registry.database.username": "db_user", "registry.database.password": "db_password"}},
        "mcp-mesh-core": {"release": "mcp-core", "dir": "mcp-mesh-core", "set": {
            "global.postgres.host": "db_host", "global.postgres.name": "db_name",
            "global.postgres.username": "db_user"}},
    }
    namespace = "mcp-mesh"
    out = {"source": "dhyansraj/mcp-mesh helm/mcp-mesh-registry and helm/mcp-mesh-core, rendered with "
                     "default values except the database endpoint ({db_host}, {db_name}, {db_user}, {db_password}); "
                     "the registry container, its pod, and the ConfigMaps, Secrets and Services it reads. "
                     "Regenerate: tests/helm/dropin.py --record <reference checkout>/helm",
           "charts": {}}
    with tempfile.TemporaryDirectory() as work:
        shutil.copytree(reference_helm_dir, f"{work}/helm")
        for name, spec in charts.items():
            chart_dir = f"{work}/helm/{spec['dir']}"
            version = yaml.safe_load(open(f"{chart_dir}/Chart.yaml"))["version"]
            if name == "mcp-mesh-core":
                subprocess.run([helm, "dependency", "build", chart_dir], check=True, capture_output=True)
            args = [a for k, v in spec["set"].items() for a in ("--set", f"{k}={sentinels[v]}")]
            rendered = subprocess.run([helm, "template", spec["release"], chart_dir, "-n", namespace, *args],
                                      check=True, capture_output=True, text=True).stdout
            docs = [d for d in yaml.safe_load_all(rendered) if d]
            workload = next(d for d in docs if d["kind"] in ("Deployment", "StatefulSet")
                            and d["metadata"]["labels"].get("app.kubernetes.io/component") == "registry")
            pod_spec = workload["spec"]["template"]["spec"]
            container = next(c for c in pod_spec["containers"] if c["name"] == "registry")
            container = {k: v for k, v in container.items() if k not in ("image", "imagePullPolicy")}
            refs = {e["valueFrom"]["secretKeyRef"]["name"] for e in container.get("env", [])
                    if "secretKeyRef" in e.get("valueFrom", {})}
            config_maps = {s["configMapRef"]["name"] for s in container.get("envFrom", [])}
            by_name = {(d["kind"], d["metadata"]["name"]): d for d in docs}
            secrets = {}
            for ref in sorted(refs):
                data = by_name[("Secret", ref)].get("data") or {}
                secrets[ref] = {k: base64.b64decode(v).decode() for k, v in data.items()}
            entry = {
                "chart": f"{spec['dir']} {version}",
                "release": spec["release"],
                "namespace": namespace,
                "workloadKind": workload["kind"],
                "workloadName": workload["metadata"]["name"],
                "pod": {
                    "annotations": {k: v for k, v in workload["spec"]["template"]["metadata"].get("annotations", {}).items()
                                    if not k.startswith("checksum/")},
                    **{k: pod_spec[k] for k in ("securityContext", "volumes", "terminationGracePeriodSeconds",
                                                "enableServiceLinks", "automountServiceAccountToken")
                       if k in pod_spec},
                    "initContainers": [c["name"] for c in pod_spec.get("initContainers", [])],
                },
                "container": container,
                "configMaps": {n: by_name[("ConfigMap", n)]["data"] for n in sorted(config_maps)},
                "secrets": secrets,
                "services": [{"name": d["metadata"]["name"], "clusterIP": d["spec"].get("clusterIP"),
                              "ports": [{k: p[k] for k in ("name", "port") if k in p} for p in d["spec"]["ports"]]}
                             for d in docs if d["kind"] == "Service"],
            }
            # The generated password of the umbrella's PostgreSQL, like the sentinels, is the user's.
            text = json.dumps(entry)
            for key, value in sentinels.items():
                text = text.replace(value, "{" + key + "}")
            entry = json.loads(text)
            for data in entry["secrets"].values():
                if "password" in data and data["password"] != "{db_password}":
                    data["password"] = "{db_password}"
            out["charts"][name] = entry
    FACTS.parent.mkdir(exist_ok=True)
    FACTS.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {FACTS}")


def main(argv):
    if len(argv) >= 2 and argv[1] == "--inside":
        return inside(argv[2], json.loads(argv[3]))
    if len(argv) >= 2 and argv[1] == "--record":
        helm = argv[argv.index("--helm") + 1] if "--helm" in argv else shutil.which("helm")
        return record(argv[2], helm)
    binary = os.path.abspath(argv[1] if len(argv) > 1 else ROOT / "target" / "debug" / "mesh-registry")
    return outside(binary)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
