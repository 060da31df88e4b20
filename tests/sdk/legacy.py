"""A job whose owner leaves mid-job runs exactly once, whatever SDK the owner runs (issue 23).

An owner on an older SDK receives SIGTERM three seconds into a six-section job while a
mcp-mesh==3.8.0 producer polls for the same capability:

  2.0.0  deregisters at once (DELETE /agents/{id}) but keeps running the handler: the job must
         stay with it, every section must run exactly once, and it completes the job itself
         (attempt_count 1).
  2.7.0  lets the handler run for a shutdown grace, then stops it without releasing: the job
         either completes within the grace (attempt_count 1) or moves to the 3.8.0 producer only
         after the lease lapses (attempt_count 2), so two executions never overlap and exactly
         one runs every section.

Sections are counted from the side effects the handlers write (agents/sectioned.py), not only
from the final row. Usage: python legacy.py <registry-binary> <old-venv-python> <old-version>
"""

import collections
import os
import pathlib
import signal
import sys
import tempfile
import time
import uuid

import e2e
from e2e import Registry, free_port, log, psql, start, stop, wait_for

# Each section renews the lease; a 4-second window outlives one section with room to spare, and
# lapses soon after an owner stops.
LEASE_SECONDS = 4
SECTIONS = 6


def start_sectioned(python: str, role: str, env: dict, e2e_dir: pathlib.Path):
    port = free_port()
    log(f"starting {role} producer ({python}) on port {port}")
    agent_env = dict(
        env, E2E_ROLE=role, MCP_MESH_HTTP_PORT=str(port), MCP_MESH_HTTP_HOST="127.0.0.1", MCP_MESH_DEBOUNCE_DELAY="3"
    )
    return start([python, str(e2e.HERE / "agents" / "sectioned.py")], agent_env, e2e_dir / f"{role}.log")


def sections(e2e_dir: pathlib.Path, job_id: str) -> list[tuple[str, int, float]]:
    path = e2e_dir / "sections.log"
    if not path.exists():
        return []
    rows = [line.split() for line in path.read_text().splitlines()]
    return [(role, int(section), float(at)) for role, job, section, at in rows if job == job_id]


def scenario(registry: Registry, env: dict, e2e_dir: pathlib.Path, old_python: str, old_version: str) -> None:
    legacy = start_sectioned(old_python, "legacy", env, e2e_dir)
    wait_for("the legacy producer to register", lambda: registry.healthy_agent("e2e-sections-legacy"), 60)
    response = registry.http.post(
        "/jobs",
        json={
            "capability": "e2e_sections",
            "submitted_by": "e2e-driver",
            "submitted_payload": {},
            "max_duration": LEASE_SECONDS,
            "max_retries": 1,
        },
    )
    assert response.status_code == 201, response.text
    job_id = response.json()["id"]
    wait_for("the legacy producer to start the job", lambda: sections(e2e_dir, job_id), 60)
    assert registry.job(job_id)["owner_instance_id"].startswith("e2e-sections-legacy"), registry.job(job_id)

    start_sectioned(sys.executable, "modern", env, e2e_dir)
    wait_for("the 3.8.0 producer to register", lambda: registry.healthy_agent("e2e-sections-modern"), 60)
    wait_for("three sections into the job", lambda: len(sections(e2e_dir, job_id)) >= 3, 30)
    log(f"SIGTERM to the {old_version} owner")
    sigterm_at = time.time()
    os.killpg(legacy.pid, signal.SIGTERM)  # not waited for: 2.0.0 lingers after its job
    # Sections 4 to 6 run only from now on: after the SIGTERM, whoever runs them.
    (e2e_dir / "go").touch()
    wait_for(
        "the legacy owner to deregister",
        lambda: any(a["name"] == "e2e-sections-legacy" and a["status"] == "unhealthy" for a in registry.agents()),
        15,
    )
    job = wait_for("the job to finish", lambda: (j := registry.job(job_id))["status"] in ("completed", "failed") and j, 90)
    time.sleep(2)  # a second execution, if any, would still be writing sections now
    ran = sections(e2e_dir, job_id)
    by_role = collections.defaultdict(list)
    for role, section, at in ran:
        by_role[role].append((section, at))
    log(f"{old_version}: job {job['status']} by {job['owner_instance_id']}, attempt {job['attempt_count']}; "
        f"sections: { {role: [s for s, _ in runs] for role, runs in by_role.items()} }")
    assert job["status"] == "completed", job
    finisher = job["result"]["by"]
    assert job["owner_instance_id"].startswith(f"e2e-sections-{finisher}"), job
    assert sorted(s for s, _ in by_role[finisher]) == list(range(1, SECTIONS + 1)), f"each section once: {ran}"
    if by_role["legacy"] and by_role["modern"]:
        last_legacy = max(at for _, at in by_role["legacy"])
        first_modern = min(at for _, at in by_role["modern"])
        assert last_legacy < first_modern, f"two executions overlapped: {ran}"
    if finisher == "legacy":
        assert job["attempt_count"] == 1 and job["claim_epoch"] == 1, job
        assert not by_role["modern"], f"the job ran a second time: {ran}"
    else:
        assert job["attempt_count"] == 2 and job["claim_epoch"] == 2, job
    if old_version == "2.0.0":
        # The departing owner keeps running its handler: it keeps the job and finishes it.
        assert finisher == "legacy", f"the old owner's job was taken: {ran}"
        assert any(at > sigterm_at for _, at in by_role["legacy"]), "the old SDK kept running after SIGTERM"


def main() -> int:
    registry_binary, old_python, old_version = sys.argv[1:4]
    e2e_dir = pathlib.Path(tempfile.mkdtemp(prefix=f"mesh-legacy-{old_version}-"))
    database = f"mesh_registry_legacy_{uuid.uuid4().hex[:12]}"
    psql("postgres", f"CREATE DATABASE {database}")
    ok = False
    try:
        port = free_port()
        registry_url = f"http://127.0.0.1:{port}"
        start(
            [registry_binary, "--host", "127.0.0.1", "--port", str(port)],
            dict(os.environ, DATABASE_URL=f"{e2e.PG_SERVER}/{database}?sslmode=disable", MCP_MESH_LOG_LEVEL="DEBUG"),
            e2e_dir / "registry.log",
        )
        registry = Registry(registry_url)
        wait_for("the registry", lambda: e2e._answers(registry_url + "/health"))
        env = dict(os.environ, MCP_MESH_REGISTRY_URL=registry_url, E2E_DIR=str(e2e_dir), PYTHONUNBUFFERED="1")
        scenario(registry, env, e2e_dir, old_python, old_version)
        ok = True
        log(f"legacy owner {old_version}: passed")
    except BaseException as failure:  # noqa: BLE001 - report anything, then clean up
        log(f"FAILED: {failure!r}")
        for path in sorted(e2e_dir.glob("*.log")):
            print(f"----- {path.name} (last 40 lines) -----")
            print("\n".join(path.read_text(errors="replace").splitlines()[-40:]))
    finally:
        for process in reversed(e2e.processes):
            stop(process, wait=10)
        psql("postgres", f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.stdout.flush()
    os._exit(main())
