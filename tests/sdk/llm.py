"""End-to-end run of `@mesh.llm` with the real MCP Mesh Python SDK (mcp-mesh==3.8.0) against
mesh-registry.

Starts the registry binary on a fresh PostgreSQL database, a mock OpenAI-compatible model
server in this process, and three SDK agents (agents/llm_*.py): a `@mesh.llm_provider` whose
model is the mock (the SDK's OpenAI client honours OPENAI_BASE_URL), a tool agent with four
tools, and a consumer whose `@mesh.llm` function asks for that provider and for the tools of
`e2e_math` that are not tagged `slow`, plus those of `e2e_text`.

The mock model first asks to call `e2e_add(2, 3)`, then answers with what the tool returned.
The run checks that the consumer's call is answered through the mock, that the tool call went
through the mesh to the tool agent, and that every request the mock received offered exactly
the filtered tools (`e2e_add`, `e2e_shout`: not the slow `e2e_multiply`, not `e2e_secret`).

Usage: python llm.py <registry-binary>
"""

import json
import os
import pathlib
import signal
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import e2e
from e2e import Registry, call_tool, free_port, log, psql, start, stop, wait_for

HERE = pathlib.Path(__file__).resolve().parent
TIME_LIMIT_SECONDS = 240
OFFERED = {"e2e_add", "e2e_shout"}


class MockModel(BaseHTTPRequestHandler):
    """`POST …/chat/completions`: a tool call first, then the tool's result as the answer."""

    requests: list[dict] = []
    lock = threading.Lock()

    def do_POST(self):  # noqa: N802 - the http.server hook
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.lock:
            self.requests.append(body)
        if not self.path.endswith("/chat/completions"):
            self.send_error(404)
            return
        results = [m.get("content") for m in body["messages"] if m.get("role") == "tool"]
        if results:
            message = {"role": "assistant", "content": f"The sum is {_text(results[-1])}"}
            finish = "stop"
        else:
            call = {"id": "call_e2e", "type": "function",
                    "function": {"name": "e2e_add", "arguments": json.dumps({"a": 2, "b": 3})}}
            message = {"role": "assistant", "content": None, "tool_calls": [call]}
            finish = "tool_calls"
        if body.get("stream"):
            self._stream(body["model"], message, finish)
        else:
            self._reply({
                "id": "chatcmpl-e2e", "object": "chat.completion", "created": int(time.time()),
                "model": body["model"],
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
            })

    def _reply(self, payload: dict) -> None:
        raw = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _stream(self, model: str, message: dict, finish: str) -> None:
        delta = {"role": "assistant"}
        if message.get("tool_calls"):
            delta["tool_calls"] = [dict(call, index=i) for i, call in enumerate(message["tool_calls"])]
        else:
            delta["content"] = message["content"]
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for choice in ({"index": 0, "delta": delta, "finish_reason": None},
                       {"index": 0, "delta": {}, "finish_reason": finish}):
            chunk = {"id": "chatcmpl-e2e", "object": "chat.completion.chunk",
                     "created": int(time.time()), "model": model, "choices": [choice]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")

    def log_message(self, *args):  # quiet
        pass


def _text(content) -> str:
    """A tool message's content, as a string or a list of text parts."""
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content)
    return str(content)


def healthy_agent(registry: Registry, name: str):
    # The reference lists no agents as `null`.
    agents = registry.http.get("/agents").json()["agents"] or []
    return next((a for a in agents if a["name"] == name and a["status"] == "healthy"), None)


def offered_tools(request: dict) -> set[str]:
    return {t["function"]["name"] for t in request.get("tools") or []}


