"""A consumer for the meshctl end-to-end run (real Python SDK, FastMCP): `plan` depends on
`greeting` twice, plainly (the greeter's `greet` and this agent's own `salute` offer it: a
contested choice, which the greeter wins on its agent id) and with the tag `formal` (neither has
it: unresolved, both candidates dropped). `meshctl audit planner` shows both resolutions.
"""

import mesh
from fastmcp import FastMCP

app = FastMCP("meshctl planner")


@app.tool()
@mesh.tool(capability="greeting", tags=["casual"], description="says hi")
async def salute(name: str) -> str:
    return f"Hi, {name}!"


@app.tool()
@mesh.tool(
    capability="plan",
    dependencies=["greeting", {"capability": "greeting", "tags": ["formal"]}],
    description="plans a greeting",
)
async def plan(greeting: mesh.McpMeshTool = None, formal: mesh.McpMeshTool = None) -> str:
    return "planned"


@mesh.agent(name="planner", version="1.0.0", enable_http=True, auto_run=True)
class Planner:
    pass
