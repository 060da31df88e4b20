"""An MCP Mesh agent for the meshctl end-to-end run (real Python SDK, FastMCP):

  greet      answers at once
  countdown  logs each step (MCP notifications, streamed as SSE frames) before its answer
  sleepy     answers after `seconds` (the proxy's time budget cuts it)
  weigh      takes a typed input (its schema is what `meshctl list --schemas` shows)
"""

import asyncio

import mesh
from fastmcp import Context, FastMCP

app = FastMCP("meshctl greeter")


@app.tool()
@mesh.tool(capability="greeting", description="says hello")
async def greet(name: str) -> str:
    return f"Hello, {name}!"


@app.tool()
@mesh.tool(capability="countdown", description="counts down, reporting progress")
async def countdown(n: int, ctx: Context = None) -> dict:
    for i in range(n):
        if ctx is not None:
            await ctx.info(f"step {i + 1}/{n}")
            await ctx.report_progress(i + 1, n, f"step {i + 1}/{n}")
        await asyncio.sleep(0.2)
    return {"counted": n}


@app.tool()
@mesh.tool(capability="sleepy", description="answers late")
async def sleepy(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "awake"


@mesh.agent(name="greeter", version="1.0.0", enable_http=True, auto_run=True)
class Greeter:
    pass
