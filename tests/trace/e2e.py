"""The trace pipeline end to end, with real parts only where they exist here:

  * a redis-server of the run's own (never the machine's);
  * mesh-registry with MCP_MESH_DISTRIBUTED_TRACING_ENABLED, exporting over OTLP/HTTP to a small
    collector in this script (it counts the protobuf exports it takes);
  * a real Python SDK agent (mcp-mesh 3.8.0) with tracing on, called twice with one X-Trace-ID;
  * a fake Tempo in this script, answering /api/traces/{id} in Tempo's JSON from the entries the
    agent wrote (there is no Tempo here to store the collector's spans);
  * the real meshctl 3.7.1: `meshctl trace <id>` (JSON and tree) through GET /trace/{id}.

Checks: the agent's spans are exported and acknowledged (nothing pending in the group), the
registry's /trace/status shows it connected, and meshctl shows the trace: two `greet` spans of
`traced-agent`. Kills everything it started; gives up after a hard time limit.
Usage: python e2e.py <registry-binary> <meshctl>
"""

import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import redis

HERE = pathlib.Path(__file__).resolve().parent
TIME_LIMIT_SECONDS = 120
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"

processes: list[subprocess.Popen] = []


def log(message: str) -> None:
    print(f"[trace-e2e {time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args: list[str], env: dict, log_path: pathlib.Path) -> subprocess.Popen:
    out = open(log_path, "w")
    process = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    processes.append(process)
    return process


def wait_for(what: str, check, limit: float = 60.0):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception:
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def serve(handler) -> tuple[ThreadingHTTPServer, int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


exports: list[int] = []


class Collector(BaseHTTPRequestHandler):
    """OTLP/HTTP: takes every export (protobuf), remembers its size."""

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path == "/v1/traces":
            exports.append(len(body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def tempo_handler(stream: redis.Redis):
    class Tempo(BaseHTTPRequestHandler):
        """Tempo's /api/traces/{id}, from the entries the agent wrote for that trace."""

        def do_GET(self):
            trace_id = self.path.rsplit("/", 1)[-1]
            entries = [
                {k.decode(): v.decode() for k, v in fields.items()}
                for _, fields in stream.xrange("mesh:trace")
            ]
            entries = [e for e in entries if e.get("trace_id") == trace_id]
            if not self.path.startswith("/api/traces/") or not entries:
                self.send_response(404)
                self.end_headers()
                return
            batches = {}
            for e in entries:
                start = int(float(e["start_time"]) * 1e9)
                end = start + int(float(e.get("duration_ms", "0")) * 1e6)
                parent = e.get("parent_span", "")
                span = {
                    "traceId": trace_id,
                    "spanId": e["span_id"],
                    "name": e["function_name"],
                    "kind": "SPAN_KIND_SERVER",
                    "startTimeUnixNano": str(start),
                    "endTimeUnixNano": str(end),
                    "attributes": [
                        {"key": "mcp.agent.id", "value": {"stringValue": e["agent_id"]}},
                        {"key": "mcp.runtime", "value": {"stringValue": e["runtime"]}},
                    ],
                    "status": {"code": "STATUS_CODE_OK" if e.get("success") == "True" else "STATUS_CODE_ERROR"},
                }
                if parent not in ("", "null", "None"):
                    span["parentSpanId"] = parent
                batches.setdefault(e["agent_name"], []).append(span)
            body = json.dumps({
                "batches": [
                    {
                        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": agent}}]},
                        "scopeSpans": [{"scope": {"name": f"mcp-mesh/{agent}"}, "spans": spans}],
                    }
                    for agent, spans in batches.items()
                ]
            }).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    return Tempo


def call_greet(port: int) -> None:
    response = httpx.post(
        f"http://127.0.0.1:{port}/mcp",
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "greet", "arguments": {"name": "x"}}},
        headers={"Accept": "application/json, text/event-stream", "X-Trace-ID": TRACE_ID},
        timeout=30,
    )
    response.raise_for_status()
    assert "hello x" in response.text, response.text


def main(registry_binary: str, meshctl: str) -> None:
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="trace-e2e-"))
    try:
        redis_port = free_port()
        start(
            ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(workdir)],
            dict(os.environ),
            workdir / "redis.log",
        )
        stream = redis.Redis(host="127.0.0.1", port=redis_port)
        wait_for("redis-server", stream.ping, 20)
        _, collector_port = serve(Collector)
        _, tempo_port = serve(tempo_handler(stream))

        port = free_port()
        registry_url = f"http://127.0.0.1:{port}"
        log("starting mesh-registry with the trace pipeline")
        start(
            [registry_binary, "--host", "127.0.0.1", "--port", str(port)],
            dict(
                os.environ,
                DATABASE_URL=str(workdir / "registry.db"),
                MCP_MESH_DISTRIBUTED_TRACING_ENABLED="true",
                REDIS_URL=f"redis://127.0.0.1:{redis_port}",
                TELEMETRY_ENDPOINT=f"127.0.0.1:{collector_port}",
                TELEMETRY_PROTOCOL="http",
                TEMPO_URL=f"http://127.0.0.1:{tempo_port}",
            ),
            workdir / "registry.log",
        )
        http = httpx.Client(base_url=registry_url, timeout=10)
        wait_for("the registry", lambda: http.get("/health").status_code == 200)
        wait_for("the pipeline reading", lambda: http.get("/trace/status").json()["consumer"]["consuming"])

        agent_port = free_port()
        log("starting a traced SDK agent")
        start(
            [sys.executable, str(HERE / "agent.py")],
            dict(
                os.environ,
                MCP_MESH_REGISTRY_URL=registry_url,
                MCP_MESH_HTTP_PORT=str(agent_port),
                MCP_MESH_HTTP_HOST="127.0.0.1",
                MCP_MESH_DISTRIBUTED_TRACING_ENABLED="true",
                REDIS_URL=f"redis://127.0.0.1:{redis_port}",
                PYTHONUNBUFFERED="1",
            ),
            workdir / "agent.log",
        )
        wait_for("the agent's tool", lambda: call_greet(agent_port) is None, 60)
        call_greet(agent_port)
        log("two calls made; waiting for the export")

        def group():
            return next(g for g in stream.xinfo_groups("mesh:trace") if g["name"] == b"mcp-mesh-registry-processors")

        wait_for("the spans exported", lambda: len(exports) >= 1)
        wait_for("every entry acknowledged", lambda: group()["pending"] == 0 and stream.xlen("mesh:trace") >= 2)
        status = http.get("/trace/status").json()
        assert status["consumer"]["connection_state"] == "connected", status

        log("meshctl trace --json")
        done = subprocess.run(
            [meshctl, "trace", TRACE_ID, "--registry-url", registry_url, "--json", "--retries", "3"],
            capture_output=True, text=True, timeout=60,
        )
        assert done.returncode == 0, done
        trace = json.loads(done.stdout)
        assert trace["TraceID"] == TRACE_ID, trace
        greets = [s for s in trace["Spans"] if s["Operation"] == "greet"]
        assert len(greets) >= 2, trace
        assert trace["Agents"] == ["traced-agent"], trace
        assert trace["Success"] is True, trace

        log("meshctl trace (tree)")
        done = subprocess.run(
            [meshctl, "trace", TRACE_ID, "--registry-url", registry_url, "--retries", "0"],
            capture_output=True, text=True, timeout=60,
        )
        assert done.returncode == 0 and "greet" in done.stdout and "traced-agent" in done.stdout, done
        log("all passed")
    except BaseException:
        for path in sorted(workdir.glob("*.log")):
            print(f"----- {path.name} (last 30 lines) -----")
            print("\n".join(path.read_text(errors="replace").splitlines()[-30:]))
        raise
    finally:
        for process in processes:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(TimeoutError("time limit")))
    signal.alarm(TIME_LIMIT_SECONDS)
    main(sys.argv[1], sys.argv[2])
