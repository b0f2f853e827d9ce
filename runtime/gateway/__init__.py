"""The HTTP API gateway: commands and queries over HTTP, with an OpenAPI document generated
from the same schemas the runtime validates with (``cqrs gateway``)."""

from .app import GatewaySettings, create_app
from .auth import Tokens
from .server import run_gateway

__all__ = ["GatewaySettings", "Tokens", "create_app", "run_gateway"]
