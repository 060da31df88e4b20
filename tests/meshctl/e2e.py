"""Drain -> wait -> resume against mesh-registry, driven by the real meshctl 3.7.1 and by
mesh-registry's own CLI, the way an operator upgrades a live registry; `meshctl list`
showing the agents registered with it; and `/trace/*` plus `meshctl trace` answering exactly as
the reference registry (its binary beside meshctl) does without its trace pipeline.

Usage: python3 e2e.py <mesh-registry binary> <meshctl binary>
Exits non-zero on the first failure; kills what it started and drops its database.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

PG_SERVER = os.environ.get("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432")


def log(message):
    print(f"[drain-e2e] {message}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(method, url, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def wait_until(what, check, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def expect(condition, message):
    if not condition:
        raise AssertionError(message)


def drive(cli_name, cli, public, admin):
    """One operator sequence with one CLI."""
    log(f"{cli_name}: a job is running")
    status, body = request("POST", f"{public}/jobs", {"capability": "e2e", "submitted_by": "e2e", "submitted_payload": {}})
    job = json.loads(body)["id"]
    status, body = request("POST", f"{public}/jobs/claim", {"capability": "e2e", "instance_id": "worker"})
    expect(json.loads(body)["claimed"][0]["id"] == job, body)

    log(f"{cli_name}: drain --wait")
    drain = subprocess.Popen(
        cli + ["registry", "drain", "--wait", "--poll-interval", "1", "--registry-url", admin],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    time.sleep(2.5)
    expect(drain.poll() is None, f"{cli_name} drain --wait returned while a job was running")
    request("POST", f"{public}/jobs", {"capability": "e2e", "submitted_by": "e2e", "submitted_payload": {}})
    status, body = request("POST", f"{public}/jobs/claim", {"capability": "e2e", "instance_id": "worker"})
    expect(json.loads(body) == {"claimed": []}, f"claims are paused while draining: {body}")

    log(f"{cli_name}: the job completes; drain must return promptly")
    status, body = request("POST", f"{public}/jobs/batch",
                           {"instance_id": "worker", "deltas": [{"id": job, "claim_epoch": 1, "status": "completed"}]})
    expect(json.loads(body)["accepted"] == 1, body)
    completed = time.monotonic()
    stdout, stderr = drain.communicate(timeout=10)
    expect(drain.returncode == 0, f"{cli_name} drain failed: {stdout} {stderr}")
    expect(time.monotonic() - completed < 3.0, "drain --wait took too long after the last job ended")
    expect("All jobs drained" in stdout, stdout)

    out = subprocess.run(cli + ["registry", "status", "--registry-url", admin], capture_output=True, text=True, check=True).stdout
    expect("DRAINING" in out, out)
    out = subprocess.run(cli + ["registry", "resume", "--registry-url", admin], capture_output=True, text=True, check=True).stdout
    expect("Registry resumed" in out, out)
    out = subprocess.run(cli + ["registry", "status", "--registry-url", admin], capture_output=True, text=True, check=True).stdout
    expect("active (normal dispatch)" in out, out)
    status, body = request("POST", f"{public}/jobs/claim", {"capability": "e2e", "instance_id": "worker"})
    expect(len(json.loads(body)["claimed"]) == 1, f"claims resume: {body}")
    request("POST", f"{public}/jobs/batch",
            {"instance_id": "worker", "deltas": [{"id": json.loads(body)["claimed"][0]["id"], "claim_epoch": 1, "status": "completed"}]})
    log(f"{cli_name}: passed")


def listed_by_meshctl(meshctl, public):
    """An agent registers; the real `meshctl list` shows it, healthy, with its capability."""
    registration = {
        "agent_id": "e2e-lister-1", "name": "e2e-lister", "agent_type": "mcp_agent",
        "http_host": "127.0.0.1", "http_port": 9, "namespace": "default",
        "tools": [{"function_name": "lookup", "capability": "e2e_lookup", "version": "1.0.0"}],
    }
    status, body = request("POST", f"{public}/heartbeat", registration)
    expect(status == 200, f"registration: {status} {body}")
    listed = subprocess.run([meshctl, "list", "--json", "--registry-url", public],
                            capture_output=True, text=True, timeout=30)
    expect(listed.returncode == 0, f"meshctl list: {listed.stderr}")
    expect("e2e-lister-1" in listed.stdout and "healthy" in listed.stdout,
           f"meshctl list shows the agent: {listed.stdout}")
    table = subprocess.run([meshctl, "list", "--registry-url", public],
                           capture_output=True, text=True, timeout=30)
    expect(table.returncode == 0 and "e2e-lister-1" in table.stdout, f"meshctl list table: {table.stdout}")
    log("meshctl list: passed")


def trace_like_the_reference(meshctl, public):
    """The reference registry, started beside ours without its trace pipeline, and ours answer
    /trace/* and `meshctl trace` the same (bodies, statuses, meshctl's output and exit code)."""
    reference_binary = os.path.join(os.path.dirname(meshctl), "mcp-mesh-registry")
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="trace-e2e-reference-")
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL" and not k.startswith("MCP_MESH_")}
    reference = subprocess.Popen([reference_binary], cwd=workdir, env=dict(env, HOST="127.0.0.1", PORT=str(port)),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    theirs = f"http://127.0.0.1:{port}"
    try:
        wait_until("the reference registry", lambda: _up(f"{theirs}/health"), timeout=30)
        trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
        for path in ["/trace/status", "/trace/stats", "/trace/info", f"/trace/{trace_id}"]:
            ours_status, ours_body = request("GET", f"{public}{path}")
            their_status, their_body = request("GET", f"{theirs}{path}")
            expect((ours_status, json.loads(ours_body)) == (their_status, json.loads(their_body)),
                   f"{path}: ours {ours_status} {ours_body}, reference {their_status} {their_body}")

        def meshctl_trace(url, *flags):
            done = subprocess.run([meshctl, "trace", trace_id, "--retries", "0", "--registry-url", url, *flags],
                                  capture_output=True, text=True, timeout=30)
            return done.returncode, (done.stdout + done.stderr).replace(url, "<registry>")

        for flags in [(), ("--json",)]:
            ours, reference_said = meshctl_trace(public, *flags), meshctl_trace(theirs, *flags)
            expect(ours == reference_said, f"meshctl trace {flags}: ours {ours}, reference {reference_said}")
        log(f"/trace/* and meshctl trace as the reference: passed ({ours[1].strip()[:80]!r})")
    finally:
        reference.send_signal(signal.SIGTERM)
        try:
            reference.wait(timeout=15)
        except subprocess.TimeoutExpired:
            reference.kill()
        subprocess.run(["rm", "-rf", workdir])


def main():
    registry_binary, meshctl = sys.argv[1], sys.argv[2]
    database = f"mesh_registry_drain_e2e_{uuid.uuid4().hex[:12]}"
    subprocess.run(["psql", f"{PG_SERVER}/postgres", "-qc", f"CREATE DATABASE {database}"], check=True, capture_output=True)
    port, admin_port = free_port(), free_port()
    log_file = tempfile.NamedTemporaryFile(prefix="drain-e2e-registry-", suffix=".log", delete=False)
    registry = subprocess.Popen(
        [registry_binary, "--host", "127.0.0.1", "--port", str(port)],
        env=dict(os.environ, DATABASE_URL=f"{PG_SERVER}/{database}?sslmode=disable", MCP_MESH_ADMIN_PORT=str(admin_port)),
        stdout=log_file, stderr=subprocess.STDOUT,
    )
    public, admin = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin_port}"
    ok = False
    try:
        wait_until("the registry", lambda: _up(f"{public}/health"))
        status, _ = request("GET", f"{public}/admin/drain")
        expect(status == 404, "admin routes are off the public port")
        listed_by_meshctl(meshctl, public)
        trace_like_the_reference(meshctl, public)
        drive("meshctl", [meshctl], public, admin)
        drive("mesh-registry", [registry_binary], public, admin)
        ok = True
    except Exception as failure:  # noqa: BLE001
        log(f"FAILED: {failure}")
        print(open(log_file.name).read()[-4000:])
    finally:
        registry.send_signal(signal.SIGTERM)
        try:
            registry.wait(timeout=15)
        except subprocess.TimeoutExpired:
            registry.kill()
        subprocess.run(["psql", f"{PG_SERVER}/postgres", "-qc", f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"], capture_output=True)
    log("all passed" if ok else "failed")
    return 0 if ok else 1


def _up(url):
    try:
        return request("GET", url)[0] == 200
    except OSError:
        return False


if __name__ == "__main__":
    sys.exit(main())
