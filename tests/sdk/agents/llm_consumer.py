"""`@mesh.llm` consumer for the LLM end-to-end run: its model is a mesh provider, and it may call
the e2e_math tools that are not slow, and the e2e_text tools."""

import mesh
from fastmcp import FastMCP

app = FastMCP("e2e llm consumer")


@app.tool()
@mesh.llm(
    provider={"capability": "llm", "tags": ["+e2e"]},
    filter=[{"capability": "e2e_math", "tags": ["-slow"]}, "e2e_text"],
    max_iterations=5,
)
@mesh.tool(capability="e2e_ask", description="Answers a question with the mesh's LLM.")
async def e2e_ask(question: str, llm: mesh.MeshLlmAgent = None) -> str:
    return await llm(question)


@mesh.agent(name="e2e-llm-consumer", version="1.0.0", enable_http=True, auto_run=True)
class Consumer:
    pass
