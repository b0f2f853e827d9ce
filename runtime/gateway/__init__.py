"""The HTTP API gateway: commands and queries over HTTP, with an OpenAPI document generated
from the same schemas the runtime validates with (``cqrs gateway``)."""

from .app import GatewaySettings, create_app
from .auth import Tokens
from .limits import ConnectionLimits
from .server import run_gateway

__all__ = ["ConnectionLimits", "GatewaySettings", "Tokens", "create_app", "run_gateway"]
