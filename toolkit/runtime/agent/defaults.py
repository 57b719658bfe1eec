"""The agent's defaults that more than one place needs: one home, read by ``AgentConfig``, both agent
command lines (``spotkit agent`` and the stdlib one in ``spotkit-agent.pyz``), the systemd unit's argv
(``spotkit.runtime.agent.systemd``) and the user data settings (``spotkit.constructs.agent_user_data``).

Standard library only, Python 3.9: shipped in the agent artifact.

``POLL_INTERVAL_SECONDS``: seconds between metadata polls. 0.5 s: the delay from a notice to the hook is
at most one interval (about half of it on average), so 0.5 s keeps it near half a second where 2 s
gave up to 2 s of a 120 s (AWS) or 30 s (GCP, Azure) window; a poll is one local HTTP request per
monitor, so idle cost stays far below 1 % of a core. Azure asks for polls at least once a second.
"""

from __future__ import annotations

POLL_INTERVAL_SECONDS = 0.5
