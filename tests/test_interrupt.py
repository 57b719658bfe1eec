"""``spotkit interrupt`` against the moto server over HTTP: the local fire drill end to end (the warnings on
the stack's queue, the handler draining the instances), and AWS FIS through the emulator's FIS patch
(toolkit/rehearsal/local/patches/fis.py)."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from tests.support.terraform_outputs import apply_outputs_only
from tests.support.interruption_world import clients_for
from tests.support.fis_template import create_stack_template
from tests.support.spot_group import SpotGroupWorld
from spotkit import interrupt as it
from spotkit.cli.main import cli
from spotkit.errors import ToolkitError
from spotkit.runtime.interruption.consumer import QueueConsumer
from spotkit.runtime.interruption.handler import Handler, HandlerSettings
from spotkit.runtime.interruption.store import LocalFileStore

GROUP = "gpu-spot"
ROLE = "arn:aws:iam::123456789012:role/spotkit-fis"


@pytest.fixture()
def world(aws):
    """GIVEN a group of 2 running instances in a target group, and the stack's interruption queue."""
    w = SpotGroupWorld.create(aws, group=GROUP, size=2, with_volumes=False)
    elbv2 = aws.client("elbv2")
    vpc = w.ec2.describe_subnets(SubnetIds=[w.subnets["us-east-1a"]])["Subnets"][0]["VpcId"]
    w.tg = elbv2.create_target_group(Name="gpu-tg", Protocol="HTTP", Port=8000, VpcId=vpc,
                                     TargetType="instance")["TargetGroups"][0]["TargetGroupArn"]
    elbv2.register_targets(TargetGroupArn=w.tg, Targets=[{"Id": i} for i in w.instance_ids()])
    w.queue_url = aws.client("sqs").create_queue(QueueName="spotkit-gpu-interruptions")["QueueUrl"]
    w.aws = aws
    return w


def targets(world) -> set[str]:
    health = world.aws.client("elbv2").describe_target_health(TargetGroupArn=world.tg)["TargetHealthDescriptions"]
    return {h["Target"]["Id"] for h in health if h["TargetHealth"]["State"] != "draining"}


def run(aws, *args):
    return CliRunner().invoke(cli, ["--endpoint-url", aws.url, "--region", "us-east-1", *args])


# --- local fire drill ---------------------------------------------------------------------------

def test_local_fire_drill_puts_the_warnings_on_the_queue_and_the_handler_drains(world, tmp_path):
    first, second = world.instance_ids()
    journal = tmp_path / "journal.jsonl"
    # WHEN the drill interrupts one instance
    result = run(world.aws, "interrupt", "--group", GROUP, "--count", "1", "--target", "local",
                 "--queue-url", world.queue_url, "--journal-file", str(journal), "--yes")
    # THEN the handler took the first instance out of the target group; the other stays
    assert result.exit_code == 0, result.output
    assert targets(world) == {second}
    assert first in result.output and "done" in result.output and "deregister-targets=done" in result.output
    # AND the journal says so, and the queue is empty
    events = LocalFileStore(journal).events()
    assert [(e["instance_id"], e["kind"], e["status"], e["group"]) for e in events] == [
        (first, "spot-interruption", "done", GROUP)]
    attrs = world.aws.client("sqs").get_queue_attributes(QueueUrl=world.queue_url, AttributeNames=["All"])["Attributes"]
    assert (attrs["ApproximateNumberOfMessages"], attrs["ApproximateNumberOfMessagesNotVisible"]) == ("0", "0")
    # AND nothing was terminated (a drill)
    assert world.instance_ids() == sorted([first, second])


def test_local_fire_drill_by_percent_as_json(world, tmp_path):
    result = run(world.aws, "--output", "json", "interrupt", "--group", GROUP, "--percent", "100", "--target",
                 "local", "--queue-url", world.queue_url, "--journal-file", str(tmp_path / "j.jsonl"), "--yes")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["interrupted"] == world.instance_ids()
    assert set(out["handled"].values()) == {"done"} and targets(world) == set()


