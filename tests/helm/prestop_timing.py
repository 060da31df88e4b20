#!/usr/bin/env python3
"""How long one replica takes to stop under steady load, with chart 0.1.0's preStop and with the
current one. There is no Kubernetes here, so this plays the kubelet's part on real processes:

  * three replicas of the real binary on one fresh PostgreSQL database, each on its own public
    and admin port (as in the chart: admin.enabled, MCP_MESH_SHUTDOWN_TIMEOUT left at 30);
  * a steady load over plain HTTP/1.1 keep-alive connections, as the SDKs keep them: a
    submitter keeps the queue topped up, workers register, claim, report progress halfway (a
    lease renewal) and complete. A "Service" hands each new connection to a random replica in
    its endpoints; a connection stays with its replica until either side closes it;
  * then, for one replica, what the kubelet does when a pod is deleted: the pod leaves the
    endpoints (after --endpoint-lag seconds, as kube-proxy catches up), the preStop command
    runs to its end, then SIGTERM, and the time until the process exits.

It runs the old hook (`registry drain --wait --wait-timeout <--old-wait-timeout>`, chart 0.1.0),
the new one without a linger (`registry drain --timeout 5`), and the chart's preStop
(`registry drain --timeout 5 --linger <--linger>`: the pod leaves the endpoints and the clients'
connections move on before SIGTERM) against the same replica, restarting it in between. It
prints each stop time, what the clients saw meanwhile, and whether every job submitted was
completed in the end.

Usage: tests/helm/prestop_timing.py [--binary target/debug/mesh-registry]
                                    [--old-wait-timeout 300] [--workers 8] [--work-seconds 2]
                                    [--endpoint-lag 1] [--linger 5]
PostgreSQL: TEST_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432); psql must be on PATH.
Takes about --old-wait-timeout plus a minute.
"""

import argparse
import collections
import http.client
import json
import os
import pathlib
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid

ROOT = pathlib.Path(__file__).resolve().parents[2]
PG_SERVER = os.environ.get("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432")
CAPABILITY = "prestop-timing"
REPLICAS = 3
STOPPED = 0  # the replica that is stopped, twice
QUEUE_DEPTH = 10  # pending jobs the submitter keeps in the queue
CONNECTION_LIFETIME = 5.0  # seconds a client reuses a connection, as a pool's keep-alive expiry
NEW_REQUEST_TIMEOUT = 5  # the chart's drain.requestTimeoutSeconds


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def psql(database, statement):
    subprocess.run(["psql", f"{PG_SERVER}/{database}", "-v", "ON_ERROR_STOP=1", "-qc", statement],
                   check=True, capture_output=True)


