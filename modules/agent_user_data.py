"""The boot-script part that installs the interruption agent and starts it under systemd.

``SpotComputeGroup`` adds it by default (``ComputeGroupSettings.install_agent``). The part:

1. makes a venv in ``/opt/spotkit`` and ``pip install``s ``package_spec`` into it (default ``spotkit``
   from PyPI; a pinned version, an ``https://`` wheel URL, or an ``s3://`` wheel copied with the AWS CLI);
2. writes ``/etc/spotkit/on-notice`` if absent: a placeholder hook that only logs (replace it with your
   checkpoint command, or set ``on_notice``);
3. writes ``/etc/systemd/system/spotkit-agent.service`` and enables it now.

A failed install is logged and leaves the rest of the boot script running: an instance without its agent
still trains, it only loses the checkpoint-on-notice.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Optional

from modules.user_data import UserDataPart
from toolkit.agent.systemd import UNIT_NAME, VENV, agent_command, render_unit
from toolkit import __version__
from toolkit.errors import ValidationError

DEFAULT_HOOK = "/etc/spotkit/on-notice"
DEFAULT_PIDFILE = "/run/spotkit/workload.pid"

_PLACEHOLDER_HOOK = """#!/bin/sh
# spotkit placeholder checkpoint hook: replace with your own (it runs once per notice, killed at the deadline).
# Environment: SPOTKIT_NOTICE_KIND, SPOTKIT_NOTICE_TIME, SPOTKIT_DEADLINE (ISO 8601 UTC).
echo "spotkit notice: kind=$SPOTKIT_NOTICE_KIND time=$SPOTKIT_NOTICE_TIME deadline=$SPOTKIT_DEADLINE"
"""


@dataclass(frozen=True)
class AgentSettings:
    """How the agent is installed and what it runs.

    - ``package_spec``: what pip installs. Default ``spotkit==<this version>``, pinned so an instance never
      installs a different release (or another project's package of the same name); spotkit is not yet
      published on PyPI, so until it is, give an ``https://``
      wheel URL, or ``s3://bucket/spotkit-0.1.0-py3-none-any.whl`` (copied with the AWS CLI first; the
      instance role then needs s3:GetObject on it).
    - ``on_notice``: command run on a spot/Auto Scaling/maintenance notice. Default ``/etc/spotkit/on-notice``,
      a placeholder that logs, created when absent.
    - ``on_rebalance``: command run on a rebalance recommendation. Default: none.
    - ``interval``: seconds between IMDS polls. Default 2.
    - ``margin``: the hook's deadline is the notice time minus this. Default 15.
    - ``workload_pidfile``: the training process writes its pid here; its process group gets SIGTERM after
      the hook. Default ``/run/spotkit/workload.pid`` (a missing file is logged, not fatal).
    - ``notice_policy``: ``stop`` (SIGTERM right after the hook) or ``checkpoint-and-continue`` (the hook is
      an insurance checkpoint, SIGTERM comes at the deadline minus the checkpoint time;
      ``toolkit.agent.policy``). Default: the stack's (training: checkpoint-and-continue, others: stop).
    - ``checkpoint_seconds``: for checkpoint-and-continue, the least time the final checkpoint is given
      (the longer of it and the hook's measured time). Default: the stack's (training: 60).
    """

    package_spec: str = f"spotkit=={__version__}"
    on_notice: str = DEFAULT_HOOK
    on_rebalance: Optional[str] = None
    interval: float = 2.0
    margin: float = 15.0
    workload_pidfile: Optional[str] = DEFAULT_PIDFILE
    notice_policy: Optional[str] = None
    checkpoint_seconds: Optional[float] = None


def validate_agent_settings(where: str, s: AgentSettings) -> None:
    if not s.package_spec.strip() or any(c in s.package_spec for c in "\n'\"`$;&|"):
        raise ValidationError(f"{where}: agent.package_spec {s.package_spec!r} must be one pip requirement or URL "
                              "without quotes, newlines or shell characters (e.g. spotkit==0.1.0)")
    if not s.on_notice.strip() or "\n" in s.on_notice:
        raise ValidationError(f"{where}: agent.on_notice must be one command line (got {s.on_notice!r})")
    if s.on_rebalance is not None and (not s.on_rebalance.strip() or "\n" in s.on_rebalance):
        raise ValidationError(f"{where}: agent.on_rebalance must be one command line or None (got {s.on_rebalance!r})")
    if not 0.1 <= s.interval <= 30:
        raise ValidationError(f"{where}: agent.interval must be between 0.1 and 30 seconds (got {s.interval}); "
                              "a spot notice comes 120 s ahead, 2 s is the default")
    if s.notice_policy is not None and s.notice_policy not in ("checkpoint-and-continue", "stop"):
        raise ValidationError(f"{where}: agent.notice_policy must be checkpoint-and-continue or stop "
                              f"(got {s.notice_policy!r})")
    if s.checkpoint_seconds is not None and not 0 <= s.checkpoint_seconds < 120 - s.margin:
        raise ValidationError(f"{where}: agent.checkpoint_seconds must be between 0 and {120 - s.margin:g} "
                              f"(120 s notice minus agent.margin; got {s.checkpoint_seconds})")
    if not 0 <= s.margin < 120:
        raise ValidationError(f"{where}: agent.margin must be between 0 and 119 seconds (got {s.margin}): "
                              "a spot notice comes 120 s before the instance goes")


def agent_user_data_part(settings: AgentSettings = AgentSettings(), *, lifecycle_heartbeat: int = 300,
                         order: int = 80) -> UserDataPart:
    """The ``spotkit-agent`` user data part (runs late: after mounts, before the workload starts)."""
    s = settings
    argv = agent_command(on_notice=s.on_notice, on_rebalance=s.on_rebalance, interval=s.interval, margin=s.margin,
                         workload_pidfile=s.workload_pidfile, lifecycle_heartbeat=lifecycle_heartbeat,
                         notice_policy=s.notice_policy, checkpoint_seconds=s.checkpoint_seconds)
    unit = render_unit(argv).replace("StateDirectory=spotkit\n",
                                     "StateDirectory=spotkit\nRuntimeDirectory=spotkit\nRuntimeDirectoryPreserve=yes\n")
    script = f"""
# The interruption agent: checkpoint hook + SIGTERM + lifecycle completion on spot/ASG notices.
SPOTKIT_PACKAGE={shlex.quote(s.package_spec)}
install_spotkit_agent() {{
  command -v python3 >/dev/null 2>&1 || dnf install -y python3 || yum install -y python3 || apt-get install -y python3 python3-venv
  python3 -m venv {VENV} || {{ apt-get install -y python3-venv && python3 -m venv {VENV}; }} || return 1
  case "$SPOTKIT_PACKAGE" in
    s3://*) spotkit_dl=$(mktemp -d) || return 1  # private (0700), unpredictable: never a fixed /tmp path as root
            aws s3 cp "$SPOTKIT_PACKAGE" "$spotkit_dl/" || return 1
            SPOTKIT_PACKAGE="$spotkit_dl/$(basename "$SPOTKIT_PACKAGE")" ;;
  esac
  {VENV}/bin/pip install --quiet --upgrade pip && {VENV}/bin/pip install --quiet "$SPOTKIT_PACKAGE"
  spotkit_rc=$?
  [ -n "${{spotkit_dl:-}}" ] && rm -rf "$spotkit_dl"
  return $spotkit_rc
}}
if install_spotkit_agent; then
  mkdir -p /etc/spotkit
  if [ ! -e {DEFAULT_HOOK} ]; then
cat > {DEFAULT_HOOK} <<'SPOTKIT_HOOK'
{_PLACEHOLDER_HOOK.rstrip()}
SPOTKIT_HOOK
    chmod 0755 {DEFAULT_HOOK}
  fi
cat > /etc/systemd/system/{UNIT_NAME} <<'SPOTKIT_UNIT'
{unit.rstrip()}
SPOTKIT_UNIT
  systemctl daemon-reload
  systemctl enable --now {UNIT_NAME}
else
  echo "spotkit-agent: installing $SPOTKIT_PACKAGE failed; the instance runs without its interruption agent" >&2
fi
"""
    return UserDataPart(name="spotkit-agent", script=script, order=order)
