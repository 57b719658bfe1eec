"""The agent's options: one table from which every agent command line is generated.

Three things start an agent, and all three come from ``OPTIONS`` here, so an option's name, type, default,
choices and help are written once:

- the standard-library command line shipped in ``spotkit-agent.pyz`` (``spotkit.runtime.agent.cli``: argparse,
  ``add_to_argparse``);
- ``spotkit agent`` (``spotkit.cli.agent_cmd``: click options made from the same rows);
- the systemd unit's argv (``spotkit.runtime.agent.systemd.agent_command``, rendered by
  ``spotkit.constructs.agent_user_data``): ``to_argv`` writes values back as options the two parsers read.

Both parsers give a dict of option values (``dest`` -> value); ``agent_setup`` turns it into the cloud,
the ``AgentConfig`` and the metadata client, so both command lines build the agent the same way and
report the same ``ValueError`` messages (argparse: exit 2; click: exit 1 with a ``next:`` hint).

The defaults below are the agent's own, read by ``AgentConfig`` and ``spotkit.constructs.agent_user_data`` too:

- ``POLL_INTERVAL_SECONDS`` 0.5: seconds between metadata polls. The delay from a notice to the hook is at
  most one interval (about half of it on average), so 0.5 s keeps it near half a second where 2 s gave up
  to 2 s of a 120 s (AWS) or 30 s (GCP, Azure) window; a poll is one local HTTP request per monitor, so
  idle cost stays far below 1 % of a core. Azure asks for polls at least once a second.
- ``METADATA_URL``: the link-local metadata address of all three clouds (``spotkit.runtime.agent.imds``).
- ``MARGIN_SECONDS``: the hook's deadline is the notice time minus this: 15 s of AWS's 120 s notice, 5 s
  of GCP's and Azure's 30 s.
- ``MAINTENANCE_LEAD_SECONDS`` 900: act on a scheduled maintenance event 15 minutes before it starts.
- ``TOKEN_TTL_SECONDS`` 21600: IMDSv2's longest token lifetime (refreshed before it expires; ``spotkit.runtime.agent.imds``).
- ``WAIT_SECONDS`` 10: GCP's longest hanging GET before asking again.
- the lifecycle hook and its heartbeat: ``spotkit.runtime.notice`` (the stacks create the hook the agent completes).

Standard library only, Python 3.9: shipped in the agent artifact.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Sequence

from spotkit.runtime.agent.clouds import CHOICES as CLOUD_CHOICES
from spotkit.runtime.agent.imds import DEFAULT_METADATA_URL, MAX_TOKEN_TTL_SECONDS
from spotkit.runtime.notice import DEFAULT_LIFECYCLE_SECONDS, DRAIN_HOOK_NAME

DESCRIPTION = "Watch instance metadata for interruption notices; checkpoint, signal and drain. Logs JSON lines."
POLL_INTERVAL_SECONDS = 0.5
METADATA_URL = DEFAULT_METADATA_URL
MARGIN_SECONDS = {"aws": 15.0, "gcp": 5.0, "azure": 5.0}
MAINTENANCE_LEAD_SECONDS = 900.0
TOKEN_TTL_SECONDS = MAX_TOKEN_TTL_SECONDS
WAIT_SECONDS = 10.0
SIGNALS = ("SIGTERM", "SIGINT", "SIGUSR1", "SIGUSR2", "SIGHUP")
NOTICE_POLICIES = ("checkpoint-and-continue", "stop")


def token_ttl(text: str) -> int:
    """An IMDSv2 token lifetime: whole seconds, 1 to 21600."""
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a whole number of seconds") from None
    if not 1 <= value <= TOKEN_TTL_SECONDS:
        raise ValueError(f"{value} is not between 1 and {TOKEN_TTL_SECONDS}")
    return value


def process_group(text: str) -> int:
    """A process group the agent may signal (``spotkit.runtime.agent.runner.check_pgid``)."""
    from spotkit.runtime.agent.runner import check_pgid

    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a process group id") from None
    return check_pgid(value)  # WorkloadRefused is a ValueError that says why


def file_path(text: str) -> str:
    """A file's path (it need not exist yet); a directory is refused."""
    if os.path.isdir(text):
        raise ValueError(f"{text!r} is a directory, not a file")
    return text


@dataclass(frozen=True)
class Option:
    """One row: ``flag`` and ``dest`` (the value's name), ``convert`` (text -> value, raises ValueError with
    the message a user sees; None for a bare ``flag``-only switch, see ``switch``), ``default``,
    ``choices``, ``metavar`` and ``help`` (without the default: each parser shows it its own way).
    ``switch``: takes no value, True when given. ``global_``: spotkit's global options (``--region``,
    ``--profile``, ``--endpoint-url``), which ``spotkit agent`` takes before the command, so only the
    standalone command line declares them."""

    flag: str
    dest: str
    help: str
    convert: Optional[Callable[[str], Any]] = str
    default: Any = None
    choices: Sequence[str] = ()
    metavar: Optional[str] = None
    switch: bool = False
    global_: bool = False


