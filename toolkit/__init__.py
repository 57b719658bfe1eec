"""spotkit toolkit: the CLI, recovery runbooks, the interruption handler and the on-instance agent.

The domain modules here take injected clients and return results; only ``spotkit.cli`` prints.
"""

__version__ = "0.1.0"
