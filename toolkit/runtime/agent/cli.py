"""The agent's own command line: what ``python3 -I -S spotkit-agent.pyz [options]`` runs on an instance.

Standard library only (argparse), the same options as ``spotkit agent`` plus spotkit's global
``--region``, ``--profile`` and ``--endpoint-url``. Bad options exit 2 with a usage line that names the
option (argparse), never a traceback.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Optional, Sequence

from spotkit.runtime.agent.clouds import options  # standard library only, like the rest of the agent
from spotkit.runtime.agent.clouds.detect import CloudNotDetected
from spotkit.runtime.agent.defaults import POLL_INTERVAL_SECONDS

SIGNALS = ("SIGTERM", "SIGINT", "SIGUSR1", "SIGUSR2", "SIGHUP")


def _token_ttl(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 21600:
        raise argparse.ArgumentTypeError(f"{value} is not between 1 and 21600")
    return value


def _pgid(text: str) -> int:
    from spotkit.runtime.agent.runner import WorkloadRefused, check_pgid

    try:
        return check_pgid(int(text))
    except ValueError as exc:  # WorkloadRefused is a ValueError; int() too
        if isinstance(exc, WorkloadRefused):
            raise argparse.ArgumentTypeError(str(exc)) from None
        raise argparse.ArgumentTypeError(f"{text!r} is not a process group id") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="spotkit-agent.pyz",
        description="Watch instance metadata for interruption notices; checkpoint, signal and drain. Logs JSON lines.")
    a = p.add_argument
    a("--metadata-url", default="http://169.254.169.254", help="IMDS base URL (a local `spotkit imds-mock` to rehearse).")
    a("--on-notice", metavar="CMD",
      help="Shell command run once on a spot, Auto Scaling or maintenance notice, killed at the deadline.")
    a("--on-rebalance", metavar="CMD", help="Shell command run on a rebalance recommendation.")
    a("--interval", type=float, default=POLL_INTERVAL_SECONDS,
      help=f"Seconds between polls (default {POLL_INTERVAL_SECONDS:g}).")
    a("--margin", type=float, default=None, help=options.MARGIN_HELP)
    a("--once", action="store_true", help="Exit after the first drain.")
    a("--workload-pgid", type=_pgid, help="Process group that gets the signal after the hook (2 or more, not ours).")
    a("--workload-pidfile", help="File with the workload's pid; its process group gets the signal after the hook.")
    a("--signal", dest="workload_signal", default="SIGTERM", choices=SIGNALS, help="Signal sent to the workload.")
    a("--signal-on-hibernate", action="store_true",
      help="Also signal the workload on a spot hibernate notice (default: leave it running, memory is kept).")
    a("--group", dest="group_name", help="Auto Scaling group (default: the instance tag aws:autoscaling:groupName).")
    a("--lifecycle-hook", default="spotkit-drain", help="Lifecycle hook to complete (default spotkit-drain).")
    a("--lifecycle-heartbeat", type=float, default=300,
      help="Seconds the group waits for the instance: the deadline of an Auto Scaling termination (default 300).")
    a("--no-complete-lifecycle", action="store_true", help="Do not complete the lifecycle action.")
    a("--maintenance-lead", type=float, default=900,
      help="Act on a scheduled maintenance event this many seconds before it starts (default 900).")
    a("--token-ttl", type=_token_ttl, default=21600, help="IMDSv2 token lifetime in seconds (default 21600).")
    a("--allow-imdsv1", action="store_true", help="Fall back to IMDSv1 if the token request is refused.")
    a("--state-file", help="Remember handled notices across restarts (the systemd unit uses /var/lib/spotkit).")
    a("--dry-run", action="store_true", help="Run hooks, but only log what would have been signaled and completed.")
    a("--notice-policy", choices=("checkpoint-and-continue", "stop"), default="stop",
      help="stop: signal the workload right after the hook; checkpoint-and-continue: the hook is an insurance "
           "checkpoint, the workload keeps training and is signalled at the deadline minus the checkpoint time.")
    a("--checkpoint-seconds", type=float,
      help="checkpoint-and-continue: the least time the final checkpoint is given (default: the hook's measured time).")
    options.add_arguments(a)
    a("--region", help="AWS region for the lifecycle completion (default: from IMDS).")
    a("--profile", help="AWS profile (boto3 only).")
    a("--endpoint-url", help="AWS endpoint for the lifecycle completion (an emulator).")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    from spotkit.runtime.agent.core import Agent, AgentConfig
    from spotkit.runtime.agent.lifecycle import REGION_PATH, autoscaling_client
    from spotkit.runtime.agent.log import JsonLogger

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        cloud = options.resolve_cloud(args.cloud, args.metadata_url)
    except CloudNotDetected as exc:
        parser.error(str(exc))
    margin = options.default_margin(cloud) if args.margin is None else args.margin
    try:
        config = AgentConfig(on_notice=args.on_notice, on_rebalance=args.on_rebalance, interval=args.interval,
                             margin=margin, once=args.once, workload_pgid=args.workload_pgid,
                             workload_pidfile=args.workload_pidfile, workload_signal=args.workload_signal,
                             signal_on_hibernate=args.signal_on_hibernate,
                             complete_lifecycle=not args.no_complete_lifecycle, group_name=args.group_name,
                             lifecycle_hook=args.lifecycle_hook, lifecycle_heartbeat=args.lifecycle_heartbeat,
                             maintenance_lead=args.maintenance_lead, state_file=args.state_file,
                             dry_run=args.dry_run, notice_policy=args.notice_policy,
                             checkpoint_seconds=args.checkpoint_seconds, **options.config_kwargs(cloud, args))
        imds = options.metadata_client(cloud, args.metadata_url, token_ttl=args.token_ttl, allow_v1=args.allow_imdsv1)
    except ValueError as exc:
        parser.error(str(exc))

    def autoscaling():
        # Built only when a lifecycle action must be completed; the region comes from IMDS on an instance.
        region = args.region or (imds.get_text(REGION_PATH) or "").strip() or None
        return autoscaling_client(region=region, endpoint_url=args.endpoint_url, profile=args.profile)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    result = Agent(imds, config, autoscaling=autoscaling, log=JsonLogger()).run(stop)
    del result  # logged as it happened
    return 0


if __name__ == "__main__":  # python3 -m spotkit.runtime.agent.cli
    sys.exit(main())