def _switch(flag: str, help: str, dest: Optional[str] = None) -> Option:
    return Option(flag, dest or flag[2:].replace("-", "_"), help, convert=None, default=False, switch=True)


def _opt(flag: str, help: str, **kw: Any) -> Option:
    return Option(flag, kw.pop("dest", flag[2:].replace("-", "_")), help, **kw)


OPTIONS: tuple = (
    _opt("--cloud", "Whose metadata service to read: aws, gcp, azure, or auto (probe each with its header and a "
         "short timeout).", default="aws", choices=CLOUD_CHOICES),
    _opt("--metadata-url", "IMDS base URL (a local `spotkit imds-mock` to rehearse).", default=METADATA_URL),
    _opt("--on-notice", "Shell command run once on a spot, Auto Scaling or maintenance notice, killed at the "
         "deadline.", metavar="CMD"),
    _opt("--on-rebalance", "Shell command run on a rebalance recommendation.", metavar="CMD"),
    _opt("--on-advisory", "Shell command run on an event the VM survives with its memory (Azure Freeze, GCP live "
         "migration); reboots are drained like other notices.", metavar="CMD"),
    _opt("--interval", "Seconds between polls.", convert=float, default=POLL_INTERVAL_SECONDS),
    _opt("--margin", "The hook's deadline is the notice time minus this many seconds. Default 15 on AWS, 5 on GCP "
         "and Azure (30 s notices).", convert=float),
    _opt("--notice-seconds", "GCP/Azure: seconds from detection to the end where the platform gives no time "
         "(default 30).", convert=float),
    _opt("--wait-seconds", "GCP: longest hanging GET (wait_for_change) before asking again.", convert=float,
         default=WAIT_SECONDS),
    _switch("--once", "Exit after the first drain."),
    _opt("--workload-pgid", "Process group that gets the signal after the hook (2 or more, not the agent's own).",
         convert=process_group),
    _opt("--workload-pidfile", "File with the workload's pid; its process group gets the signal after the hook.",
         convert=file_path),
    _opt("--signal", "Signal sent to the workload.", dest="workload_signal", default="SIGTERM", choices=SIGNALS),
    _switch("--signal-on-hibernate", "Also signal the workload on a spot hibernate notice (default: leave it "
            "running, memory is kept)."),
    _opt("--group", "Auto Scaling group (default: the instance tag aws:autoscaling:groupName).", dest="group_name"),
    _opt("--lifecycle-hook", "Lifecycle hook to complete.", default=DRAIN_HOOK_NAME),
    _opt("--lifecycle-heartbeat", "Seconds the group waits for the instance: the deadline of an Auto Scaling "
         "termination.", convert=float, default=float(DEFAULT_LIFECYCLE_SECONDS)),
    _switch("--no-complete-lifecycle", "Do not complete the lifecycle action."),
    _opt("--maintenance-lead", "Act on a scheduled maintenance event this many seconds before it starts.",
         convert=float, default=MAINTENANCE_LEAD_SECONDS),
    _opt("--token-ttl", "IMDSv2 token lifetime in seconds (refreshed before it expires).", convert=token_ttl,
         default=TOKEN_TTL_SECONDS),
    _switch("--allow-imdsv1", "Fall back to IMDSv1 if the token request is refused."),
    _opt("--state-file", "Remember handled notices across restarts (the systemd unit uses /var/lib/spotkit).",
         convert=file_path),
    _switch("--dry-run", "Run hooks, but only log what would have been signaled and completed."),
    _opt("--notice-policy", "stop: signal the workload right after the hook. checkpoint-and-continue: the hook is "
         "an insurance checkpoint, the workload keeps training and is signaled at the deadline minus the "
         "checkpoint time.", default="stop", choices=NOTICE_POLICIES),
    _opt("--checkpoint-seconds", "checkpoint-and-continue: estimated seconds of one checkpoint (the longer of it "
         "and the measured hook time is used; needed without --on-notice).", convert=float),
    _opt("--region", "AWS region for the lifecycle completion (default: from IMDS).", global_=True),
    _opt("--profile", "AWS profile (boto3 only).", global_=True),
    _opt("--endpoint-url", "AWS endpoint for the lifecycle completion (an emulator).", global_=True),
)
BY_DEST = {o.dest: o for o in OPTIONS}
DEFAULTS = {o.dest: o.default for o in OPTIONS}


def help_text(option: Option) -> str:
    """An option's help as both command lines show it: the row's help, then ``(default X)`` where it has a
    value (not for switches, nor for None: those rows say in words what happens)."""
    if option.switch or option.default is None:
        return option.help
    shown = f"{option.default:g}" if isinstance(option.default, float) else str(option.default)
    return f"{option.help} (default {shown})"


