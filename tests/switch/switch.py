"""Switch a mesh from the real Go registry 3.7.1 to mesh-registry, as docs/operations.md
(switching from the Go registry) tells an operator to: the Go registry on a fresh PostgreSQL
database gets jobs through its HTTP API (two completed with events, two still queued, one
waiting for input); the real `meshctl registry drain --wait` drains it; it stops; its tables
are dumped; `mesh-registry migrate import-reference` copies them; mesh-registry starts on the
same database. Every job and its events must read back through `GET /jobs/{id}` and
`GET /jobs/{id}/events` as the Go registry answered before the switch, the queued jobs are
claimed and finished through mesh-registry, and the Go registry's tables are byte for byte as
they were.

Usage: python3 switch.py <mesh-registry binary> <directory of the reference's binaries>
Exits non-zero on the first failure; stops what it started and drops its database.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid

PG_SERVER = os.environ.get("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432")
CAPABILITY = "switch_work"


def log(message):
    print(f"[switch] {message}", flush=True)


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
            return response.status, json.loads(response.read().decode() or "null")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
        return 0, str(error)


def ok(method, url, body=None, status=200):
    got, answer = request(method, url, body)
    expect(got == status, f"{method} {url}: {got} {answer}")
    return answer


def start(command, env, port, log_file):
    """A registry process logging to `log_file`; returns it and its base URL once /health answers."""
    with open(log_file, "w") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while request("GET", f"{base}/health")[0] != 200:
        if process.poll() is not None:
            with open(log_file) as output:
                raise AssertionError(f"{command[0]} exited: {output.read()[-4000:]}")
        expect(time.monotonic() < deadline, f"{command[0]} did not come up")
        time.sleep(0.1)
    return process, base


def stop(process):
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def registry_env(database_url, port):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "MCP_MESH_DB_SCHEMA", "RUST_LOG")}
    env.update({"HOST": "127.0.0.1", "PORT": str(port), "DATABASE_URL": database_url})
    return env


def dump_public(database_url):
    """The Go registry's tables, data and definitions (without the random key newer pg_dump prints)."""
    dump = subprocess.run(["pg_dump", "--schema=public", "--dbname", database_url],
                          check=True, capture_output=True, text=True).stdout
    return "\n".join(line for line in dump.splitlines() if not line.startswith(("\\restrict", "\\unrestrict")))


def submit(base, n):
    return ok("POST", f"{base}/jobs", {"capability": CAPABILITY, "submitted_by": "switch-test",
                                       "submitted_payload": {"n": n}, "max_retries": 2}, 201)["id"]


def claim(base, worker, expected_id):
    claimed = ok("POST", f"{base}/jobs/claim", {"capability": CAPABILITY, "instance_id": worker})["claimed"]
    expect(len(claimed) == 1 and claimed[0]["id"] == expected_id, f"claim by {worker}: {claimed}")
    return claimed[0]


def delta(base, worker, job):
    answer = ok("POST", f"{base}/jobs/batch", {"instance_id": worker, "deltas": [job]})
    expect(answer.get("accepted") == 1, f"delta {job}: {answer}")


def work_on(base, worker, job_id, events):
    """Claims the job and posts progress and events; returns its claim epoch."""
    claimed = claim(base, worker, job_id)
    for step in range(events):
        ok("POST", f"{base}/jobs/{job_id}/events", {"type": "note", "payload": {"step": step}})
    delta(base, worker, {"id": job_id, "claim_epoch": claimed["claim_epoch"], "progress": 0.5,
                         "progress_message": "half"})
    return claimed["claim_epoch"]


def complete(base, worker, job_id, epoch):
    delta(base, worker, {"id": job_id, "claim_epoch": epoch, "status": "completed", "result": {"worker": worker}})


def traffic_on_the_go_registry(base):
    """One completed job with events, one still running (returned as (worker, id, epoch), for the
    drain to wait on), one waiting for input (released by its owner, which is what the drain
    waits for), two queued; returns (worked-on ids, queued ids, running)."""
    ids = [submit(base, n) for n in range(5)]
    done, running, waiting, queued = ids[0], ids[1], ids[2], ids[3:]
    complete(base, "w1", done, work_on(base, "w1", done, 2))
    running_epoch = work_on(base, "w2", running, 1)
    claimed = claim(base, "w3", waiting)
    delta(base, "w3", {"id": waiting, "claim_epoch": claimed["claim_epoch"], "status": "input_required",
                       "progress_message": "which colour?"})
    ok("POST", f"{base}/jobs/{waiting}/events", {"type": "question", "payload": {"ask": "colour"}})
    ok("POST", f"{base}/jobs/{waiting}/release", {"instance_id": "w3"})
    return [done, running, waiting], queued, ("w2", running, running_epoch)