def main() -> int:
    registry_binary = sys.argv[1]
    signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(TimeoutError("llm e2e time limit reached")))
    signal.alarm(TIME_LIMIT_SECONDS)
    e2e_dir = pathlib.Path(tempfile.mkdtemp(prefix="mesh-llm-e2e-"))
    database = f"mesh_registry_llm_e2e_{uuid.uuid4().hex[:12]}"
    psql("postgres", f"CREATE DATABASE {database}")
    model = ThreadingHTTPServer(("127.0.0.1", 0), MockModel)
    threading.Thread(target=model.serve_forever, daemon=True).start()
    ok = False
    try:
        port = free_port()
        registry_url = f"http://127.0.0.1:{port}"
        start(
            [registry_binary, "--host", "127.0.0.1", "--port", str(port)],
            dict(os.environ, DATABASE_URL=f"{e2e.PG_SERVER}/{database}?sslmode=disable"),
            e2e_dir / "registry.log",
        )
        registry = Registry(registry_url)
        wait_for("the registry", lambda: e2e._answers(registry_url + "/health"))
        env = dict(
            os.environ,
            MCP_MESH_REGISTRY_URL=registry_url,
            PYTHONUNBUFFERED="1",
            OPENAI_BASE_URL=f"http://127.0.0.1:{model.server_address[1]}/v1",
            OPENAI_API_KEY="e2e-not-a-key",
        )
        ports = {}
        for name in ("llm_provider", "llm_tools", "llm_consumer"):
            ports[name] = free_port()
            log(f"starting agent {name} on port {ports[name]}")
            start(
                [sys.executable, str(HERE / "agents" / f"{name}.py")],
                dict(env, MCP_MESH_HTTP_PORT=str(ports[name]), MCP_MESH_HTTP_HOST="127.0.0.1",
                     MCP_MESH_DEBOUNCE_DELAY="1"),
                e2e_dir / f"{name}.log",
            )
            time.sleep(1)  # stagger SDK start-ups
        for name in ("e2e-llm-provider", "e2e-llm-tools", "e2e-llm-consumer"):
            wait_for(f"{name} to register", lambda: healthy_agent(registry, name), 60)

        log("the consumer's LLM function answers through the mock model")
        # The consumer learns of the provider and the tools at its next full heartbeat.
        answer = wait_for("an answer", lambda: _ask(ports["llm_consumer"]), 60, interval=2)
        assert answer == "The sum is 5", answer

        with MockModel.lock:
            seen = list(MockModel.requests)
        assert len(seen) >= 2, seen
        assert all(r["model"] == "e2e-model" for r in seen), [r["model"] for r in seen]
        for request in seen:
            assert offered_tools(request) == OFFERED, offered_tools(request)
        tool_results = [m for r in seen for m in r["messages"] if m.get("role") == "tool"]
        assert tool_results and _text(tool_results[-1]["content"]).strip() == "5", tool_results

        consumer = healthy_agent(registry, "e2e-llm-consumer")
        rows = {(r["mcp_tool"], r["status"]) for r in consumer["llm_tool_resolutions"]}
        assert rows == {("e2e_add", "available"), ("e2e_shout", "available")}, rows
        providers = consumer["llm_provider_resolutions"]
        assert [p["mcp_tool"] for p in providers] == ["e2e_chat"], providers
        ok = True
        log(f"passed: {len(seen)} model requests, each offered exactly {sorted(OFFERED)}")
    except BaseException as failure:  # noqa: BLE001 - report anything, then clean up
        log(f"FAILED: {failure!r}")
        for path in sorted(e2e_dir.glob("*.log")):
            print(f"----- {path.name} (last 40 lines) -----")
            print("\n".join(path.read_text(errors="replace").splitlines()[-40:]))
    finally:
        signal.alarm(0)
        model.shutdown()
        for process in reversed(e2e.processes):
            stop(process, wait=10)
        psql("postgres", f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
    return 0 if ok else 1


def _ask(port: int):
    """The answer of `e2e_ask`, or None while the consumer is not wired yet."""
    try:
        return call_tool(port, "e2e_ask", {"question": "What is 2 + 3?"}, timeout=30)
    except AssertionError as not_yet:
        log(f"not answered yet: {str(not_yet)[:200]}")
        return None


if __name__ == "__main__":
    sys.stdout.flush()
    # os._exit avoids the SDK's occasional crash during interpreter finalization.
    os._exit(main())
