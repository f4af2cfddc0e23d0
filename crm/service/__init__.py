"""The integration API (FastAPI): ``create_app(paths)``; ``crm serve`` runs it with uvicorn."""

from crm.service.app import create_app

__all__ = ["create_app"]
