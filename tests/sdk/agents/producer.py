"""Producer agent for the SDK end-to-end run: task=True tools driven by the real Python SDK.

E2E_ROLE picks which tools this process serves:
  main       e2e_report (progress + complete), e2e_approval (input_required + answer event),
             e2e_endless (runs until cancelled; records that the cancel reached it)
  handoff-a  e2e_handoff, renews its lease until stopped, never finishes (the driver stops
             this agent mid-job)
  handoff-b  e2e_handoff, finishes at once (picks up the job handoff-a left behind)
Markers are files in E2E_DIR so the driver can see what happened inside the handler.
"""

import asyncio
import os
import pathlib

import mesh
from fastmcp import FastMCP
from mesh import MeshJob

app = FastMCP("e2e producer")
MARKS = pathlib.Path(os.environ["E2E_DIR"])
ROLE = os.environ["E2E_ROLE"]


def mark(name: str) -> None:
    (MARKS / name).write_text("1")


if ROLE == "main":

    @app.tool()
    @mesh.tool(capability="e2e_report", task=True, description="report with progress")
    async def e2e_report(sections: list[str], job: MeshJob = None) -> dict:
        await job.update_progress(0.0, "starting")
        report = []
        for i, section in enumerate(sections):
            await asyncio.sleep(0.3)
            report.append(f"content of {section}")
            await job.update_progress((i + 1) / len(sections), f"section {i + 1}/{len(sections)}")
        result = {"report": report}
        await job.complete(result)
        return result

    @app.tool()
    @mesh.tool(capability="e2e_approval", task=True, description="asks for approval")
    async def e2e_approval(amount: int, job: MeshJob = None) -> dict:
        await job.request_input(f"Approve ${amount}?")
        event = await job.recv_event(types=["answer"], timeout_secs=60.0)
        if event is None:
            return await job.fail("no answer")
        result = {"approved": bool(event["payload"].get("approved")), "amount": amount}
        await job.complete(result)
        return result

    @app.tool()
    @mesh.tool(capability="e2e_endless", task=True, description="runs until cancelled")
    async def e2e_endless(job: MeshJob = None) -> dict:
        mark(f"endless-started-{job.job_id}")
        try:
            while True:
                await job.update_progress(0.5, "still going")
                await asyncio.sleep(0.5)
        except asyncio.CancelledError:
            mark(f"endless-cancelled-{job.job_id}")
            raise

elif ROLE == "handoff-a":

    @app.tool()
    @mesh.tool(capability="e2e_handoff", task=True, description="never finishes")
    async def e2e_handoff(job: MeshJob = None) -> dict:
        mark(f"handoff-a-started-{job.job_id}")
        while True:
            await job.update_progress(0.5, "still going")
            await asyncio.sleep(0.5)

elif ROLE == "handoff-b":

    @app.tool()
    @mesh.tool(capability="e2e_handoff", task=True, description="finishes at once")
    async def e2e_handoff(job: MeshJob = None) -> dict:
        result = {"by": "b"}
        await job.complete(result)
        return result

else:
    raise SystemExit(f"unknown E2E_ROLE {ROLE!r}")


@mesh.agent(name=f"e2e-producer-{ROLE}", version="1.0.0", enable_http=True, auto_run=True)
class Producer:
    pass
