"""The on-instance interruption agent: IMDS client, monitors, hook runner, lifecycle completion.

Library use (the drill)::

    from spotkit.runtime.agent import AgentConfig, run_until_notice
    result = run_until_notice("http://127.0.0.1:8111", AgentConfig(on_notice="./checkpoint.sh",
                              workload_pidfile="/run/train.pid", interval=0.2))
    result.hook_started_at - result.detected_at
"""

from spotkit.runtime.agent.core import Agent, AgentConfig, AgentResult, run_until_notice  # noqa: F401
from spotkit.runtime.agent.imds import ImdsClient, ImdsError, ImdsUnreachable  # noqa: F401
from spotkit.runtime.agent.log import JsonLogger  # noqa: F401
from spotkit.runtime.agent.notices import Notice  # noqa: F401
