"""Consumer agent for the SDK end-to-end run: its tool submits an e2e_report job through the
SDK's injected MeshJobSubmitter (which needs the registry to resolve the dependency) and waits
for the result."""

import mesh
from fastmcp import FastMCP
from mesh import MeshJob

app = FastMCP("e2e consumer")


@app.tool()
@mesh.tool(capability="e2e_commission", dependencies=["e2e_report"], description="submit and wait")
async def e2e_commission(sections: list[str], e2e_report: MeshJob = None) -> dict:
    if e2e_report is None:
        return {"error": "e2e_report submitter not injected"}
    proxy = await e2e_report.submit(sections=sections, max_duration=60)
    return await proxy.wait(timeout_secs=60)


@mesh.agent(name="e2e-consumer", version="1.0.0", enable_http=True, auto_run=True)
class Consumer:
    pass