def test_dry_run_puts_nothing_on_the_queue(world, tmp_path):
    result = run(world.aws, "interrupt", "--group", GROUP, "--target", "local", "--queue-url", world.queue_url,
                 "--dry-run")
    assert result.exit_code == 0, result.output
    assert f"would put a spot interruption warning for {world.instance_ids()[0]} on {world.queue_url}" in result.output
    attrs = world.aws.client("sqs").get_queue_attributes(QueueUrl=world.queue_url,
                                                         AttributeNames=["ApproximateNumberOfMessages"])
    assert attrs["Attributes"]["ApproximateNumberOfMessages"] == "0"
    assert targets(world) == set(world.instance_ids())


def test_without_yes_it_asks_and_no_aborts(world, tmp_path):
    result = CliRunner().invoke(cli, ["--endpoint-url", world.aws.url, "--region", "us-east-1", "interrupt", "--group",
                                      GROUP, "--target", "local", "--queue-url", world.queue_url], input="n\n")
    assert result.exit_code != 0 and "Interrupt 1 instance(s) of gpu-spot" in result.output
    assert targets(world) == set(world.instance_ids())


@pytest.mark.parametrize("kw,message", [
    (dict(count=3), "--count 3 is more than the group's 2 running instance(s)"),
    (dict(count=1, percent=10), "give --count or --percent, not both"),
])
def test_bad_selection_is_a_clear_error(kw, message):
    with pytest.raises(ToolkitError) as err:
        it.choose(["i-1", "i-2"], **kw)
    assert err.value.message == message


def _main(capsys, *args) -> tuple[int, str]:
    from spotkit.cli.main import main

    with pytest.raises(SystemExit) as done:
        main(list(args))
    return done.value.code, capsys.readouterr().err


def test_local_without_a_queue_says_what_to_give(world, capsys):
    code, err = _main(capsys, "--endpoint-url", world.aws.url, "--region", "us-east-1", "interrupt", "--group", GROUP,
                      "--target", "local", "--yes")
    assert code == 1
    assert err.splitlines() == ["Error: --target local needs the stack's queue: give --stack or --queue-url",
                                f"  next: spotkit interrupt --group {GROUP} --target local --stack STACK"]


def test_count_and_percent_together_and_a_dead_endpoint_are_clear_errors(capsys):
    code, err = _main(capsys, "--endpoint-url", "http://127.0.0.1:9", "--region", "us-east-1", "interrupt", "--group",
                      GROUP, "--count", "1", "--percent", "5")
    assert (code, err.splitlines()[0]) == (1, "Error: give --count or --percent, not both")
    code, err = _main(capsys, "--endpoint-url", "http://127.0.0.1:9", "--region", "us-east-1", "interrupt", "--group",
                      GROUP, "--yes")
    assert code == 1 and err.startswith(f"Error: cannot list the instances of group {GROUP!r}: Could not connect")
    assert err.splitlines()[-1] == ("  next: spotkit local start --port 9 && spotkit --endpoint-url http://127.0.0.1:9 "
                                    f"--region us-east-1 interrupt --group {GROUP} --yes")  # one command, real values


# --- AWS FIS (emulator extension) ---------------------------------------------------------------

def stack_template(aws) -> str:
    """The group's FIS template as the stack synthesizes it (modules/interruption_events/fire_drill.py)."""
    return create_stack_template(aws.client("fis"), GROUP, ROLE, f"spotkit-gpu-{GROUP}-spot-interruption")