class Replica:
    def __init__(self, binary, database_url, logs):
        self.binary = binary
        self.database_url = database_url
        self.port = free_port()
        self.admin_port = free_port()
        self.logs = logs
        self.process = None

    def start(self):
        env = dict(os.environ, HOST="127.0.0.1", PORT=str(self.port),
                   MCP_MESH_ADMIN_PORT=str(self.admin_port), DATABASE_URL=self.database_url,
                   MCP_MESH_LOG_LEVEL="WARNING")
        log = open(self.logs / f"replica-{self.port}.log", "a")
        self.process = subprocess.Popen([self.binary, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/ready")
                if conn.getresponse().status == 200:
                    return
            except OSError:
                pass
            if self.process.poll() is not None:
                raise SystemExit(f"replica on {self.port} exited with {self.process.returncode}")
            time.sleep(0.1)
        raise SystemExit(f"replica on {self.port} not ready within 60 s")

    def admin_url(self):
        return f"http://127.0.0.1:{self.admin_port}"


class Service:
    """A ClusterIP Service: each new connection goes to a random replica in its endpoints."""

    def __init__(self, replicas):
        self.replicas = replicas
        self.endpoints = set(range(len(replicas)))
        self.lock = threading.Lock()

    def pick(self):
        with self.lock:
            return random.choice(sorted(self.endpoints))

    def remove(self, index):
        with self.lock:
            self.endpoints.discard(index)

    def add(self, index):
        with self.lock:
            self.endpoints.add(index)


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.phase = "warm-up"
        self.errors = collections.Counter()  # (phase, replica, kind)
        self.claims = collections.Counter()  # (phase, replica, "job" | "none")
        self.requests_after_sigterm = 0
        self.stopping_since = None  # (replica, when SIGTERM was sent)

    def count(self, counter, key):
        with self.lock:
            counter[(self.phase, *key)] += 1


class Client:
    """One keep-alive connection at a time, through the Service; a new one after any failure or
    when the server closes it, as an HTTP client library with a connection pool does."""

    def __init__(self, service, stats):
        self.service = service
        self.stats = stats
        self.conn = None
        self.replica = None
        self.connected_at = 0.0

    def _connect(self):
        self.replica = self.service.pick()
        port = self.service.replicas[self.replica].port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.connected_at = time.monotonic()

    def call(self, method, path, body=None):
        """(status, decoded body) or None after two failed attempts."""
        for _ in range(2):
            if self.conn is not None and time.monotonic() - self.connected_at > CONNECTION_LIFETIME:
                self.conn.close()
                self.conn = None
            if self.conn is None:
                self._connect()
            try:
                payload = json.dumps(body).encode() if body is not None else None
                headers = {"Content-Type": "application/json"} if payload else {}
                self.conn.request(method, path, body=payload, headers=headers)
                response = self.conn.getresponse()
                data = response.read()
                stopping = self.stats.stopping_since
                if stopping and stopping[0] == self.replica:
                    with self.stats.lock:
                        self.stats.requests_after_sigterm += 1
                if response.will_close:
                    self.conn.close()
                    self.conn = None
                return response.status, (json.loads(data) if data else None)
            except (OSError, http.client.HTTPException) as error:
                self.stats.count(self.stats.errors, (self.replica, type(error).__name__))
                self.conn.close()
                self.conn = None
                time.sleep(0.05)
        return None


class Load:
    def __init__(self, service, stats, workers, work_seconds):
        self.service = service
        self.stats = stats
        self.work_seconds = work_seconds
        self.running = True
        self.submitting = True
        self.submitted = []
        self.claimed = 0
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.submit_forever, daemon=True)]
        self.threads += [threading.Thread(target=self.work_forever, args=(f"worker-{i}",), daemon=True)
                         for i in range(workers)]

    def start(self):
        for t in self.threads:
            t.start()

    def submit_forever(self):
        client = Client(self.service, self.stats)
        while self.running and self.submitting:
            with self.lock:
                pending = len(self.submitted) - self.claimed
            if pending >= QUEUE_DEPTH:
                time.sleep(0.05)
                continue
            answer = client.call("POST", "/jobs", {"capability": CAPABILITY, "submitted_by": "prestop-timing",
                                                   "submitted_payload": {"n": len(self.submitted)},
                                                   "max_duration": 60})
            if answer and answer[0] == 201:
                with self.lock:
                    self.submitted.append(answer[1]["id"])

    def work_forever(self, worker):
        client = Client(self.service, self.stats)
        registration = {"agent_id": worker, "name": worker, "tools": [
            {"function_name": "run", "capability": CAPABILITY, "kwargs": {"task": True}}]}
        while client.call("POST", "/heartbeat", registration) is None:
            time.sleep(0.5)
        while self.running:
            answer = client.call("POST", "/jobs/claim", {"capability": CAPABILITY, "instance_id": worker})
            if not answer or answer[0] != 200:
                time.sleep(0.1)
                continue
            replica = client.replica
            if not answer[1]["claimed"]:
                self.stats.count(self.stats.claims, (replica, "none"))
                time.sleep(0.1)
                continue
            self.stats.count(self.stats.claims, (replica, "job"))
            with self.lock:
                self.claimed += 1
            job = answer[1]["claimed"][0]
            delta = {"id": job["id"], "claim_epoch": job["claim_epoch"]}
            time.sleep(self.work_seconds / 2)
            self.deliver(client, worker, dict(delta, progress=0.5, progress_message="halfway"))
            time.sleep(self.work_seconds / 2)
            self.deliver(client, worker, dict(delta, status="completed", result={"by": worker}))

    def deliver(self, client, worker, delta):
        # A delta that got no answer is sent again, as the SDKs do; the claim epoch makes it safe.
        for _ in range(20):
            answer = client.call("POST", "/jobs/batch", {"instance_id": worker, "deltas": [delta]})
            if answer and answer[0] == 200:
                return
            time.sleep(0.25)


