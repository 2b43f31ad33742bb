"""REST debug surface (FastAPI + uvicorn) beside the gRPC server: same models, same handlers."""

from service.api.rest.app import RestOptions, create_app
from service.api.rest.server import RestServer

__all__ = ["RestOptions", "RestServer", "create_app"]
