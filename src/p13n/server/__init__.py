"""HTTP servers. ``llm_api``: an OpenAI-compatible endpoint for any ``LLM`` backend."""
