"""How much memory four parallel `GET /jobs?limit=200` take over jobs with 900 KB payloads.

Starts the registry binary on a fresh PostgreSQL database, submits 200 jobs of 900 KB each,
then runs four clients that list every page at once, and prints the registry's RSS before and
its peak (VmHWM) after. Usage: python3 big_pages_rss.py <registry-binary> [--max-page-bytes N]
"""

import argparse
import concurrent.futures
import json
import os
import socket
import subprocess
import time
import urllib.request
import uuid

PG = os.environ.get("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(url, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


def memory(pid, field):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field):
                return int(line.split()[1]) // 1024
    return 0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("binary")
    parser.add_argument("--max-page-bytes", type=int, default=None)
    args = parser.parse_args()
    database = f"mesh_rss_{uuid.uuid4().hex[:10]}"
    subprocess.run(["psql", f"{PG}/postgres", "-qc", f"CREATE DATABASE {database}"], check=True)
    port = free_port()
    env = dict(os.environ, DATABASE_URL=f"{PG}/{database}?sslmode=disable", MCP_MESH_LOG_LEVEL="WARN")
    if args.max_page_bytes:
        env["MCP_MESH_MAX_PAGE_BYTES"] = str(args.max_page_bytes)
    registry = subprocess.Popen([args.binary, "--host", "127.0.0.1", "--port", str(port)], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                call(base + "/health")
                break
            except OSError:
                time.sleep(0.1)
        payload = {"blob": "x" * 900_000}
        for _ in range(200):
            call(base + "/jobs", {"capability": "big", "submitted_by": "rss", "submitted_payload": payload})
        before = memory(registry.pid, "VmRSS:")
        peak_before = memory(registry.pid, "VmHWM:")

        def read_all(_):
            cursor, pages, jobs = None, 0, 0
            while True:
                page = call(base + "/jobs?limit=200" + (f"&cursor={cursor}" if cursor else ""))
                pages, jobs = pages + 1, jobs + len(page["jobs"])
                cursor = page["next_cursor"]
                if not cursor:
                    return pages, jobs

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            results = list(pool.map(read_all, range(4)))
        peak = memory(registry.pid, "VmHWM:")
        print(f"4 parallel readers of 200 jobs x 900 KB: pages/jobs per reader {results}; "
              f"registry RSS before {before} MiB (peak so far {peak_before} MiB), "
              f"peak while listing {peak} MiB (+{peak - before} MiB)")
    finally:
        registry.terminate()
        registry.wait()
        subprocess.run(["psql", f"{PG}/postgres", "-qc", f"DROP DATABASE {database} WITH (FORCE)"], check=True)


if __name__ == "__main__":
    main()