def _argparse_type(convert: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return convert(text)
        except ValueError as exc:  # argparse shows an ArgumentTypeError's message as is
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = convert.__name__  # argparse names the type in a few messages
    return parse


def add_to_argparse(parser: argparse.ArgumentParser, *, include_global: bool = True) -> None:
    """Add every option of the table to ``parser`` (``include_global``: also --region, --profile, --endpoint-url)."""
    for o in OPTIONS:
        if o.global_ and not include_global:
            continue
        if o.switch:
            parser.add_argument(o.flag, dest=o.dest, action="store_true", help=help_text(o))
            continue
        kw: dict = {"dest": o.dest, "default": o.default, "help": help_text(o)}
        if o.choices:
            kw["choices"] = tuple(o.choices)
        elif o.convert is not str:
            kw["type"] = _argparse_type(o.convert)
        if o.metavar:
            kw["metavar"] = o.metavar
        parser.add_argument(o.flag, **kw)


def to_argv(values: Mapping[str, Any]) -> list:
    """Options that give ``values`` (``dest`` -> value) to either parser, in the table's order.

    None and False are left out (the parser's default then applies: None, or a switch not given);
    floats are written with ``:g``. Unknown names raise ``KeyError``: a typo must not vanish from a unit.
    """
    unknown = sorted(set(values) - set(BY_DEST))
    if unknown:
        raise KeyError(f"not agent options: {', '.join(unknown)}")
    argv: list = []
    for o in OPTIONS:
        value = values.get(o.dest)
        if value is None or value is False:
            continue
        if o.switch:
            argv.append(o.flag)
        else:
            argv += [o.flag, f"{value:g}" if isinstance(value, float) else str(value)]
    return argv


def resolve_cloud(cloud: str, metadata_url: str) -> str:
    """``cloud``, or for ``auto`` the one the metadata service answers as (raises CloudNotDetected)."""
    from spotkit.runtime.agent.clouds.detect import detect_cloud

    return detect_cloud(metadata_url) if cloud == "auto" else cloud


def default_margin(cloud: str) -> float:
    """15 s of AWS's 120 s notice; 5 s of GCP's and Azure's 30 s."""
    return MARGIN_SECONDS[cloud]


def agent_config(values: Mapping[str, Any], cloud: str):
    """The ``AgentConfig`` of parsed option values for ``cloud`` (already resolved from ``auto``).

    Raises ``ValueError`` with the message a user sees (``AgentConfig`` validates)."""
    from spotkit.runtime.agent.core import AgentConfig

    v = {**DEFAULTS, **values}
    return AgentConfig(
        on_notice=v["on_notice"], on_rebalance=v["on_rebalance"], interval=v["interval"],
        margin=default_margin(cloud) if v["margin"] is None else v["margin"], once=v["once"],
        workload_pgid=v["workload_pgid"], workload_pidfile=v["workload_pidfile"],
        workload_signal=v["workload_signal"], signal_on_hibernate=v["signal_on_hibernate"],
        complete_lifecycle=not v["no_complete_lifecycle"], group_name=v["group_name"],
        lifecycle_hook=v["lifecycle_hook"], lifecycle_heartbeat=v["lifecycle_heartbeat"],
        maintenance_lead=v["maintenance_lead"], state_file=v["state_file"], dry_run=v["dry_run"],
        notice_policy=v["notice_policy"], checkpoint_seconds=v["checkpoint_seconds"], cloud=cloud,
        on_advisory=v["on_advisory"], notice_seconds=v["notice_seconds"], wait_seconds=v["wait_seconds"])


def metadata_client(cloud: str, metadata_url: str, *, token_ttl: int = TOKEN_TTL_SECONDS, allow_v1: bool = False):
    """AWS: the IMDSv2 client; GCP/Azure: a client sending their metadata header."""
    if cloud == "aws":
        from spotkit.runtime.agent.imds import ImdsClient

        return ImdsClient(metadata_url, token_ttl=token_ttl, allow_v1=allow_v1)
    from spotkit.runtime.agent.clouds import client_for

    return client_for(cloud, metadata_url)


def agent_setup(values: Mapping[str, Any]):
    """``(cloud, AgentConfig, metadata client)`` from parsed option values: what both command lines run.

    Raises ``CloudNotDetected`` (``--cloud auto`` found none) or ``ValueError`` (a bad value)."""
    v = {**DEFAULTS, **values}
    cloud = resolve_cloud(v["cloud"], v["metadata_url"])
    config = agent_config(v, cloud)
    imds = metadata_client(cloud, v["metadata_url"], token_ttl=v["token_ttl"], allow_v1=v["allow_imdsv1"])
    return cloud, config, imds
