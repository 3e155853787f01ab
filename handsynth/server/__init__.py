"""The web page and HTTP API (``handsynth serve``): see docs/server.md.

    from handsynth.server import create_app, serve
    app = create_app()            # an ASGI app (FastAPI); the shipped model, loaded once
    serve("127.0.0.1", 8000)      # or run it with uvicorn
"""
from .app import MAX_BODY_BYTES, MAX_SAMPLE_POINTS, MAX_REQUEST_CHARS, create_app, serve

__all__ = ["create_app", "serve", "MAX_REQUEST_CHARS", "MAX_BODY_BYTES", "MAX_SAMPLE_POINTS"]
