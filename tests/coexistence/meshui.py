"""The Go registry's dashboard, the real `meshui` 3.7.1, pointed at mesh-registry's database, as
the `mcp-mesh-core` chart deploys it (the same DATABASE_URL as the registry): on PostgreSQL, and
in the working directory of the embedded store. meshui migrates its own model at start with
column and index dropping on; afterwards every table, column, index, function and row of ours
must be as it was, and the registry must keep serving. Also prints which meshui panels answer.

Usage: python3 meshui.py <mesh-registry binary> <meshui binary>
Exits non-zero on the first failure; stops what it started and drops its database.
"""

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid

PG_SERVER = os.environ.get("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432")
MESHUI_SECONDS = 8


def log(message):
    print(f"[coexistence] {message}", flush=True)


def expect(condition, message):
    if not condition:
        raise AssertionError(message)


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
    except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
        return 0, str(error)


def wait_for(url, timeout=30.0):
    deadline = time.monotonic() + timeout
    while request("GET", url)[0] != 200:
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} did not come up")
        time.sleep(0.1)


def psql(database, statement):
    subprocess.run(["psql", f"{PG_SERVER}/{database}", "-v", "ON_ERROR_STOP=1", "-qc", statement],
                   check=True, capture_output=True)


def stop(process):
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def start_registry(binary, directory, database_url):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "MCP_MESH_DB_SCHEMA", "RUST_LOG")}
    # Nothing of ours may change by itself while the dashboard runs: no agent turns unhealthy.
    env.update({"HOST": "127.0.0.1", "PORT": str(port), "DEFAULT_TIMEOUT_THRESHOLD": "3600"})
    if database_url:
        env["DATABASE_URL"] = database_url
    process = subprocess.Popen([binary], cwd=directory, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    wait_for(f"{base}/health")
    return process, base


def job_traffic(base):
    """An agent, a completed job with events, a claimed job, a queued job; their ids."""
    status, body = request("POST", f"{base}/heartbeat", {
        "agent_id": "coexist-1", "name": "coexist", "agent_type": "mcp_agent",
        "http_host": "127.0.0.1", "http_port": 9, "namespace": "default",
        "tools": [{"function_name": "work", "capability": "coexist", "version": "1.0.0"}],
    })
    expect(status == 200, f"heartbeat: {status} {body}")
    ids = []
    for n in range(3):
        status, body = request("POST", f"{base}/jobs", {"capability": "coexist", "submitted_by": "ui-test",
                                                         "submitted_payload": {"n": n}})
        expect(status == 201, f"submit: {status} {body}")
        ids.append(json.loads(body)["id"])
    for worker in ("w1", "w2"):
        status, body = request("POST", f"{base}/jobs/claim", {"capability": "coexist", "instance_id": worker})
        expect(status == 200 and json.loads(body)["claimed"], f"claim: {body}")
    done = ids[0]
    status, body = request("POST", f"{base}/jobs/{done}/events", {"type": "note", "payload": {"step": 1}})
    expect(status == 200, f"event: {status} {body}")
    status, body = request("POST", f"{base}/jobs/batch", {"instance_id": "w1", "deltas": [
        {"id": done, "claim_epoch": 1, "status": "completed", "result": {"ok": True}}]})
    expect(json.loads(body)["accepted"] == 1, body)
    return ids


def still_serving(base, ids):
    """The queued job is claimed and finished; the finished one reads back with its events."""
    status, body = request("GET", f"{base}/jobs/{ids[0]}")
    expect(status == 200 and json.loads(body)["status"] == "completed", f"the completed job: {body}")
    status, body = request("GET", f"{base}/jobs/{ids[0]}/events")
    expect(status == 200 and json.loads(body)["events"], f"its events: {body}")
    status, body = request("POST", f"{base}/jobs/claim", {"capability": "coexist", "instance_id": "w3"})
    claimed = json.loads(body)["claimed"]
    expect(claimed and claimed[0]["id"] == ids[2], f"the queued job is claimable: {body}")
    status, body = request("POST", f"{base}/jobs/batch", {"instance_id": "w3", "deltas": [
        {"id": ids[2], "claim_epoch": claimed[0]["claim_epoch"], "status": "completed"}]})
    expect(json.loads(body)["accepted"] == 1, body)


# meshui's panels and the API each one reads (its server's routes).
PANELS = [
    ("registry health", "/api/health"),
    ("agents", "/api/agents"),
    ("jobs list", "/api/jobs"),
    ("job detail", "/api/jobs/{job}"),
    ("job events", "/api/jobs/{job}/events"),
    ("schema browser", "/api/schemas"),
    ("event history", "/api/events/history"),
]


def run_meshui(meshui, directory, registry_base, database_url, job):
    """meshui for a few seconds on the registry's database; what each panel answered."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    # Tracing off: it would consume the shared Redis stream other tests use.
    env.update({"MCP_MESH_UI_PORT": str(port), "MCP_MESH_REGISTRY_URL": registry_base,
                "MCP_MESH_DISTRIBUTED_TRACING_ENABLED": "false"})
    if database_url:
        env["DATABASE_URL"] = database_url
    output = tempfile.TemporaryFile()
    process = subprocess.Popen([meshui], cwd=directory, env=env, stdout=output, stderr=subprocess.STDOUT)
    started = time.monotonic()
    answers = {}
    try:
        wait_for(f"http://127.0.0.1:{port}/api/ui-health")
        for name, path in PANELS:
            status, body = request("GET", f"http://127.0.0.1:{port}{path.format(job=job)}")
            answers[name] = (status, body)
        time.sleep(max(0.0, MESHUI_SECONDS - (time.monotonic() - started)))
        expect(process.poll() is None, "meshui is still running")
    finally:
        stop(process)
        output.seek(0)
        meshui_log = output.read().decode(errors="replace")
    expect(answers, f"meshui answered nothing: {meshui_log}")
    return answers


def report(backend, answers):
    for name, (status, body) in answers.items():
        log(f"{backend}: meshui {name}: {status} {body[:100]!r}")


def check_panels(answers, ids):
    """The panels meshui fills through the registry's API show our data."""
    expect(answers["registry health"][0] == 200, answers["registry health"])
    expect("coexist-1" in answers["agents"][1], f"agents panel: {answers['agents']}")
    expect(ids[0] in answers["jobs list"][1], f"jobs panel: {answers['jobs list']}")
    expect(answers["job detail"][0] == 200 and ids[0] in answers["job detail"][1], answers["job detail"])
    expect(answers["job events"][0] == 200 and "note" in answers["job events"][1], answers["job events"])


def pg_snapshot(database):
    """Every object and row of ours: a dump of our schema, without the random key newer
    pg_dump versions print."""
    dump = subprocess.run(["pg_dump", "--schema=mesh_registry", "--dbname", f"{PG_SERVER}/{database}"],
                          check=True, capture_output=True, text=True).stdout
    return "\n".join(line for line in dump.splitlines() if not line.startswith(("\\restrict", "\\unrestrict")))


def sqlite_snapshot(path):
    """Every table, column, index and row of our file, read beside the running registry."""
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return "\n".join(connection.iterdump())
    finally:
        connection.close()


def on_postgres(binary, meshui):
    database = f"mesh_registry_coexist_{uuid.uuid4().hex[:12]}"
    psql("postgres", f"CREATE DATABASE {database}")
    directory = tempfile.mkdtemp(prefix="mesh-coexist-pg-")
    url = f"{PG_SERVER}/{database}?sslmode=disable"
    registry = None
    try:
        registry, base = start_registry(binary, directory, url)
        ids = job_traffic(base)
        before = pg_snapshot(database)
        expect("CREATE TABLE mesh_registry.jobs" in before and ids[0] in before, "the snapshot holds our jobs")
        answers = run_meshui(meshui, directory, base, url, ids[0])
        report("PostgreSQL", answers)
        check_panels(answers, ids)
        tables = subprocess.run(["psql", f"{PG_SERVER}/{database}", "-Atc",
                                 "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"],
                                check=True, capture_output=True, text=True).stdout.strip()
        expect(int(tables) > 0, "meshui made its own tables in public")
        expect(pg_snapshot(database) == before, "every object and row of ours is as it was")
        still_serving(base, ids)
        stop(registry)
        registry, base = start_registry(binary, directory, url)
        still_serving_after_restart(base, ids)
        log("PostgreSQL: passed")
    finally:
        if registry:
            stop(registry)
        psql("postgres", f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        shutil.rmtree(directory, ignore_errors=True)


def still_serving_after_restart(base, ids):
    status, body = request("GET", f"{base}/jobs/{ids[2]}")
    expect(status == 200 and json.loads(body)["status"] == "completed", f"after a restart: {body}")


def on_the_embedded_file(binary, meshui):
    directory = tempfile.mkdtemp(prefix="mesh-coexist-file-")
    registry = None
    try:
        registry, base = start_registry(binary, directory, None)
        ids = job_traffic(base)
        ours = os.path.join(directory, "mesh_registry.db")
        before = sqlite_snapshot(ours)
        expect("CREATE TABLE" in before and ids[0] in before, "the snapshot holds our jobs")
        answers = run_meshui(meshui, directory, base, None, ids[0])
        report("embedded", answers)
        check_panels(answers, ids)
        expect(os.path.exists(os.path.join(directory, "mcp_mesh_registry.db")), "meshui made its own file")
        expect(sqlite_snapshot(ours) == before, "every table, column, index and row of ours is as it was")
        still_serving(base, ids)
        stop(registry)
        registry, base = start_registry(binary, directory, None)
        still_serving_after_restart(base, ids)
        log("embedded: passed")
    finally:
        if registry:
            stop(registry)
        shutil.rmtree(directory, ignore_errors=True)


def main():
    binary, meshui = os.path.abspath(sys.argv[1]), sys.argv[2]
    on_postgres(binary, meshui)
    on_the_embedded_file(binary, meshui)
    log("passed")


if __name__ == "__main__":
    main()
