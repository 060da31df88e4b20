#!/usr/bin/env python3
"""The chart's admin listener and preStop hook on the real binary: for every render that
tests/helm/run.sh left in target/helm/, play the kubelet for the registry container and check
that its preStop hook reaches the admin port that its environment makes the registry bind.

Renders that give the container the same admin settings and the same hook are run once. For
each, in a network namespace of its own whose loopback device also holds the pod's IP:
  * the container's environment as the kubelet builds it: env in order with $(VAR) expansion,
    status.podIP from the downward API; DATABASE_URL (a Secret) becomes an embedded database
    file, as the admin port does not depend on the backend;
  * `mesh-registry serve` with that environment, ready on GET /health at the pod's IP;
  * which of 127.0.0.1 and the pod's IP reach the admin port: both with the registry's default
    bind, 127.0.0.1 alone with MCP_MESH_ADMIN_HOST=127.0.0.1, the pod's IP alone when the chart
    takes MCP_MESH_ADMIN_HOST from status.podIP;
  * the preStop command as the kubelet runs it: no $(VAR) expansion, the container's
    environment inherited; it must exit 0 within the grace period and leave the replica
    draining;
  * SIGTERM, exit 0.

Usage: tests/helm/run.sh && tests/helm/admin_reach.py [BINARY]   (default target/debug/mesh-registry)
Needs: unshare, ip (as root, or in a user namespace) and PyYAML.
"""

import http.client
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import time

import yaml

sys.dont_write_bytecode = True  # importing dropin leaves no __pycache__ in the tree
import dropin  # noqa: E402  (its kubelet $(VAR) expansion)

HERE = pathlib.Path(__file__).resolve().parent
RENDERS = HERE.parents[1] / "target" / "helm"
POD_IP = "10.244.3.7"
POD_NAME = "mesh-mesh-registry-0"
LOOPBACK = "127.0.0.1"
# The container's own settings that decide where /admin/* listens and how the hook finds it.
ADMIN_ENV = ("HOST", "PORT", "MCP_MESH_ADMIN_PORT", "MCP_MESH_ADMIN_HOST", "MCP_MESH_REGISTRY_URL")


def log(message):
    print(f"[admin-reach {time.strftime('%H:%M:%S')}] {message}", flush=True)


def registry_container(render):
    with open(render) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    for doc in docs:
        if doc.get("kind") in ("Deployment", "StatefulSet"):
            pod = doc["spec"]["template"]["spec"]
            container = next(c for c in pod["containers"] if c["name"] == "mesh-registry")
            return container, pod["terminationGracePeriodSeconds"]
    raise SystemExit(f"{render}: no registry workload")


def distinct_cases():
    """One case per distinct (admin environment, preStop hook), named after the first render."""
    renders = sorted(RENDERS.glob("*.yaml"))
    if not renders:
        raise SystemExit(f"no renders in {RENDERS}: run tests/helm/run.sh first")
    cases, seen = {}, set()
    for render in renders:
        container, grace = registry_container(render)
        admin_env = [e for e in container["env"] if e["name"] in ADMIN_ENV]
        hook = container["lifecycle"]["preStop"]["exec"]["command"]
        key = json.dumps([admin_env, hook], sort_keys=True)
        if key not in seen:
            seen.add(key)
            cases[render.stem] = {"container": container, "grace": grace}
    return cases


def container_env(container, database):
    fields = {"status.podIP": POD_IP, "metadata.name": POD_NAME}
    env = {}
    for entry in container["env"]:
        source = entry.get("valueFrom", {})
        if "value" in entry:
            env[entry["name"]] = dropin.expand(entry["value"], env)
        elif "fieldRef" in source:
            env[entry["name"]] = fields[source["fieldRef"]["fieldPath"]]
        elif entry["name"] == "DATABASE_URL":
            env[entry["name"]] = database
        else:
            raise SystemExit(f"env {entry['name']}: {source} is not played here")
    return env