def stop_replica(replica, index, service, stats, pre_stop, linger, endpoint_lag):
    """The kubelet's part: endpoints, preStop (the command, then `linger` seconds), SIGTERM.
    Returns (preStop s, hook exit code, its last line, SIGTERM→exit s, process exit code)."""
    started = time.monotonic()
    threading.Timer(endpoint_lag, service.remove, args=(index,)).start()
    hook = subprocess.run(pre_stop, capture_output=True, text=True)
    time.sleep(linger)
    hook_seconds = time.monotonic() - started
    # The kubelet sends SIGTERM as soon as the hook returns, whether or not the endpoint is gone.
    stats.stopping_since = (index, time.monotonic())
    sigterm = time.monotonic()
    replica.process.send_signal(signal.SIGTERM)
    code = replica.process.wait(timeout=120)
    exit_seconds = time.monotonic() - sigterm
    stats.stopping_since = None
    lines = [line.strip() for line in (hook.stdout + hook.stderr).splitlines() if line.strip()]
    return hook_seconds, hook.returncode, lines[-1] if lines else "", exit_seconds, code


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", default=str(ROOT / "target/debug/mesh-registry"))
    parser.add_argument("--old-wait-timeout", type=int, default=300,
                        help="chart 0.1.0's drain.waitTimeoutSeconds (its default: 300)")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--work-seconds", type=float, default=2.0)
    parser.add_argument("--endpoint-lag", type=float, default=1.0,
                        help="seconds until a stopping pod leaves the Service's endpoints")
    parser.add_argument("--linger", type=int, default=5,
                        help="also stop with the chart's preStop, `registry drain --linger` this many "
                             "seconds; 0 skips it")
    args = parser.parse_args()

    database = f"mesh_prestop_{uuid.uuid4().hex[:8]}"
    psql("postgres", f"CREATE DATABASE {database}")
    logs = ROOT / "target" / "prestop-timing"
    logs.mkdir(parents=True, exist_ok=True)
    replicas = [Replica(args.binary, f"{PG_SERVER}/{database}?sslmode=disable", logs) for _ in range(REPLICAS)]
    load = None
    try:
        for r in replicas:
            r.start()
        service = Service(replicas)
        stats = Stats()
        load = Load(service, stats, args.workers, args.work_seconds)
        load.start()
        time.sleep(5)

        new_hook = [args.binary, "registry", "drain", "--timeout", str(NEW_REQUEST_TIMEOUT),
                    "--registry-url", replicas[STOPPED].admin_url()]
        hooks = {  # name: (command, seconds the hook goes on after the command)
            "old": ([args.binary, "registry", "drain", "--wait", "--wait-timeout", str(args.old_wait_timeout),
                     "--registry-url", replicas[STOPPED].admin_url()], 0),
            "new": (new_hook, 0),
        }
        if args.linger:
            # The chart's preStop: the same drain, then `--linger` keeps the hook running.
            lingering = new_hook[:5] + ["--linger", f"{args.linger:g}"] + new_hook[5:]
            hooks["new+linger"] = (lingering, 0)
        results = {}
        for name, (hook, linger) in hooks.items():
            stats.phase = name
            live = json.loads(subprocess.run([args.binary, "registry", "status", "--json", "--registry-url",
                                              replicas[STOPPED].admin_url()],
                                             capture_output=True, text=True, check=True).stdout)["live_claims"]
            print(f"[{name}] stopping replica {STOPPED} with {live} live claims in the fleet: {' '.join(hook[1:])}"
                  + (f", then {linger:g} s" if linger else ""), flush=True)
            stop_started = time.monotonic()
            results[name] = stop_replica(replicas[STOPPED], STOPPED, service, stats, hook, linger,
                                         args.endpoint_lag) + (live,)
            # What clients see until the stopped pod is out of the endpoints counts for this stop.
            time.sleep(max(0.0, stop_started + args.endpoint_lag + 1 - time.monotonic()))
            stats.phase = "between"
            replicas[STOPPED].start()  # a new pod: its drain is cleared by the restart
            service.add(STOPPED)
            time.sleep(CONNECTION_LIFETIME + 3)  # clients spread over all three again

        load.submitting = False
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and load.claimed < len(load.submitted):
            time.sleep(0.5)
        time.sleep(args.work_seconds + 1)
        load.running = False

        statuses = collections.Counter()
        client = Client(service, stats)
        for job_id in load.submitted:
            answer = client.call("GET", f"/jobs/{job_id}")
            statuses[answer[1]["status"] if answer and answer[0] == 200 else "unreadable"] += 1

        print()
        print(f"per-pod stop time under steady load: {REPLICAS} replicas on one PostgreSQL, {args.workers} workers "
              f"(claim, progress after {args.work_seconds / 2:g} s, complete after {args.work_seconds:g} s), "
              f"{QUEUE_DEPTH} jobs kept queued, keep-alive connections (reused for {CONNECTION_LIFETIME:g} s), endpoint lag {args.endpoint_lag:g} s")
        for name, (hook_s, hook_code, output, exit_s, code, live) in results.items():
            command, linger = hooks[name]
            hook = " ".join(command[1:4]) + " ..." + (f" + {linger:g} s" if linger else "")
            print(f"  {name}: {hook}: preStop {hook_s:.2f} s (exit {hook_code}: {output}), "
                  f"SIGTERM to exit {exit_s:.2f} s (exit {code}); pod stop {hook_s + exit_s:.2f} s "
                  f"[fleet live claims at start: {live}]")
            errors = {k[1:]: v for k, v in stats.errors.items() if k[0] == name}
            claims = {k[1:]: v for k, v in stats.claims.items() if k[0] == name}
            print(f"       client errors (replica, kind): {errors or 'none'}; claims (replica, outcome): {dict(sorted(claims.items()))}")
        print(f"  requests answered by a replica after its SIGTERM (keep-alive): {stats.requests_after_sigterm}")
        print(f"  jobs: {len(load.submitted)} submitted, by status at the end: {dict(statuses)}")
        return 0 if set(statuses) == {"completed"} else 1
    finally:
        if load:
            load.running = False
        for r in replicas:
            if r.process and r.process.poll() is None:
                r.process.kill()
                r.process.wait()
        psql("postgres", f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")


if __name__ == "__main__":
    sys.exit(main())
