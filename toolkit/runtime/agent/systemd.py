"""The systemd unit that runs the agent on an instance (rendered by modules/agent_user_data.py)."""

from __future__ import annotations

import shlex
from typing import Optional, Sequence

from spotkit.runtime.agent.options import MARGIN_SECONDS, METADATA_URL, POLL_INTERVAL_SECONDS, to_argv
from spotkit.runtime.notice import DEFAULT_LIFECYCLE_SECONDS

# Where the agent lives on an instance (the user data installs it there, the unit runs it from there).
UNIT_NAME = "spotkit-agent.service"
VENV = "/opt/spotkit"                     # the install directory (a venv only with agent.package_spec)
ARTIFACT_NAME = "spotkit-agent.pyz"       # the shipped zipapp (modules.agent_artifact builds it)
SYSTEM_PYTHON = "/usr/bin/python3"        # Python 3.9+, run isolated (-I -S): standard library only
STATE_FILE = "/var/lib/spotkit/agent-state.json"
PYZ_LAUNCHER = (SYSTEM_PYTHON, "-I", "-S", f"{VENV}/{ARTIFACT_NAME}")


def agent_command(*, on_notice: str, on_rebalance: Optional[str] = None, interval: float = POLL_INTERVAL_SECONDS,
                  margin: float = MARGIN_SECONDS["aws"], workload_pidfile: Optional[str] = None,
                  lifecycle_heartbeat: float = DEFAULT_LIFECYCLE_SECONDS, executable: str = f"{VENV}/bin/spotkit",
                  extra_args: Sequence[str] = (), launcher: Optional[Sequence[str]] = None,
                  notice_policy: Optional[str] = None, checkpoint_seconds: Optional[float] = None,
                  complete_lifecycle: bool = True) -> list:
    """The argv of the agent as the unit runs it: ``launcher`` (e.g. ``PYZ_LAUNCHER``, the shipped zipapp)
    followed by the options, or ``executable agent`` and the options (a pip-installed spotkit).

    The options are written by ``spotkit.runtime.agent.options.to_argv`` from the agent's option table, in its
    order; the metadata URL, poll interval, margin, heartbeat and state file are always written out, so
    the unit says what the agent runs with."""
    head = list(launcher) if launcher else [executable, "agent"]
    values = {"metadata_url": METADATA_URL, "on_notice": on_notice, "on_rebalance": on_rebalance or None,
              "interval": interval, "margin": margin, "workload_pidfile": workload_pidfile or None,
              "lifecycle_heartbeat": lifecycle_heartbeat, "no_complete_lifecycle": not complete_lifecycle,
              "state_file": STATE_FILE, "notice_policy": notice_policy, "checkpoint_seconds": checkpoint_seconds}
    return head + to_argv(values) + list(extra_args)


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
