"""End-to-end run of the real MCP Mesh Python SDK (mcp-mesh==3.8.0) against mesh-registry.

Starts the registry binary on a fresh PostgreSQL database, starts small SDK agents
(agents/producer.py, agents/consumer.py), and checks five flows:

  1. a consumer agent submits a job through its injected MeshJob and waits for the result;
  2. an input_required job is answered by an event and completes;
  3. a cancel of a running job reaches the producer's handler;
  4. an agent that stops (SIGTERM: it deregisters and stops its handler) keeps its job until
     the lease lapses, then another agent finishes it;
  5. meshctl-visible agent listing shows the agents healthy.

Exits non-zero on the first failure, kills everything it started, drops its database, and gives
up after a hard time limit. Usage: python e2e.py <registry-binary>
"""

import asyncio
import json
import logging
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import httpx

HERE = pathlib.Path(__file__).resolve().parent
PG_SERVER = os.environ.get("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432")
TIME_LIMIT_SECONDS = 300

processes: list[subprocess.Popen] = []


def log(message: str) -> None:
    print(f"[e2e {time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def psql(database: str, statement: str) -> None:
    subprocess.run(
        ["psql", f"{PG_SERVER}/{database}", "-v", "ON_ERROR_STOP=1", "-qc", statement],
        check=True,
        capture_output=True,
    )


def start(args: list[str], env: dict, log_path: pathlib.Path) -> subprocess.Popen:
    out = open(log_path, "w")
    process = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    processes.append(process)
    return process


def stop(process: subprocess.Popen, sig=signal.SIGTERM, wait: float = 15.0) -> None:
    if process.poll() is None:
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_for(what: str, check, timeout: float = 30.0, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Registry:
    def __init__(self, url: str):
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=10)

    def job(self, job_id: str) -> dict:
        response = self.http.get(f"/jobs/{job_id}")
        response.raise_for_status()
        return response.json()

    def submit(self, capability: str, payload: dict, **fields) -> str:
        response = self.http.post(
            "/jobs",
            json={"capability": capability, "submitted_by": "e2e-driver", "submitted_payload": payload, **fields},
        )
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def agents(self) -> list[dict]:
        response = self.http.get("/agents")
        response.raise_for_status()
        return response.json()["agents"]

    def healthy_agent(self, name: str):
        return next((a for a in self.agents() if a["name"] == name and a["status"] == "healthy"), None)


def start_agent(script: str, env: dict, e2e_dir: pathlib.Path, name: str, role: str = "") -> subprocess.Popen:
    port = free_port()
    agent_env = dict(
        env,
        E2E_ROLE=role,
        MCP_MESH_HTTP_PORT=str(port),
        MCP_MESH_HTTP_HOST="127.0.0.1",
        MCP_MESH_DEBOUNCE_DELAY="3",
    )
    log(f"starting agent {name} on port {port}")
    return start([sys.executable, str(HERE / "agents" / script)], agent_env, e2e_dir / f"{name}.log")


def call_tool(port: int, tool: str, arguments: dict, timeout: float = 90.0) -> dict:
    """A JSON-RPC tools/call straight to an agent's MCP endpoint (what meshctl call sends)."""
    response = httpx.post(
        f"http://127.0.0.1:{port}/mcp",
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": arguments}},
        headers={"Accept": "application/json, text/event-stream"},
        timeout=timeout,
    )
    response.raise_for_status()
    body = response.text
    if "text/event-stream" in response.headers.get("content-type", ""):
        body = next(line[5:] for line in body.splitlines() if line.startswith("data:"))
    message = json.loads(body)
    assert "error" not in message, message
    result = message["result"]
    assert not result.get("isError"), result
    if result.get("structuredContent") is not None:
        content = result["structuredContent"]
        return content.get("result", content)
    return json.loads(result["content"][0]["text"])


def flow_submit_and_wait(registry: Registry, consumer_port: int) -> None:
    log("flow 1: consumer submits through its MeshJob and waits")
    result = call_tool(consumer_port, "e2e_commission", {"sections": ["intro", "body", "end"]})
    assert result == {"report": ["content of intro", "content of body", "content of end"]}, result
    jobs = registry.http.get("/jobs", params={"capability": "e2e_report"}).json()["jobs"]
    assert len(jobs) == 1, jobs
    job = jobs[0]
    assert job["status"] == "completed" and job["progress"] == 1 and job["attempt_count"] == 1, job
    assert job["submitted_by"].startswith("e2e-consumer"), job


def sdk_jobs():
    """The SDK's job client, with its per-request HTTP logging turned down."""
    import mesh.jobs

    logging.getLogger("httpx").setLevel(logging.WARNING)
    return mesh.jobs


async def flow_input_required(registry: Registry) -> None:
    jobs = sdk_jobs()

    log("flow 2: input_required answered by an event")
    job_id = registry.submit("e2e_approval", {"amount": 42})
    job = await asyncio.to_thread(
        wait_for, "the job to ask for input", lambda: (j := registry.job(job_id))["status"] == "input_required" and j
    )
    assert job["progress_message"] == "Approve $42?", job
    await jobs.post_event(job_id, "answer", {"approved": True})
    result = await jobs.wait(job_id, timeout_secs=60)
    assert result == {"approved": True, "amount": 42}, result


async def flow_cancel(registry: Registry, e2e_dir: pathlib.Path) -> None:
    jobs = sdk_jobs()

    log("flow 3: a cancel reaches the running handler")
    job_id = registry.submit("e2e_endless", {})
    await asyncio.to_thread(wait_for, "the handler to start", lambda: (e2e_dir / f"endless-started-{job_id}").exists())
    await jobs.cancel(job_id, "e2e cancel")
    await asyncio.to_thread(
        wait_for, "the cancel to reach the handler", lambda: (e2e_dir / f"endless-cancelled-{job_id}").exists(), 15
    )
    job = registry.job(job_id)
    assert job["status"] == "cancelled" and job["error"] == "cancelled: e2e cancel", job


def flow_agent_stops(registry: Registry, env: dict, e2e_dir: pathlib.Path) -> None:
    log("flow 4: an agent stops mid-job; another finishes the job")
    first = start_agent("producer.py", env, e2e_dir, "handoff-a", role="handoff-a")
    # A 3-second lease window: handoff-a renews it every 0.5 s until it stops.
    job_id = registry.submit("e2e_handoff", {}, max_duration=3)
    wait_for("handoff-a to start the job", lambda: (e2e_dir / f"handoff-a-started-{job_id}").exists(), 60)
    owner = registry.job(job_id)["owner_instance_id"]
    assert owner.startswith("e2e-producer-handoff-a"), owner
    stop(first)  # SIGTERM: the SDK deregisters with DELETE /agents/{id} and stops the handler
    job = wait_for("the lapsed lease", lambda: (j := registry.job(job_id))["owner_instance_id"] is None and j, 10)
    assert job["status"] == "working", job
    start_agent("producer.py", env, e2e_dir, "handoff-b", role="handoff-b")
    job = wait_for("handoff-b to finish the job", lambda: (j := registry.job(job_id))["status"] == "completed" and j, 60)
    assert job["result"] == {"by": "b"} and job["attempt_count"] == 2 and job["claim_epoch"] == 2, job
    assert job["owner_instance_id"].startswith("e2e-producer-handoff-b"), job
    listed = {a["name"]: a["status"] for a in registry.agents()}
    assert listed.get("e2e-producer-handoff-a") == "unhealthy", listed


def main() -> int:
    registry_binary = sys.argv[1]
    signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(TimeoutError("e2e time limit reached")))
    signal.alarm(TIME_LIMIT_SECONDS)
    e2e_dir = pathlib.Path(tempfile.mkdtemp(prefix="mesh-e2e-"))
    database = f"mesh_registry_e2e_{uuid.uuid4().hex[:12]}"
    psql("postgres", f"CREATE DATABASE {database}")
    ok = False
    try:
        port = free_port()
        registry_url = f"http://127.0.0.1:{port}"
        start(
            [registry_binary, "--host", "127.0.0.1", "--port", str(port)],
            dict(os.environ, DATABASE_URL=f"{PG_SERVER}/{database}?sslmode=disable", MCP_MESH_LOG_LEVEL="DEBUG"),
            e2e_dir / "registry.log",
        )
        registry = Registry(registry_url)
        wait_for("the registry", lambda: _answers(registry_url + "/health"))
        env = dict(os.environ, MCP_MESH_REGISTRY_URL=registry_url, E2E_DIR=str(e2e_dir), PYTHONUNBUFFERED="1")
        os.environ["MCP_MESH_REGISTRY_URL"] = registry_url

        start_agent("producer.py", env, e2e_dir, "producer", role="main")
        time.sleep(1)  # stagger SDK start-ups (real-clients.md §0)
        consumer_port = free_port()
        log(f"starting agent consumer on port {consumer_port}")
        start(
            [sys.executable, str(HERE / "agents" / "consumer.py")],
            dict(env, MCP_MESH_HTTP_PORT=str(consumer_port), MCP_MESH_HTTP_HOST="127.0.0.1", MCP_MESH_DEBOUNCE_DELAY="3"),
            e2e_dir / "consumer.log",
        )
        wait_for("the producer to register", lambda: registry.healthy_agent("e2e-producer-main"), 60)
        wait_for("the consumer to register", lambda: registry.healthy_agent("e2e-consumer"), 60)

        flow_submit_and_wait(registry, consumer_port)
        asyncio.run(flow_input_required(registry))
        asyncio.run(flow_cancel(registry, e2e_dir))
        flow_agent_stops(registry, env, e2e_dir)
        ok = True
        log("all flows passed")
    except BaseException as failure:  # noqa: BLE001 - report anything, then clean up
        log(f"FAILED: {failure!r}")
        for path in sorted(e2e_dir.glob("*.log")):
            print(f"----- {path.name} (last 40 lines) -----")
            print("\n".join(path.read_text(errors="replace").splitlines()[-40:]))
    finally:
        signal.alarm(0)
        for process in reversed(processes):
            stop(process, wait=10)
        psql("postgres", f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
    return 0 if ok else 1


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    sys.stdout.flush()
    # os._exit avoids the SDK's occasional crash during interpreter finalization (real-clients.md §0).
    os._exit(main())
