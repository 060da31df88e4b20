"""mTLS registration end to end: the real Python SDK (mcp-mesh==3.8.0) and the real meshctl
against mesh-registry serving HTTPS with registration trust (MCP_MESH_TLS_MODE=auto, the
filestore backend).

Certificates are made here with openssl, valid for two days (nothing that expires is kept in
the repository): a CA for the registry's certificate, an entity CA ("acme") the registry trusts,
and a stranger CA it does not. Then:

  1. a producer agent with an acme certificate registers over mTLS (its Rust core presents the
     certificate and checks the registry's against MCP_MESH_TLS_CA), heartbeats, and claims a
     job the driver (also an acme client) submitted, over HTTPS. It cannot finish it: SDK
     3.8.0 reports job progress through a client that trusts only the public web's CAs (see
     flow 1 below), whichever registry it talks to. A job it runs is then cancelled: the
     registry forwards the cancel over HTTPS, presenting its own certificate and checking the
     agent's against MCP_MESH_TLS_CA (the acme CA), and the handler sees it (the only way it
     can: its progress reports never arrive);
  2. an agent with a stranger's certificate is refused (403 untrusted certificate) and never
     listed. In mode auto an agent without a certificate would be admitted, so this also shows
     that the SDK presents its certificate, and that flow 1's agent was admitted as trusted;
  3. meshctl lists the agents over HTTPS (--insecure, as it has no CA option) and refuses the
     registry without it (its certificate's CA is not one it knows);
  4. the Go registry (mcp-mesh-registry 3.7.1) and ours, both in strict mode on the same
     certificates and trust directory, answer a trusted client, a stranger and a client without
     a certificate alike (statuses, and bodies of refusals).

The registry runs on an embedded file (TLS is the transport; the stores are tested elsewhere).
Exits non-zero on the first failure and kills everything it started.
Usage: python e2e.py <registry-binary> <meshctl> (the reference registry beside meshctl)
"""

import os
import pathlib
import signal
import ssl
import subprocess
import sys
import tempfile
import time

import httpx

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "sdk"))
import e2e as sdk  # noqa: E402  (the SDK run's process and agent helpers)

TIME_LIMIT_SECONDS = 180


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_ca(directory: pathlib.Path, name: str, organization: str) -> pathlib.Path:
    openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", str(directory / f"{name}.key"), "-out", str(directory / f"{name}.pem"),
        "-days", "2", "-subj", f"/CN={name}/O={organization}",
    )
    return directory / f"{name}.pem"


def issue(directory: pathlib.Path, ca: str, name: str) -> tuple[str, str]:
    """A certificate for 127.0.0.1 and localhost, usable by servers and clients alike (an agent
    is both): its certificate and key paths."""
    key, csr, cert = (str(directory / f"{name}{ext}") for ext in (".key", ".csr", ".pem"))
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", key, "-out", csr, "-subj", f"/CN={name}")
    extensions = directory / f"{name}.ext"
    extensions.write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "extendedKeyUsage=serverAuth,clientAuth\n"
        "basicConstraints=CA:FALSE\n"
    )
    openssl("x509", "-req", "-in", csr, "-CA", str(directory / f"{ca}.pem"),
            "-CAkey", str(directory / f"{ca}.key"), "-CAcreateserial", "-out", cert,
            "-days", "2", "-extfile", str(extensions))
    return cert, key


def tls_context(ca: pathlib.Path, cert: str, key: str) -> ssl.SSLContext:
    """Trusts the registry's CA and presents a client certificate."""
    context = ssl.create_default_context(cafile=str(ca))
    context.load_cert_chain(cert, key)
    return context


def strict_answers(url: str, ca: pathlib.Path, clients: dict) -> dict:
    """GET /health and POST /jobs/claim as each client: status and body (volatile fields out)."""
    answers = {}
    for name, identity in clients.items():
        context = ssl.create_default_context(cafile=str(ca))
        if identity:
            context.load_cert_chain(*identity)
        with httpx.Client(base_url=url, verify=context, timeout=10) as client:
            sdk.wait_for(f"{url} to answer", lambda: _answers_at_all(client), 30)
            for method, path, body in (
                ("GET", "/health", None),
                ("POST", "/jobs/claim", {"capability": "nothing_here", "instance_id": "tls-diff"}),
                ("GET", "/admin/entities", None),
            ):
                response = client.request(method, path, json=body)
                answer = response.json()
                if response.status_code == 200 and path != "/admin/entities":
                    answer = sorted(answer)  # the keys: values (uptime, versions) differ
                answers[f"{name} {method} {path}"] = (response.status_code, answer)
    return answers


