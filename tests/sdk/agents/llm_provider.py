"""LLM provider agent for the LLM end-to-end run: a zero-code `@mesh.llm_provider` whose model is
served by the run's mock OpenAI-compatible server (OPENAI_BASE_URL)."""

import mesh
from fastmcp import FastMCP

app = FastMCP("e2e llm provider")


@mesh.llm_provider(model="openai/e2e-model", capability="llm", tags=["e2e", "openai"], version="1.0.0")
def e2e_chat():
    """Answers through the mock model."""


@mesh.agent(name="e2e-llm-provider", version="1.0.0", enable_http=True, auto_run=True)
class Provider:
    pass
