"""``spotkit agent`` (the on-instance interruption agent) and ``spotkit imds-mock`` (a local IMDS)."""

from __future__ import annotations

import signal
import threading

import click

from spotkit.runtime.agent import options
from spotkit.cli.context import CliContext, pass_ctx
from spotkit.cli.hints import echo_next
from spotkit.errors import ToolkitError
from spotkit.runtime.notice import STANDARD_NOTICE_SECONDS


class _Converted(click.ParamType):
    """A click type around one of the table's converters (``spotkit.runtime.agent.options``): the same message."""

    def __init__(self, convert):
        self.convert_text, self.name = convert, convert.__name__.replace("_", "-")

    def convert(self, value, param, ctx):
        try:
            return self.convert_text(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def _click_option(o: "options.Option"):
    """One click option from one row of the agent's option table."""
    if o.switch:
        return click.option(o.flag, o.dest, is_flag=True, default=False, help=options.help_text(o))
    kind = click.Choice(list(o.choices)) if o.choices else None if o.convert is str else \
        o.convert if o.convert in (int, float) else _Converted(o.convert)
    return click.option(o.flag, o.dest, type=kind, default=o.default, metavar=o.metavar, help=options.help_text(o))


def _agent_options(command):
    # spotkit's global --region/--profile/--endpoint-url come before the command (CliContext)
    for o in reversed([o for o in options.OPTIONS if not o.global_]):
        command = _click_option(o)(command)
    return command


@click.command("agent", help=options.DESCRIPTION)
@_agent_options
@pass_ctx
def agent_command(ctx: CliContext, **values):
    from spotkit.runtime.agent import Agent, JsonLogger
    from spotkit.runtime.agent.clouds.detect import CloudNotDetected
    from spotkit.runtime.agent.lifecycle import REGION_PATH
    from spotkit.aws import AwsTarget

    try:
        _cloud, config, imds = options.agent_setup(values)
    except CloudNotDetected as exc:
        raise ToolkitError(str(exc), hint=f"spotkit agent --cloud aws|gcp|azure --metadata-url "
                                          f"{values['metadata_url']}") from exc
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
              help=f"Seconds between a notice and its action time (AWS {STANDARD_NOTICE_SECONDS['aws']}, Azure's "
                   f"Preempt NotBefore {STANDARD_NOTICE_SECONDS['azure']}).")
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
    from spotkit.runtime.notice import ASG_NAME_TAG, TAG_GROUP

    if lead_seconds is None:
        lead_seconds = STANDARD_NOTICE_SECONDS[cloud]
    if cloud != "aws":
        return _serve_cloud_mock(cloud, host, port, spot_delay, lead_seconds, not no_wait_for_change, verbose)

    settings = EmulatorSettings(imdsv2_required=imdsv2_required, spot_action=spot_action, spot_delay=spot_delay,
                                rebalance_delay=rebalance_delay, lifecycle_delay=lifecycle_delay, scheduled=scheduled,
                                lead_seconds=lead_seconds, instance_id=instance_id,
                                tags={ASG_NAME_TAG: group_name, TAG_GROUP: group_name})
    emulator = _listening(lambda: ImdsEmulator(settings, host=host, port=port, verbose=verbose), host, port)
    click.echo(f"IMDS emulator on {emulator.url} (IMDSv2 {'required' if imdsv2_required else 'optional'})")
    echo_next(f"spotkit agent --metadata-url {emulator.url} --on-notice 'echo checkpoint' --interval 0.5")
    click.echo(f"      curl -X POST {emulator.url}/spotkit/interrupt -d '{{\"kind\": \"spot\"}}'")
    _serve_until_interrupted(emulator)


def _serve_cloud_mock(cloud, host, port, delay, lead_seconds, wait_for_change, verbose):
    from spotkit.rehearsal.imds.azure import AzureEmulator, AzureSettings
    from spotkit.rehearsal.imds.gcp import GcpEmulator, GcpSettings

    if cloud == "gcp":
        emulator = _listening(lambda: GcpEmulator(GcpSettings(preempt_delay=delay, wait_for_change=wait_for_change),
                                                  host=host, port=port, verbose=verbose), host, port)
    else:
        emulator = _listening(lambda: AzureEmulator(AzureSettings(preempt_delay=delay, lead_seconds=lead_seconds),
                                                    host=host, port=port, verbose=verbose), host, port)
    header = "Metadata-Flavor: Google" if cloud == "gcp" else "Metadata: true"
    click.echo(f"{cloud.upper() if cloud == 'gcp' else 'Azure'} metadata emulator on {emulator.url} "
               f"(requests need {header})")
    echo_next(f"spotkit agent --cloud {cloud} --metadata-url {emulator.url} --on-notice 'echo checkpoint' "
               "--interval 0.5")
    click.echo(f"      curl -X POST {emulator.url}/spotkit/interrupt -d '{{\"kind\": \"preempt\"}}'")
    _serve_until_interrupted(emulator)


def _listening(make, host, port):
    """The emulator ``make()`` starts listening, or a user error naming the address it could not take."""
    try:
        return make()
    except OSError as exc:
        raise ToolkitError(f"cannot listen on {host}:{port}: {exc.strerror}",
                           hint="pick another --port (0 picks a free one)") from exc


def _serve_until_interrupted(emulator) -> None:
    """Answer requests until Ctrl-C, then stop the emulator."""
    try:
        emulator.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()


def register(group: click.Group) -> None:
    group.add_command(agent_command)
    group.add_command(imds_mock_command)
