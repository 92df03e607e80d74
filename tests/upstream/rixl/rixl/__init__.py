"""Stand-in for the `rixl` package (tests/standins.py)."""

from rixl._api import nixl_agent, nixl_agent_config

__all__ = ["nixl_agent", "nixl_agent_config"]
