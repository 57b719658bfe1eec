"""``spotkit agent`` (the on-instance interruption agent) and ``spotkit imds-mock`` (a local IMDS)."""

from __future__ import annotations

import signal
import threading
from types import SimpleNamespace

import click

from spotkit.runtime.agent.clouds.options import DEFAULT_WAIT_SECONDS, MARGIN_HELP
from spotkit.runtime.agent.clouds.options import HELP as CLOUD_HELP
from spotkit.runtime.agent.defaults import POLL_INTERVAL_SECONDS
from spotkit.cli.context import CliContext, pass_ctx
from spotkit.cli.hints import echo_next
from spotkit.errors import ToolkitError


@click.command("agent")
@click.option("--cloud", type=click.Choice(["aws", "gcp", "azure", "auto"]), default="aws", show_default=True,
              help=CLOUD_HELP["--cloud"])
@click.option("--metadata-url", default="http://169.254.169.254", show_default=True,
              help="IMDS base URL (a local `spotkit imds-mock` to rehearse).")
@click.option("--on-notice", "on_notice", metavar="CMD",
              help="Shell command run once on a spot, Auto Scaling or maintenance notice, killed at the deadline.")
@click.option("--on-rebalance", "on_rebalance", metavar="CMD", help="Shell command run on a rebalance recommendation.")
@click.option("--interval", type=float, default=POLL_INTERVAL_SECONDS, show_default=True, help="Seconds between polls.")
@click.option("--margin", type=float, help=MARGIN_HELP)
@click.option("--once", is_flag=True, help="Exit after the first drain.")
@click.option("--workload-pgid", type=int, help="Process group that gets the signal after the hook.")
@click.option("--workload-pidfile", type=click.Path(dir_okay=False),
              help="File with the workload's pid; its process group gets the signal after the hook.")
@click.option("--signal", "workload_signal", default="SIGTERM", show_default=True,
              type=click.Choice(["SIGTERM", "SIGINT", "SIGUSR1", "SIGUSR2", "SIGHUP"]), help="Signal sent to the workload.")
@click.option("--signal-on-hibernate", is_flag=True,
              help="Also signal the workload on a spot hibernate notice (default: leave it running, memory is kept).")
@click.option("--group", "group_name", help="Auto Scaling group (default: the instance tag aws:autoscaling:groupName).")
@click.option("--lifecycle-hook", default="spotkit-drain", show_default=True, help="Lifecycle hook to complete.")
@click.option("--lifecycle-heartbeat", type=float, default=300, show_default=True,
              help="Seconds the group waits for the instance: the deadline of an Auto Scaling termination.")
@click.option("--no-complete-lifecycle", is_flag=True, help="Do not complete the lifecycle action.")
@click.option("--maintenance-lead", type=float, default=900, show_default=True,
              help="Act on a scheduled maintenance event this many seconds before it starts.")
@click.option("--token-ttl", type=click.IntRange(1, 21600), default=21600, show_default=True,
              help="IMDSv2 token lifetime in seconds (refreshed before it expires).")
@click.option("--allow-imdsv1", is_flag=True, help="Fall back to IMDSv1 if the token request is refused.")
@click.option("--state-file", type=click.Path(dir_okay=False),
              help="Remember handled notices across restarts (the systemd unit uses /var/lib/spotkit).")
@click.option("--dry-run", is_flag=True, help="Run hooks, but only log what would have been signaled and completed.")
@click.option("--notice-policy", type=click.Choice(["checkpoint-and-continue", "stop"]), default="stop",
              show_default=True,
              help="stop: signal the workload right after the hook. checkpoint-and-continue: the hook is an insurance "
                   "checkpoint, the workload keeps training and is signaled at the deadline minus the hook's time.")
@click.option("--checkpoint-seconds", type=float,
              help="checkpoint-and-continue: estimated seconds of one checkpoint (the longer of it and the measured "
                   "hook time is used; needed without --on-notice).")
