"""HTTP servers: ``app.create_app`` (the p13n service; its routers in ``routes``, its schemas in
``schemas``) and ``llm_api`` (an OpenAI-compatible endpoint for any ``LLM`` backend).

Nothing is imported here: ``p13n serve-llm`` needs only ``llm_api``."""

__all__: list[str] = []
