"""HTTP API and web page (``fastsam serve``; extra ``app``)."""

from .app import ServerConfig, create_app

__all__ = ["ServerConfig", "create_app"]
