"""The local router: an Orq-compatible stand-in on loopback with synthetic answers.

Importing this package does not start anything; ``get_local_router()`` does.
"""

from .app import LOCAL_API_KEY, EmulatorSettings, create_app
from .server import LocalRouter, get_local_router, run_forever, start_local_router

__all__ = ["LOCAL_API_KEY", "EmulatorSettings", "create_app", "LocalRouter", "get_local_router",
           "run_forever", "start_local_router"]