def reaches(address, port):
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex((address, port)) == 0


def get_json(address, port, path):
    conn = http.client.HTTPConnection(address, port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        conn.close()


def run_case(name, case, binary):
    container, grace = case["container"], case["grace"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    admin_port = ports.get("admin", ports["http"])
    with tempfile.TemporaryDirectory(prefix="admin-reach-") as workdir:
        env = container_env(container, f"sqlite://{workdir}/registry.db")
        env.update(PATH=f"{os.path.dirname(binary)}:/usr/bin:/bin", HOSTNAME=POD_NAME, HOME="/", TMPDIR=workdir)
        process = subprocess.Popen([binary, *container["args"]], env=env, cwd=workdir,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            # The kubelet probes the pod's IP.
            deadline = time.monotonic() + 60
            while True:
                try:
                    if get_json(POD_IP, ports["http"], "/health")[0] == 200:
                        break
                except OSError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"{name}: not healthy (exit {process.poll()}):\n"
                                         + process.stdout.read().decode(errors="replace"))
                time.sleep(0.1)

            bound = env.get("MCP_MESH_ADMIN_HOST", "0.0.0.0")
            want = {"127.0.0.1": [LOOPBACK], POD_IP: [POD_IP]}.get(bound, [LOOPBACK, POD_IP])
            got = [a for a in (LOOPBACK, POD_IP) if reaches(a, admin_port)]
            assert got == want, f"{name}: admin port {admin_port} bound to {bound} is reached from {got}, want {want}"

            hook = container["lifecycle"]["preStop"]["exec"]["command"]
            started = time.monotonic()
            done = subprocess.run(hook, env=env, cwd="/", capture_output=True, text=True, timeout=grace)
            took = time.monotonic() - started
            assert done.returncode == 0, f"{name}: preStop {hook} exit {done.returncode}: {done.stdout}{done.stderr}"
            status, drain = get_json(want[0], admin_port, "/admin/drain")
            assert status == 200 and drain["draining"] is True, f"{name}: after preStop, /admin/drain is {status} {drain}"

            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=grace)
            assert code == 0, f"{name}: exit {code} after SIGTERM"
            if "--registry-url" in hook:
                via = f"--registry-url {hook[hook.index('--registry-url') + 1]}"
            else:
                via = f"MCP_MESH_REGISTRY_URL={env.get('MCP_MESH_REGISTRY_URL')}"
            log(f"{name}: admin port {admin_port} on {bound} reached from {', '.join(got)}; preStop ({via}) "
                f"exit 0 in {took:.2f} s, replica draining; SIGTERM → exit 0")
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def inside(binary, cases):
    # The pod's IP on the loopback device (no dummy or veth module needed): still an address of
    # its own, which a listener on 127.0.0.1 does not serve and vice versa.
    for command in (["ip", "link", "set", "lo", "up"], ["ip", "addr", "add", f"{POD_IP}/32", "dev", "lo"]):
        subprocess.run(command, check=True)
    for name, case in cases.items():
        run_case(name, case, binary)
    return 0


def main(argv):
    if len(argv) >= 2 and argv[1] == "--inside":
        return inside(argv[2], json.loads(argv[3]))
    binary = os.path.abspath(argv[1] if len(argv) > 1 else HERE.parents[1] / "target" / "debug" / "mesh-registry")
    cases = distinct_cases()
    namespaces = ["unshare", "--net"]
    if os.geteuid() != 0:
        namespaces[1:1] = ["--user", "--map-root-user"]
    started = time.monotonic()
    code = subprocess.run(namespaces + [sys.executable, __file__, "--inside", binary, json.dumps(cases)]).returncode
    if code == 0:
        log(f"{len(cases)} distinct admin settings ({', '.join(cases)}): every preStop hook reaches its "
            f"admin port, in {time.monotonic() - started:.1f} s")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
