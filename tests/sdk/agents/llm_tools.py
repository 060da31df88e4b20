"""Tool agent for the LLM end-to-end run: tools an LLM may or may not be offered, depending on
the consumer's filter."""

import mesh
from fastmcp import FastMCP

app = FastMCP("e2e llm tools")


@app.tool()
@mesh.tool(capability="e2e_math", tags=["calc", "fast"], description="Adds two integers.")
def e2e_add(a: int, b: int) -> int:
    return a + b


@app.tool()
@mesh.tool(capability="e2e_math", tags=["calc", "slow"], description="Multiplies two integers.")
def e2e_multiply(a: int, b: int) -> int:
    return a * b


@app.tool()
@mesh.tool(capability="e2e_text", tags=["string"], description="Upper-cases a text.")
def e2e_shout(text: str) -> str:
    return text.upper()


@app.tool()
@mesh.tool(capability="e2e_internal", description="Not for LLMs.")
def e2e_secret() -> str:
    return "secret"


@mesh.agent(name="e2e-llm-tools", version="1.0.0", enable_http=True, auto_run=True)
class Tools:
    pass
