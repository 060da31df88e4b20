"""A producer whose job runs in sections, each with a side effect the driver can count.

Runs unchanged on mcp-mesh 2.0.0, 2.7.0 and 3.8.0 (the MeshJob API of 2.0.0). Every section
appends one line `<E2E_ROLE> <job id> <section> <unix time>` to E2E_DIR/sections.log before it
reports progress, so the driver counts executions of each section, whoever ran them. Before
section 4 it waits for the file E2E_DIR/go (reporting progress every second, so its lease stays
live): the driver decides when the second half runs, however slowly the agents started.
"""

import asyncio
import os
import pathlib
import time

import mesh
from fastmcp import FastMCP
from mesh import MeshJob

app = FastMCP("sectioned producer")
SECTIONS_LOG = pathlib.Path(os.environ["E2E_DIR"]) / "sections.log"
ROLE = os.environ["E2E_ROLE"]
SECTIONS = 6
SECTION_SECONDS = 1.0
HOLD_BEFORE = 4
GO = pathlib.Path(os.environ["E2E_DIR"]) / "go"


def side_effect(job_id: str, section: int) -> None:
    with SECTIONS_LOG.open("a") as log:
        log.write(f"{ROLE} {job_id} {section} {time.time():.3f}\n")


@app.tool()
@mesh.tool(capability="e2e_sections", task=True, description="six one-second sections")
async def e2e_sections(job: MeshJob = None) -> dict:
    for section in range(1, SECTIONS + 1):
        while section == HOLD_BEFORE and not GO.exists():
            await asyncio.sleep(SECTION_SECONDS)
            await job.update_progress((section - 1) / SECTIONS, "waiting for the driver")
        await asyncio.sleep(SECTION_SECONDS)
        side_effect(job.job_id, section)
        await job.update_progress(section / SECTIONS, f"section {section}/{SECTIONS}")
    result = {"sections": SECTIONS, "by": ROLE}
    await job.complete(result)
    return result


@mesh.agent(name=f"e2e-sections-{ROLE}", version="1.0.0", enable_http=True, auto_run=True)
class Sectioned:
    pass