def _answers_at_all(client: httpx.Client) -> bool:
    try:
        client.get("/health")
        return True
    except httpx.HTTPError:
        return False


def main() -> int:
    registry_binary, meshctl = sys.argv[1], sys.argv[2]
    reference_binary = str(pathlib.Path(meshctl).parent / "mcp-mesh-registry")
    signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(TimeoutError("time limit reached")))
    signal.alarm(TIME_LIMIT_SECONDS)
    work = pathlib.Path(tempfile.mkdtemp(prefix="mesh-tls-e2e-"))
    ok = False
    try:
        registry_ca = make_ca(work, "registry-ca", "mesh-ops")
        trust = work / "trust"
        trust.mkdir()
        make_ca(work, "acme-ca", "acme")
        (trust / "acme.pem").write_bytes((work / "acme-ca.pem").read_bytes())
        make_ca(work, "stranger-ca", "stranger")
        registry_cert, registry_key = issue(work, "registry-ca", "registry")
        agent_cert, agent_key = issue(work, "acme-ca", "producer")
        driver_cert, driver_key = issue(work, "acme-ca", "driver")
        stranger_cert, stranger_key = issue(work, "stranger-ca", "stranger")

        port = sdk.free_port()
        url = f"https://127.0.0.1:{port}"
        sdk.start(
            [registry_binary, "--host", "127.0.0.1", "--port", str(port)],
            dict(
                os.environ,
                DATABASE_URL=str(work / "registry.db"),
                MCP_MESH_LOG_LEVEL="DEBUG",
                MCP_MESH_TLS_MODE="auto",
                MCP_MESH_TLS_CERT=registry_cert,
                MCP_MESH_TLS_KEY=registry_key,
                MCP_MESH_TLS_CA=str(work / "acme-ca.pem"),
                MCP_MESH_TRUST_BACKEND="filestore",
                MCP_MESH_TRUST_DIR=str(trust),
            ),
            work / "registry.log",
        )
        registry = sdk.Registry(url)
        registry.http = httpx.Client(base_url=url, timeout=10, verify=tls_context(registry_ca, driver_cert, driver_key))

        def answers() -> bool:
            try:
                return registry.http.get("/health").status_code == 200
            except httpx.HTTPError:
                return False

        sdk.wait_for("the registry over HTTPS", answers)
        # Plain HTTP is not served on the HTTPS port.
        try:
            plain = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code
        except httpx.HTTPError:
            plain = None
        assert plain != 200, plain

        tls_env = dict(
            os.environ,
            MCP_MESH_REGISTRY_URL=url,
            E2E_DIR=str(work),
            PYTHONUNBUFFERED="1",
            MCP_MESH_TLS_MODE="auto",
            MCP_MESH_TLS_CA=str(registry_ca),
            # SDK 3.8.0 registers and heartbeats through its Rust core with the MCP_MESH_TLS_*
            # files (mTLS), but claims jobs through a plain httpx client: that one trusts
            # SSL_CERT_FILE and presents no certificate (so claims need mode auto, here and on
            # the Go registry alike).
            SSL_CERT_FILE=str(registry_ca),
        )
        sdk.log("flow 1: an acme agent registers over mTLS and claims a job")
        sdk.start_agent(
            "producer.py",
            dict(tls_env, MCP_MESH_TLS_CERT=agent_cert, MCP_MESH_TLS_KEY=agent_key),
            work, "producer", role="main",
        )
        sdk.wait_for("the producer to register", lambda: registry.healthy_agent("e2e-producer-main"), 60)
        agent = registry.healthy_agent("e2e-producer-main")
        job_id = registry.submit("e2e_report", {"sections": ["intro", "end"]})
        job = sdk.wait_for(
            "the agent to claim the job over HTTPS",
            lambda: (j := registry.job(job_id))["owner_instance_id"] and j,
            60,
        )
        assert job["owner_instance_id"] == agent["id"] and job["claim_epoch"] == 1, (job, agent)
        # Its progress and completion never arrive: SDK 3.8.0 sends them (POST /jobs/batch)
        # through a client of its Rust core built without MCP_MESH_TLS_CA or a client
        # certificate, which knows only the public web's CAs; the same holds with the Go
        # registry. The agent log shows the refused handshake.
        sdk.wait_for(
            "the SDK's job client to refuse the mesh's private CA",
            lambda: "jobs/batch" in (work / "producer.log").read_text(errors="replace"),
            30,
        )
        assert agent["endpoint"].startswith("https://"), agent
        endless = registry.submit("e2e_endless", {})
        sdk.wait_for("the handler to start", lambda: (work / f"endless-started-{endless}").exists(), 60)
        cancelled = registry.http.post(f"/jobs/{endless}/cancel", json={"reason": "e2e cancel"})
        assert cancelled.status_code == 200 and cancelled.json()["forwarded_to_instance_id"] == agent["id"], cancelled.text
        sdk.wait_for(
            "the cancel forwarded over HTTPS to reach the handler",
            lambda: (work / f"endless-cancelled-{endless}").exists(),
            30,
        )

        sdk.log("flow 2: an agent with a stranger's certificate is refused")
        sdk.start_agent(
            "producer.py",
            dict(tls_env, MCP_MESH_TLS_CERT=stranger_cert, MCP_MESH_TLS_KEY=stranger_key),
            work, "stranger", role="handoff-b",
        )
        sdk.wait_for(
            "the registry to refuse the stranger's certificate",
            lambda: "client certificate refused" in (work / "registry.log").read_text(errors="replace"),
            60,
        )
        names = [agent["name"] for agent in registry.agents()]
        assert "e2e-producer-handoff-b" not in names, names
        with httpx.Client(verify=tls_context(registry_ca, stranger_cert, stranger_key), timeout=10) as stranger:
            refused = stranger.get(f"{url}/health")
        assert refused.status_code == 403 and refused.json()["error"] == "untrusted certificate", refused.text

        sdk.log("flow 3: meshctl over HTTPS")
        listed = subprocess.run(
            [meshctl, "list", "--registry-url", url, "--insecure", "--json"],
            capture_output=True, text=True, timeout=60,
        )
        assert listed.returncode == 0, listed.stdout + listed.stderr
        assert "e2e-producer-main" in listed.stdout, listed.stdout
        unverified = subprocess.run(
            [meshctl, "list", "--registry-url", url, "--json"], capture_output=True, text=True, timeout=60
        )
        assert "e2e-producer-main" not in unverified.stdout, unverified.stdout

        sdk.log("flow 4: strict mode, the Go registry and ours side by side")
        answers = {}
        for name, binary, database in (
            ("reference", reference_binary, work / "reference.db"),
            ("ours", registry_binary, work / "ours-strict.db"),
        ):
            strict_port = sdk.free_port()
            sdk.start(
                [binary],
                dict(
                    os.environ,
                    HOST="127.0.0.1",
                    PORT=str(strict_port),
                    DATABASE_URL=str(database),
                    MCP_MESH_TLS_MODE="strict",
                    MCP_MESH_TLS_CERT=registry_cert,
                    MCP_MESH_TLS_KEY=registry_key,
                    MCP_MESH_TRUST_BACKEND="filestore",
                    MCP_MESH_TRUST_DIR=str(trust),
                ),
                work / f"{name}-strict.log",
            )
            answers[name] = strict_answers(f"https://127.0.0.1:{strict_port}", registry_ca, {
                "trusted": (driver_cert, driver_key),
                "stranger": (stranger_cert, stranger_key),
                "none": None,
            })
        assert answers["ours"] == answers["reference"], answers
        sdk.log(f"  the same answers: {answers['ours']}")
        ok = True
        sdk.log("all TLS flows passed")
    except BaseException as failure:  # noqa: BLE001 - report anything, then clean up
        sdk.log(f"FAILED: {failure!r}; kept {work}")
        for path in sorted(work.glob("*.log")):
            print(f"----- {path.name} (last 40 lines) -----")
            print("\n".join(path.read_text(errors="replace").splitlines()[-40:]))
    finally:
        signal.alarm(0)
        for process in reversed(sdk.processes):
            sdk.stop(process, wait=10)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
