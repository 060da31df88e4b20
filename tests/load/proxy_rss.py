"""The MCP proxy holds a bounded number of bytes per relay, whatever the agent sends and however
slowly the caller reads: an agent answers 256 MiB as fast as it can to 8 callers at once that
read nothing for a while; the registry's resident memory is sampled meanwhile, then each caller
reads its whole answer (every byte arrives).

Usage: python3 proxy_rss.py <mesh-registry binary>     (standard library only; not run by CI)
Prints the registry's RSS before, while the callers stall, and after.
"""

import http.server
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ANSWER_BYTES = 256 << 20
CHUNK = b"x" * (64 << 10)
CALLERS = 8


class Agent(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):  # noqa: N802 - the stdlib's name
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for _ in range(ANSWER_BYTES // len(CHUNK)):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(CHUNK), CHUNK))
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args):
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def caller(registry_port: int, agent_port: int) -> socket.socket:
    """Sends the call and reads nothing yet."""
    s = socket.create_connection(("127.0.0.1", registry_port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
    body = b"{}"
    s.sendall(b"POST /proxy/127.0.0.1:%d/mcp HTTP/1.1\r\nHost: r\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (agent_port, len(body), body))
    return s


def drain(s: socket.socket) -> int:
    received = 0
    while chunk := s.recv(1 << 20):
        received += len(chunk)
    s.close()
    return received


def main() -> int:
    binary = sys.argv[1]
    agent_port, registry_port = free_port(), free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", agent_port), Agent)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory() as work:
        env = dict(os.environ, HOST="127.0.0.1", PORT=str(registry_port), DATABASE_URL=f"sqlite://{work}/r.db",
                   RUST_LOG="warn")
        registry = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    start_new_session=True)
        try:
            url = f"http://127.0.0.1:{registry_port}"
            for _ in range(100):
                try:
                    urllib.request.urlopen(url + "/health", timeout=1)
                    break
                except OSError:
                    time.sleep(0.1)
            body = json.dumps({"agent_id": "big", "http_host": "127.0.0.1", "http_port": agent_port,
                               "tools": [{"function_name": "f", "capability": "big"}]}).encode()
            urllib.request.urlopen(urllib.request.Request(url + "/heartbeat", data=body, method="POST",
                                                          headers={"Content-Type": "application/json"}))
            before = rss_mib(registry.pid)
            callers = [caller(registry_port, agent_port) for _ in range(CALLERS)]
            peak = before
            for _ in range(50):
                time.sleep(0.1)
                peak = max(peak, rss_mib(registry.pid))
            received = [drain(s) for s in callers]
            after = rss_mib(registry.pid)
            complete = all(r > ANSWER_BYTES for r in received)
            print(f"registry RSS: before {before:.1f} MiB, peak while {CALLERS} callers stall on "
                  f"{ANSWER_BYTES >> 20} MiB answers {peak:.1f} MiB, after {after:.1f} MiB; "
                  f"every answer complete: {complete}")
            return 0 if complete else 1
        finally:
            os.killpg(registry.pid, signal.SIGTERM)
            registry.wait(timeout=10)
            server.shutdown()


if __name__ == "__main__":
    sys.exit(main())