def history(base, job_ids):
    """Each job and its events as the registry answers them."""
    return {job_id: (ok("GET", f"{base}/jobs/{job_id}"), ok("GET", f"{base}/jobs/{job_id}/events"))
            for job_id in job_ids}


def compare(before, after, what):
    """Field by field; every difference is named."""
    differences = []
    for job_id, (job, events) in before.items():
        job_after, events_after = after[job_id]
        for field in sorted(set(job) | set(job_after)):
            if job.get(field) != job_after.get(field):
                differences.append(f"{job_id} {field}: {job.get(field)!r} -> {job_after.get(field)!r}")
        if events != events_after:
            differences.append(f"{job_id} events: {events} -> {events_after}")
    expect(not differences, f"{what}:\n  " + "\n  ".join(differences))


def main():
    binary, reference_bin = sys.argv[1], sys.argv[2]
    database = f"switch_{uuid.uuid4().hex[:12]}"
    database_url = f"{PG_SERVER}/{database}?sslmode=disable"
    subprocess.run(["psql", f"{PG_SERVER}/postgres", "-qc", f"CREATE DATABASE {database}"], check=True)
    processes = []
    logs = tempfile.mkdtemp(prefix="mesh-switch-")
    try:
        port = free_port()
        go, go_base = start([os.path.join(reference_bin, "mcp-mesh-registry")], registry_env(database_url, port), port,
                            os.path.join(logs, "go-registry.log"))
        processes.append(go)
        finished, queued, (worker, running, epoch) = traffic_on_the_go_registry(go_base)
        log(f"Go registry: {len(finished)} jobs worked on (one still running), {len(queued)} queued")

        drain = subprocess.Popen([os.path.join(reference_bin, "meshctl"), "registry", "drain", "--wait",
                                  "--wait-timeout", "60", "--poll-interval", "1", "--registry-url", go_base],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(2)
        expect(drain.poll() is None, "meshctl drain --wait returned while a job was still running")
        complete(go_base, worker, running, epoch)
        started = time.monotonic()
        output, _ = drain.communicate(timeout=30)
        expect(drain.returncode == 0, f"meshctl drain --wait: exit {drain.returncode}: {output}")
        log(f"meshctl registry drain --wait returned {time.monotonic() - started:.1f}s after the last job finished")
        expect(ok("POST", f"{go_base}/jobs/claim", {"capability": CAPABILITY, "instance_id": "late"})["claimed"] == [],
               "the drained Go registry handed out a job")
        before = history(go_base, finished + queued)
        for job_id, count in zip(finished, (2, 1, 1)):
            expect(len(before[job_id][1]["events"]) == count, f"{job_id}: {before[job_id][1]}")
        stop(go)
        reference_tables = dump_public(database_url)

        imported = subprocess.run([binary, "migrate", "import-reference", "--database-url", database_url],
                                  capture_output=True, text=True, timeout=60)
        expect(imported.returncode == 0, f"import: {imported}")
        log("import:\n" + imported.stdout.rstrip())
        expect("jobs:   5 (2 completed, 1 input_required, 2 working)" in imported.stdout, imported.stdout)
        expect("events: 4" in imported.stdout, imported.stdout)

        port = free_port()
        ours, our_base = start([binary], registry_env(database_url, port), port,
                               os.path.join(logs, "mesh-registry.log"))
        processes.append(ours)
        compare(before, history(our_base, finished + queued), "history differs after the switch")
        log(f"{len(before)} jobs and their events read back identically through mesh-registry")

        for n, job_id in enumerate(queued):
            claimed = claim(our_base, f"ours-{n}", job_id)
            delta(our_base, f"ours-{n}", {"id": job_id, "claim_epoch": claimed["claim_epoch"],
                                          "status": "completed", "result": {"by": "mesh-registry"}})
            expect(ok("GET", f"{our_base}/jobs/{job_id}")["status"] == "completed", job_id)
        log(f"{len(queued)} queued jobs claimed and completed through mesh-registry")

        again = subprocess.run([binary, "migrate", "import-reference", "--database-url", database_url],
                               capture_output=True, text=True, timeout=60)
        expect(again.returncode == 0 and "skipped: 5 job(s)" in again.stdout, f"second import: {again}")
        compare({k: before[k] for k in finished}, history(our_base, finished), "history changed by a second import")
        expect(dump_public(database_url) == reference_tables, "the Go registry's tables changed")
        log("the Go registry's tables are byte for byte as they were; a second import skipped all 5")
        log("PASS")
    except BaseException:
        log(f"registry logs kept in {logs}")
        raise
    else:
        shutil.rmtree(logs)
    finally:
        for process in processes:
            stop(process)
        subprocess.run(["psql", f"{PG_SERVER}/postgres", "-qc", f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"],
                       check=False)


if __name__ == "__main__":
    main()
