"""The service's schemas: field types and their published rules (``fields``), request models
(``requests``), public response models and the error shape (``responses``), and OpenAI's
response objects (``chat``). Import from those modules."""

__all__: list[str] = []
