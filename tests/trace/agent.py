"""A traced agent for the trace pipeline's end-to-end run: one tool, and tracing on (the driver
sets MCP_MESH_DISTRIBUTED_TRACING_ENABLED and REDIS_URL), so every call is a span in mesh:trace."""

import mesh
from fastmcp import FastMCP

app = FastMCP("traced agent")


@app.tool()
@mesh.tool(capability="greeting", description="says hello")
def greet(name: str) -> str:
    return f"hello {name}"


@mesh.agent(name="traced-agent", version="1.0.0", enable_http=True, auto_run=True)
class TracedAgent:
    pass
