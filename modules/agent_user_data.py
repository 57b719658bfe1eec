"""The boot-script part that installs the interruption agent and starts it under systemd.

``SpotComputeGroup`` adds it by default (``ComputeGroupSettings.install_agent``). By default the agent is
the zipapp the stack ships (``spotkit.constructs.agent_artifact``): no pip and no package index at boot. The part:

1. downloads ``s3://<the stack's agent bucket>/agent/<sha256>/spotkit-agent.pyz`` with the AWS CLI (the
   instance role may ``s3:GetObject`` that one key; private subnets reach S3 through the VPC's gateway
   endpoint) into a ``mktemp`` file, checks its sha256 against the one written here at synthesis, and
   refuses a mismatch with a ``spotkit-agent: REFUSED`` line; then installs it as
   ``/opt/spotkit/spotkit-agent.pyz``;
2. writes ``/etc/spotkit/on-notice`` if absent: a placeholder hook that only logs (replace it with your
   checkpoint command, or set ``on_notice``);
3. writes ``/etc/systemd/system/spotkit-agent.service`` (``/usr/bin/python3 -I -S
   /opt/spotkit/spotkit-agent.pyz ...``: Python 3.9+, standard library only) and enables it now.

``package_spec`` is the opt-in for teams that publish their own build: then the part makes a venv and
``pip install``s it instead (a pinned version, an ``https://`` wheel URL, or an ``s3://`` wheel).

A failed download, a refused artifact or a failed install is logged and leaves the rest of the boot
script running: an instance without its agent still trains, it only loses the checkpoint-on-notice.
``SPOTKIT_ROOT`` (empty on an instance) and ``SPOTKIT_IMDS_URL`` let a test run the part for real.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Optional

from spotkit.constructs.user_data import UserDataPart
from spotkit.constructs.agent_artifact import AgentArtifactRef
from spotkit.runtime.agent.options import MARGIN_SECONDS, METADATA_URL, NOTICE_POLICIES, POLL_INTERVAL_SECONDS
from spotkit.runtime.agent.systemd import (ARTIFACT_NAME, PYZ_LAUNCHER, SYSTEM_PYTHON, UNIT_NAME, VENV, agent_command,
                                   render_unit)
from spotkit.errors import ValidationError
from spotkit.runtime.notice import DEFAULT_LIFECYCLE_SECONDS, SPOT_NOTICE_SECONDS

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

    - ``package_spec``: opt-in for teams that publish their own build: what pip installs into a venv at
      boot (``spotkit==0.1.0``, an ``https://`` wheel URL, or ``s3://bucket/spotkit-0.1.0-py3-none-any.whl``
      copied with the AWS CLI first; the instance role then needs s3:GetObject on it). Default: none, the
      zipapp the stack ships (``spotkit.constructs.agent_artifact``), verified by its sha256, no package index.
    - ``on_notice``: command run on a spot/Auto Scaling/maintenance notice. Default ``/etc/spotkit/on-notice``,
      a placeholder that logs, created when absent.
    - ``on_rebalance``: command run on a rebalance recommendation. Default: none.
    - ``interval``: seconds between IMDS polls. Default 0.5 (``spotkit.runtime.agent.options``).
    - ``margin``: the hook's deadline is the notice time minus this. Default 15.
    - ``workload_pidfile``: the training process writes its pid here; its process group gets SIGTERM after
      the hook. Default ``/run/spotkit/workload.pid`` (a missing file is logged, not fatal).
    - ``notice_policy``: ``stop`` (SIGTERM right after the hook) or ``checkpoint-and-continue`` (the hook is
      an insurance checkpoint, SIGTERM comes at the deadline minus the checkpoint time;
      ``spotkit.runtime.agent.policy``). Default: the stack's (training: checkpoint-and-continue, others: stop).
    - ``checkpoint_seconds``: for checkpoint-and-continue, the least time the final checkpoint is given
      (the longer of it and the hook's measured time). Default: the stack's (training: 60).
    """

    package_spec: Optional[str] = None
    on_notice: str = DEFAULT_HOOK
    on_rebalance: Optional[str] = None
    interval: float = POLL_INTERVAL_SECONDS
    margin: float = MARGIN_SECONDS["aws"]
    workload_pidfile: Optional[str] = DEFAULT_PIDFILE
    notice_policy: Optional[str] = None
    checkpoint_seconds: Optional[float] = None


