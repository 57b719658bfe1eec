"""The systemd unit that runs the agent on an instance (rendered by modules/agent_user_data.py)."""

from __future__ import annotations

import shlex
from typing import Optional, Sequence

from spotkit.runtime.agent.defaults import POLL_INTERVAL_SECONDS

UNIT_NAME = "spotkit-agent.service"
VENV = "/opt/spotkit"
STATE_FILE = "/var/lib/spotkit/agent-state.json"


PYZ_LAUNCHER = ("/usr/bin/python3", "-I", "-S", f"{VENV}/spotkit-agent.pyz")


def agent_command(*, on_notice: str, on_rebalance: Optional[str] = None, interval: float = POLL_INTERVAL_SECONDS, margin: float = 15.0,
                  workload_pidfile: Optional[str] = None, lifecycle_heartbeat: int = 300,
                  executable: str = f"{VENV}/bin/spotkit", extra_args: Sequence[str] = (),
                  launcher: Optional[Sequence[str]] = None, notice_policy: Optional[str] = None,
                  checkpoint_seconds: Optional[float] = None) -> list[str]:
    """The argv of the agent as the unit runs it: ``launcher`` (e.g. ``PYZ_LAUNCHER``, the shipped zipapp)
    followed by the options, or ``executable agent`` and the options (a pip-installed spotkit)."""
    head = list(launcher) if launcher else [executable, "agent"]
    argv = head + ["--metadata-url", "http://169.254.169.254", "--on-notice", on_notice,
            "--interval", f"{interval:g}", "--margin", f"{margin:g}", "--lifecycle-heartbeat", str(lifecycle_heartbeat),
            "--state-file", STATE_FILE]
    if on_rebalance:
        argv += ["--on-rebalance", on_rebalance]
    if workload_pidfile:
        argv += ["--workload-pidfile", workload_pidfile]
    if notice_policy:
        argv += ["--notice-policy", notice_policy]
    if checkpoint_seconds is not None:
        argv += ["--checkpoint-seconds", f"{checkpoint_seconds:g}"]
    return argv + list(extra_args)


def _systemd_quote(arg: str) -> str:
    """Quote one ExecStart argument: systemd splits like a shell; ``%`` and ``$`` are its own specifiers."""
    quoted = shlex.quote(arg) if arg and all(c.isalnum() or c in "-_./:=,@+" for c in arg) else \
        '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return quoted.replace("%", "%%").replace("$", "$$")


def render_unit(argv: Sequence[str], *, description: str = "spotkit interruption agent") -> str:
    """A unit that starts early, restarts forever, and lets the agent kill its own hooks.

    ``KillMode=mixed``: on stop, SIGTERM goes to the agent only, and SIGKILL to what is left; the
    agent has already killed late hooks by then. ``Restart=always`` with no start limit: the agent must
    survive anything until the instance is gone (its state file keeps a hook from running twice).
    """
    return "\n".join([
        "[Unit]",
        f"Description={description}",
        "Wants=network-online.target",
        "After=network-online.target",
        "StartLimitIntervalSec=0",
        "",
        "[Service]",
        "Type=simple",
        "ExecStart=" + " ".join(_systemd_quote(a) for a in argv),
        "Restart=always",
        "RestartSec=2",
        "KillMode=mixed",
        "StateDirectory=spotkit",
        "Environment=PYTHONUNBUFFERED=1",
        "Nice=-5",
        "StandardOutput=journal",
        "StandardError=journal",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ])
