"""HTTP API and web page (``fastsam serve``; extra ``app``).

``ServerConfig`` and ``create_app`` are imported on first use, so that the CLI can read the server's defaults
(:mod:`.limits`, :mod:`.auth`) without importing FastAPI.
"""

from typing import Any

__all__ = ["ServerConfig", "create_app"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
