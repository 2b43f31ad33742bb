"""REST debug surface (FastAPI + uvicorn) beside the gRPC server: same models, same handlers."""

from service.rest.app import create_app
from service.rest.server import RestServer

__all__ = ["RestServer", "create_app"]