def route_warnings_to_queue(world) -> None:
    """The stack's spot-interruption rule and its queue target."""
    events = world.aws.client("events")
    events.put_rule(Name="spotkit-gpu-spot-interruption", EventPattern=json.dumps(
        {"source": ["aws.ec2"], "detail-type": ["EC2 Spot Instance Interruption Warning"]}))
    arn = world.aws.client("sqs").get_queue_attributes(QueueUrl=world.queue_url,
                                                       AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_targets(Rule="spotkit-gpu-spot-interruption", Targets=[{"Id": "q", "Arn": arn}])


def test_fis_experiment_interrupts_the_chosen_instance_the_handler_drains_and_the_group_replaces(world, tmp_path):
    template = stack_template(world.aws)
    route_warnings_to_queue(world)
    first, second = world.instance_ids()
    store = LocalFileStore(tmp_path / "journal.jsonl")
    handler = Handler(clients_for(world.aws), store, HandlerSettings(checkpoint_command=""))
    sqs = world.aws.client("sqs")
    # the deployed handler, here: each poll's wait lets it consume what arrived
    drain = lambda _s: QueueConsumer(sqs, world.queue_url, handler, wait_seconds=1).run(stop_when_idle=True)  # noqa: E731
    fis = world.aws.client("fis")
    # WHEN interrupt runs against AWS (the emulator) for one instance
    result = it.run_fis(fis, world.ec2, world.asg, GROUP, [second], store=store, sleep=drain, poll_seconds=0)
    # THEN the experiment completed against exactly that instance
    assert (result.experiment_state, result.interrupted) == ("completed", [second])
    resolved = fis.list_experiment_resolved_targets(experimentId=result.experiment_id)["resolvedTargets"]
    assert [r["targetInformation"]["arn"].rsplit("/", 1)[-1] for r in resolved] == [second]
    # AND the handler drained it (the warning came through EventBridge to the queue)
    assert result.handled == {second: "done"} and result.actions[second]["deregister-targets"] == "done"
    assert targets(world) == {first}
    # AND it was interrupted and the group launched a replacement
    assert world.instance(second)["State"]["Name"] == "terminated"
    assert len(result.replaced_by) == 1 and result.replaced_by[0] not in (first, second)
    # AND the one-off template is gone, the stack's stays
    assert [t["id"] for t in fis.list_experiment_templates()["experimentTemplates"]] == [template]


def test_cli_on_aws_follows_the_experiment_and_reports_the_replacement(world):
    stack_template(world.aws)
    result = run(world.aws, "interrupt", "--group", GROUP, "--count", "1", "--poll-seconds", "0", "--yes")
    assert result.exit_code == 0, result.output
    assert "experiment " in result.output and ": completed" in result.output
    first = world.instance_ids()
    assert "replaced by: i-" in result.output
    replacement = result.output.split("replaced by: ")[1].split()[0]
    assert replacement in first


def test_cli_on_aws_without_a_template_says_how_to_get_one(world):
    result = run(world.aws, "interrupt", "--group", GROUP, "--yes")
    assert result.exit_code != 0
    assert isinstance(result.exception, ToolkitError)
    assert result.exception.message == f"no FIS experiment template for group {GROUP!r} (tag spotkit:group={GROUP})"


def test_the_fis_and_placement_score_patches_are_in_the_registry():
    from spotkit.rehearsal.local.registry import PATCHES

    names = [patch.what for patch in PATCHES]
    assert "fis StartExperiment / GetExperiment" in names
    assert "ec2 GetSpotPlacementScores" in names


# --- --stack: the queue from the stack's Terraform outputs --------------------------------------

def test_stack_without_a_working_directory_says_to_plan_it_first(world, tmp_path):
    result = run(world.aws, "interrupt", "--group", GROUP, "--target", "local", "--stack", "gpu_inference",
                 "--project-dir", str(tmp_path / ".spotkit"), "--yes")
    assert isinstance(result.exception, ToolkitError), result.output
    assert "gpu_inference has no working directory for target local" in str(result.exception)
    assert "spotkit plan gpu_inference --target local" in result.exception.hint
    assert targets(world) == set(world.instance_ids())  # nothing was interrupted


@pytest.mark.terraform
@pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform not on PATH")
def test_local_fire_drill_reads_the_queue_from_the_stacks_outputs(world, tmp_path):
    # GIVEN the stack's local working directory, whose Terraform state holds the queue output (real terraform;
    # a configuration of outputs only, so no provider is needed)
    apply_outputs_only(tmp_path / ".spotkit" / "local" / "gpu_inference", {"interruption_queue_url": world.queue_url})
    first, second = world.instance_ids()
    # WHEN the drill is given the stack instead of the queue
    result = run(world.aws, "interrupt", "--group", GROUP, "--count", "1", "--target", "local",
                 "--stack", "gpu_inference", "--project-dir", str(tmp_path / ".spotkit"),
                 "--journal-file", str(tmp_path / "journal.jsonl"), "--yes")
    # THEN the warning went on that queue and the handler drained the instance
    assert result.exit_code == 0, result.output
    assert targets(world) == {second}
    assert first in result.output and "done" in result.output