@click.option("--on-advisory", "on_advisory", metavar="CMD", help=CLOUD_HELP["--on-advisory"])
@click.option("--notice-seconds", type=float, help=CLOUD_HELP["--notice-seconds"])
@click.option("--wait-seconds", type=float, default=DEFAULT_WAIT_SECONDS, help=CLOUD_HELP["--wait-seconds"])
@pass_ctx
def agent_command(ctx: CliContext, cloud, on_advisory, notice_seconds, wait_seconds, metadata_url, on_notice,
                  on_rebalance, interval, margin, once, workload_pgid,
                  workload_pidfile, workload_signal, signal_on_hibernate, group_name, lifecycle_hook, lifecycle_heartbeat,
                  no_complete_lifecycle, maintenance_lead, token_ttl, allow_imdsv1, state_file, dry_run, notice_policy,
                  checkpoint_seconds):
    """Watch instance metadata for interruption notices; checkpoint, signal and drain. Logs JSON lines."""
    from spotkit.runtime.agent import Agent, AgentConfig, JsonLogger
    from spotkit.runtime.agent.clouds import options
    from spotkit.runtime.agent.clouds.detect import CloudNotDetected
    from spotkit.runtime.agent.lifecycle import REGION_PATH
    from spotkit.aws import AwsTarget

    try:
        cloud = options.resolve_cloud(cloud, metadata_url)
    except ValueError as exc:
        raise ToolkitError(str(exc), hint="spotkit agent --help lists the options") from exc
    except CloudNotDetected as exc:
        raise ToolkitError(str(exc), hint=f"spotkit agent --cloud aws|gcp|azure --metadata-url {metadata_url}") from exc
    if margin is None:
        margin = options.default_margin(cloud)
    try:
        config = AgentConfig(on_notice=on_notice, on_rebalance=on_rebalance, interval=interval, margin=margin,
                             once=once, workload_pgid=workload_pgid, workload_pidfile=workload_pidfile,
                             workload_signal=workload_signal, signal_on_hibernate=signal_on_hibernate,
                             complete_lifecycle=not no_complete_lifecycle,
                             group_name=group_name, lifecycle_hook=lifecycle_hook,
                             lifecycle_heartbeat=lifecycle_heartbeat, maintenance_lead=maintenance_lead,
                             state_file=state_file, dry_run=dry_run, notice_policy=notice_policy,
                             checkpoint_seconds=checkpoint_seconds,
                             **options.config_kwargs(cloud, SimpleNamespace(on_advisory=on_advisory,
                                                                            notice_seconds=notice_seconds,
                                                                            wait_seconds=wait_seconds)))
        imds = options.metadata_client(cloud, metadata_url, token_ttl=token_ttl, allow_v1=allow_imdsv1)
    except ValueError as exc:
        raise ToolkitError(str(exc), hint="spotkit agent --help lists the options") from exc

    def autoscaling():
        # Built only when a lifecycle action must be completed; the region comes from IMDS on an instance.
        region = ctx.region or imds.get_text(REGION_PATH)
        return AwsTarget(region=region, profile=ctx.profile, endpoint_url=ctx.endpoint_url).client("autoscaling")

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    Agent(imds, config, autoscaling=autoscaling, log=JsonLogger()).run(stop)


