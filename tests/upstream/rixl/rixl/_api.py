"""Stand-in for RIXL's Python API: the agent creates one backend per plugin.

As in the real _api.py, exactly one line calls create_backend with
(bknd, init), 16 spaces in; vLLM patch 7 sets init["ucx_error_handling_mode"]
just before it, and create_backend records what it was given.
"""

from rixl import _bindings


class nixl_agent_config:
    def __init__(self, backends=("UCX",)):
        self.backends = list(backends)


class nixl_agent:
    def __init__(self, agent_name, nixl_conf=None):
        self.name = agent_name
        self.version = _bindings.version()
        self.backends = {}
        self.plugin_list = ["UCX"]
        for bknd in (nixl_conf or nixl_agent_config()).backends:
            init = {}
            if bknd in self.plugin_list:
                self.create_backend(bknd, init)

    def create_backend(self, backend, initParams):
        """Records the parameters, which tests read back."""
        self.backends[backend] = dict(initParams)