def validate_agent_settings(where: str, s: AgentSettings) -> None:
    if s.package_spec is not None and (not s.package_spec.strip()
                                       or any(c in s.package_spec for c in "\n'\"`$;&|")):
        raise ValidationError(f"{where}: agent.package_spec {s.package_spec!r} must be one pip requirement or URL "
                              "without quotes, newlines or shell characters (e.g. spotkit==0.1.0)")
    if not s.on_notice.strip() or "\n" in s.on_notice:
        raise ValidationError(f"{where}: agent.on_notice must be one command line (got {s.on_notice!r})")
    if s.on_rebalance is not None and (not s.on_rebalance.strip() or "\n" in s.on_rebalance):
        raise ValidationError(f"{where}: agent.on_rebalance must be one command line or None (got {s.on_rebalance!r})")
    if not 0.1 <= s.interval <= 30:
        raise ValidationError(f"{where}: agent.interval must be between 0.1 and 30 seconds (got {s.interval}); "
                              f"a spot notice comes {SPOT_NOTICE_SECONDS} s ahead, {POLL_INTERVAL_SECONDS:g} s is the "
                              "default")
    if s.notice_policy is not None and s.notice_policy not in NOTICE_POLICIES:
        raise ValidationError(f"{where}: agent.notice_policy must be checkpoint-and-continue or stop "
                              f"(got {s.notice_policy!r})")
    if s.checkpoint_seconds is not None and not 0 <= s.checkpoint_seconds < SPOT_NOTICE_SECONDS - s.margin:
        raise ValidationError(f"{where}: agent.checkpoint_seconds must be between 0 and "
                              f"{SPOT_NOTICE_SECONDS - s.margin:g} ({SPOT_NOTICE_SECONDS} s notice minus agent.margin; "
                              f"got {s.checkpoint_seconds})")
    if not 0 <= s.margin < SPOT_NOTICE_SECONDS:
        raise ValidationError(f"{where}: agent.margin must be between 0 and {SPOT_NOTICE_SECONDS - 1} seconds "
                              f"(got {s.margin}): "
                              f"a spot notice comes {SPOT_NOTICE_SECONDS} s before the instance goes")


_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _hook_and_unit(unit: str) -> str:
    return f"""  mkdir -p $SPOTKIT_ROOT/etc/spotkit
  if [ ! -e $SPOTKIT_ROOT{DEFAULT_HOOK} ]; then
cat > $SPOTKIT_ROOT{DEFAULT_HOOK} <<'SPOTKIT_HOOK'
{_PLACEHOLDER_HOOK.rstrip()}
SPOTKIT_HOOK
    chmod 0755 $SPOTKIT_ROOT{DEFAULT_HOOK}
  fi
  mkdir -p $SPOTKIT_ROOT/etc/systemd/system
cat > $SPOTKIT_ROOT/etc/systemd/system/{UNIT_NAME} <<'SPOTKIT_UNIT'
{unit.rstrip()}
SPOTKIT_UNIT
  systemctl daemon-reload
  systemctl enable --now {UNIT_NAME}"""


def agent_user_data_part(settings: AgentSettings = AgentSettings(), *,
                         lifecycle_heartbeat: int = DEFAULT_LIFECYCLE_SECONDS,
                         order: int = 80, artifact: Optional[AgentArtifactRef] = None,
                         complete_lifecycle: bool = True) -> UserDataPart:
    """The ``spotkit-agent`` user data part (runs late: after mounts, before the workload starts).

    ``artifact``: the shipped zipapp (``AgentArtifact.ref``); required unless ``settings.package_spec``.
    ``complete_lifecycle``: off for a lone instance that no Auto Scaling group terminates.
    """
    s = settings
    if s.package_spec is None and artifact is None:
        raise ValueError("agent_user_data_part: give artifact (AgentArtifact.for_stack(scope).ref) "
                         "or settings.package_spec")
    if artifact is not None and not _SHA256.match(artifact.sha256):
        raise ValueError(f"agent_user_data_part: artifact.sha256 must be 64 lowercase hex digits "
                         f"(got {artifact.sha256!r})")
    argv = agent_command(on_notice=s.on_notice, on_rebalance=s.on_rebalance, interval=s.interval, margin=s.margin,
                         workload_pidfile=s.workload_pidfile, lifecycle_heartbeat=lifecycle_heartbeat,
                         notice_policy=s.notice_policy, checkpoint_seconds=s.checkpoint_seconds,
                         launcher=None if s.package_spec else PYZ_LAUNCHER,
                         complete_lifecycle=complete_lifecycle)
    unit = render_unit(argv).replace("StateDirectory=spotkit\n",
                                     "StateDirectory=spotkit\nRuntimeDirectory=spotkit\nRuntimeDirectoryPreserve=yes\n")
    if s.package_spec is None:
        return UserDataPart(name="spotkit-agent", script=_artifact_script(artifact, unit), order=order)
    return UserDataPart(name="spotkit-agent", script=_pip_script(s.package_spec, unit), order=order)