@click.command("imds-mock")
@click.option("--cloud", type=click.Choice(["aws", "gcp", "azure"]), default="aws", show_default=True,
              help="Whose metadata service to emulate.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=int, default=8111, show_default=True, help="Port (0 picks a free one).")
@click.option("--imdsv2-required", is_flag=True, help="Answer 401 to requests without a valid token.")
@click.option("--spot-action", type=click.Choice(["terminate", "stop", "hibernate"]), default="terminate",
              show_default=True, help="Action announced in spot/instance-action.")
@click.option("--spot-delay", type=float,
              help="Seconds after start before the spot notice, GCP preemption or Azure Preempt event "
                   "(default: never).")
@click.option("--rebalance-delay", type=float, help="Seconds before the rebalance recommendation (default: never).")
@click.option("--lifecycle-delay", type=float,
              help="Seconds before autoscaling/target-lifecycle-state turns Terminated (default: never).")
@click.option("--scheduled", is_flag=True, help="Announce a scheduled system-reboot one day ahead.")
@click.option("--lead", "lead_seconds", type=float,
              help="Seconds between a notice and its action time (AWS 120, Azure's Preempt NotBefore 30).")
@click.option("--no-wait-for-change", is_flag=True, help="GCP: refuse hanging GETs (a proxy without them).")
@click.option("--instance-id", default="i-0123456789abcdef0", show_default=True)
@click.option("--group-name", default="spotkit-training", show_default=True,
              help="Value of the instance tag aws:autoscaling:groupName.")
@click.option("--verbose", is_flag=True, help="Log every request.")
def imds_mock_command(cloud, no_wait_for_change, host, port, imdsv2_required, spot_action, spot_delay,
                      rebalance_delay, lifecycle_delay,
                      scheduled, lead_seconds, instance_id, group_name, verbose):
    """Serve a local EC2 instance metadata service that announces interruptions on cue.

    Trigger a notice now: curl -X POST localhost:8111/spotkit/interrupt -d '{"kind": "spot"}'
    """
    from spotkit.rehearsal.imds.emulator import EmulatorSettings, ImdsEmulator
    from spotkit.runtime.notice import ASG_NAME_TAG, STANDARD_NOTICE_SECONDS, TAG_GROUP

    if lead_seconds is None:
        lead_seconds = STANDARD_NOTICE_SECONDS[cloud]
    if cloud != "aws":
        return _serve_cloud_mock(cloud, host, port, spot_delay, lead_seconds, not no_wait_for_change, verbose)

    settings = EmulatorSettings(imdsv2_required=imdsv2_required, spot_action=spot_action, spot_delay=spot_delay,
                                rebalance_delay=rebalance_delay, lifecycle_delay=lifecycle_delay, scheduled=scheduled,
                                lead_seconds=lead_seconds, instance_id=instance_id,
                                tags={ASG_NAME_TAG: group_name, TAG_GROUP: group_name})
    try:
        emulator = ImdsEmulator(settings, host=host, port=port, verbose=verbose)
    except OSError as exc:
        raise ToolkitError(f"cannot listen on {host}:{port}: {exc.strerror}",
                           hint="pick another --port (0 picks a free one)") from exc
    click.echo(f"IMDS emulator on {emulator.url} (IMDSv2 {'required' if imdsv2_required else 'optional'})")
    echo_next(f"spotkit agent --metadata-url {emulator.url} --on-notice 'echo checkpoint' --interval 0.5")
    click.echo(f"      curl -X POST {emulator.url}/spotkit/interrupt -d '{{\"kind\": \"spot\"}}'")
    try:
        emulator.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()


def _serve_cloud_mock(cloud, host, port, delay, lead_seconds, wait_for_change, verbose):
    from spotkit.rehearsal.imds.azure import AzureEmulator, AzureSettings
    from spotkit.rehearsal.imds.gcp import GcpEmulator, GcpSettings

    try:
        if cloud == "gcp":
            emulator = GcpEmulator(GcpSettings(preempt_delay=delay, wait_for_change=wait_for_change), host=host,
                                   port=port, verbose=verbose)
        else:
            emulator = AzureEmulator(AzureSettings(preempt_delay=delay, lead_seconds=lead_seconds), host=host,
                                     port=port, verbose=verbose)
    except OSError as exc:
        raise ToolkitError(f"cannot listen on {host}:{port}: {exc.strerror}",
                           hint="pick another --port (0 picks a free one)") from exc
    header = "Metadata-Flavor: Google" if cloud == "gcp" else "Metadata: true"
    click.echo(f"{cloud.upper() if cloud == 'gcp' else 'Azure'} metadata emulator on {emulator.url} "
               f"(requests need {header})")
    echo_next(f"spotkit agent --cloud {cloud} --metadata-url {emulator.url} --on-notice 'echo checkpoint' "
               "--interval 0.5")
    click.echo(f"      curl -X POST {emulator.url}/spotkit/interrupt -d '{{\"kind\": \"preempt\"}}'")
    try:
        emulator.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()


def register(group: click.Group) -> None:
    group.add_command(agent_command)
    group.add_command(imds_mock_command)