def _artifact_script(artifact: AgentArtifactRef, unit: str) -> str:
    return f"""
# The interruption agent (spotkit-agent.pyz, shipped by this stack): checkpoint hook + SIGTERM + lifecycle completion.
SPOTKIT_ROOT=${{SPOTKIT_ROOT:-}}
SPOTKIT_AGENT_S3="{artifact.s3_uri}"
SPOTKIT_AGENT_SHA256={artifact.sha256}
install_spotkit_agent() {{
  local md token region tmp got
  md=${{SPOTKIT_IMDS_URL:-{METADATA_URL}}}
  if [ ! -x {SYSTEM_PYTHON} ]; then
    echo "spotkit-agent: {SYSTEM_PYTHON} is missing (the agent needs Python 3.9+, standard library only)" >&2; return 1
  fi
  command -v aws >/dev/null 2>&1 || {{ echo "spotkit-agent: the AWS CLI is missing: cannot download $SPOTKIT_AGENT_S3" >&2; return 1; }}
  token=$(curl -sS -X PUT "$md/latest/api/token" -H "X-aws-ec2-metadata-token-ttl-seconds: 300")
  region=$(curl -sS -H "X-aws-ec2-metadata-token: $token" "$md/latest/meta-data/placement/region")
  mkdir -p $SPOTKIT_ROOT{VENV} && chmod 0755 $SPOTKIT_ROOT{VENV} || return 1
  tmp=$(mktemp $SPOTKIT_ROOT{VENV}/.spotkit-agent.XXXXXXXX) || return 1
  if ! aws s3 cp --only-show-errors --region "$region" "$SPOTKIT_AGENT_S3" "$tmp"; then
    echo "spotkit-agent: downloading $SPOTKIT_AGENT_S3 failed (the instance role may read that one key)" >&2
    rm -f "$tmp"; return 1
  fi
  got=$(sha256sum "$tmp" | cut -d' ' -f1)
  if [ "$got" != "$SPOTKIT_AGENT_SHA256" ]; then
    echo "spotkit-agent: REFUSED $SPOTKIT_AGENT_S3: its sha256 is $got, the stack shipped $SPOTKIT_AGENT_SHA256; the agent is not installed" >&2
    rm -f "$tmp"; return 1
  fi
  chmod 0644 "$tmp" && mv -f "$tmp" $SPOTKIT_ROOT{VENV}/{ARTIFACT_NAME}
}}
if install_spotkit_agent; then
{_hook_and_unit(unit)}
  echo "spotkit-agent: installed $SPOTKIT_AGENT_S3 (sha256 $SPOTKIT_AGENT_SHA256) and started {UNIT_NAME}"
else
  echo "spotkit-agent: not installed; the instance runs without its interruption agent (the rest of the boot goes on)" >&2
fi
"""


def _pip_script(package_spec: str, unit: str) -> str:
    return f"""
# The interruption agent from your own build (agent.package_spec): checkpoint hook + SIGTERM + lifecycle completion.
SPOTKIT_ROOT=${{SPOTKIT_ROOT:-}}
SPOTKIT_PACKAGE={shlex.quote(package_spec)}
install_spotkit_agent() {{
  local tmpdir
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
{_hook_and_unit(unit)}
else
  echo "spotkit-agent: installing $SPOTKIT_PACKAGE failed; the instance runs without its interruption agent" >&2
fi
"""
