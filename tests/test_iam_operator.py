"""The operator policy (modules/operator_policy.py, synthesized in the training stack) proven on the
runbooks' real calls (docs/iam.md).

GIVEN the training stack's synthesized operator policy and, in the emulator, its group "spotkit-training"
(retained data volumes, a snapshot, a target group of the stack, the drain hook),
WHEN the runbooks run signing as the operator (status, recover volumes in the same AZ and across AZs,
snapshot restore, replace and restore-spot after spot launch failures, drain),
THEN iam-simulate allows every call they made under that policy, and denies the same runbooks on a group
of another stack.
"""

from __future__ import annotations

import json
import uuid

import boto3
import pytest

from tests.support.fis_template import create_stack_template
from tests.support.iam.policies import evaluate, record_proven, resolve
from tests.support.iam.recorder import PRINCIPAL_KEYS, Recorder, iam_requests
from tests.support.moto_server import REGION, start_moto_server
from tests.support.spot_group import SpotGroupWorld
from tests.support.synth import resources

GROUP = "spotkit-training"


@pytest.fixture(scope="module")
def training_doc(tmp_path_factory):
    from spotkit.synth import synthesize

    [path] = synthesize(["training"], tmp_path_factory.mktemp("synth"), use_cache=False, cache_folder=None)
    return json.loads(path.read_text())


def operator_policy(doc: dict) -> list[dict]:
    [body] = [b for b in resources(doc, "aws_iam_policy").values() if b["name"].endswith("-spotkit-operator")]
    return [{"name": body["name"], "policy": json.loads(resolve(doc, body["policy"]))}]


def _fis_template(server) -> str:
    """The group's FIS template as modules/interruption_events/fire_drill.py synthesizes it, with the stack's FIS role."""
    from spotkit.constructs.operator_policy import fis_role_prefix

    role = f"arn:aws:iam::123456789012:role/{fis_role_prefix(GROUP)}0001"
    return create_stack_template(server.client("fis"), GROUP, role, f"{GROUP}-spot-interruption")


@pytest.fixture(scope="module")
def operator_calls(tmp_path_factory):
    from spotkit.rehearsal.local.control import inject_scaling_activity
    from spotkit.runtime.interruption.actions import Clients
    from spotkit.runbooks.base import RunContext
    from spotkit.runbooks.drain import DrainInstance
    from spotkit.runbooks.replace import replace_capacity, restore_spot
    from spotkit.runbooks.snapshot import restore_snapshot
    from spotkit.runbooks.status import status
    from spotkit.interrupt import run_fis
    from spotkit.runtime.interruption.store import DynamoDBStore, create_journal_table
    from spotkit.runbooks.status import interruptions_from_store
    from spotkit.runbooks.volumes import recover_volumes

    recorder = Recorder()
    server = start_moto_server(recorder=recorder)
    server.reset()  # (moto's state is per process: start from an empty account)

    def op(service):
        return boto3.client(service, endpoint_url=server.url, region_name=REGION,
                            aws_access_key_id=PRINCIPAL_KEYS["operator"], aws_secret_access_key="x")

    def ctx():
        return RunContext(journal_dir=tmp_path_factory.mktemp("journal"), wait_delay=0.05, wait_attempts=60)

    try:
        # replace / restore-spot: spot launches failing, then the fallback reverted (moto's
        # UpdateAutoScalingGroup drops the mixed instances policy, so this group comes first)
        short = SpotGroupWorld.create(server, group=GROUP, size=3)
        for n in range(3):
            inject_scaling_activity(GROUP, message="Could not launch Spot Instances. InsufficientInstanceCapacity",
                                    minutes_ago=n + 1)
        for iid in short.instance_ids()[:2]:
            short.asg.terminate_instance_in_auto_scaling_group(InstanceId=iid, ShouldDecrementDesiredCapacity=True)
        # (AWS keeps desired at 3 and fails the launches; moto would launch at once: set on its model)
        from moto.autoscaling.models import autoscaling_backends
        autoscaling_backends["123456789012"][REGION].autoscaling_groups[GROUP].desired_capacity = 3
        replace_capacity(op("autoscaling"), op("ec2"), GROUP, ctx())
        restore_spot(op("autoscaling"), GROUP, ctx(), force=True)
        server.reset()
        # volumes: one reclaimed instance's volume waits in its AZ, another's must move to the other AZ
        world = SpotGroupWorld.create(server, group=GROUP, size=3)
        first, second, third = world.instance_ids()
        world.interrupt(first)
        status(op("ec2"), op("autoscaling"), GROUP)
        recover_volumes(op("ec2"), GROUP, ctx(), autoscaling=op("autoscaling"))
        world.move_to("us-east-1b")
        world.interrupt(second)
        recover_volumes(op("ec2"), GROUP, ctx(), autoscaling=op("autoscaling"))
        # snapshot: a replacement without its device, and the group's snapshot of it
        world.ec2.create_snapshot(VolumeId=world.volumes[third], TagSpecifications=[{"ResourceType": "snapshot", "Tags": [
            {"Key": "spotkit:group", "Value": GROUP}, {"Key": "spotkit:device", "Value": world.device}]}])
        replacement = world.interrupt(third)
        world.ec2.delete_volume(VolumeId=world.volumes[third])
        restore_snapshot(op("ec2"), GROUP, world.device, replacement, ctx())
        # drain: an instance behind a target group of the stack, in the group with the drain hook
        elbv2 = server.client("elbv2")
        vpc = world.ec2.describe_subnets(SubnetIds=[world.subnets["us-east-1a"]])["Subnets"][0]["VpcId"]
        arn = elbv2.create_target_group(Name="training-tg", Protocol="HTTP", Port=80, VpcId=vpc, TargetType="instance",
                                        Tags=[{"Key": "spotkit:name", "Value": GROUP}])["TargetGroups"][0]["TargetGroupArn"]
        target = world.instance_ids()[0]
        elbv2.register_targets(TargetGroupArn=arn, Targets=[{"Id": target}])
        world.asg.put_lifecycle_hook(AutoScalingGroupName=GROUP, LifecycleHookName="spotkit-drain",
                                     LifecycleTransition="autoscaling:EC2_INSTANCE_TERMINATING", HeartbeatTimeout=300)
        DrainInstance(Clients(factory=op), ctx()).run(target, token=str(uuid.uuid4()))
        # interrupt --target aws: the group's FIS template (as the stack makes it, with its FIS role), copied,
        # started and followed; status and interrupt read the handler's journal
        _fis_template(server)
        create_journal_table(server.client("dynamodb"), f"{GROUP}-interruption-journal")
        store = DynamoDBStore(op("dynamodb"), f"{GROUP}-interruption-journal")
        run_fis(op("fis"), op("ec2"), op("autoscaling"), GROUP, [world.instance_ids()[-1]], store=store,
                poll_seconds=0, sleep=lambda _s: None, journal_polls=1)
        interruptions_from_store(store)
        yield [c for c in recorder.product_calls() if c.principal == "operator"]
    finally:
        server.stop()


def test_runbooks_made_the_calls_a_recovery_needs(operator_calls):
    ops = {(c.service, c.operation) for c in operator_calls}
    assert {("ec2", "AttachVolume"), ("ec2", "CreateVolume"), ("ec2", "CreateSnapshot"),
            ("elasticloadbalancing", "DeregisterTargets"), ("autoscaling", "CompleteLifecycleAction"),
            ("autoscaling", "UpdateAutoScalingGroup"), ("fis", "CreateExperimentTemplate"), ("fis", "StartExperiment"),
            ("fis", "DeleteExperimentTemplate"), ("dynamodb", "Scan")} <= ops, sorted(ops)


def test_every_runbook_call_is_allowed_by_the_operator_policy(training_doc, operator_calls):
    policies = operator_policy(training_doc)
    decisions = evaluate([(r, policies) for c in operator_calls for r in iam_requests(c)])
    denied = [d for d in decisions if not d.allowed]
    assert not denied, "\n".join(d.explain(policies) for d in denied)
    record_proven(decisions)


def test_the_operator_policy_does_not_reach_another_stacks_group(training_doc, operator_calls):
    # GIVEN the same calls made on a group of another stack (its name and tags in place of this one's)
    policies = operator_policy(training_doc)
    moved, of_call = [], []
    for n, c in enumerate(operator_calls):
        for r in iam_requests(c):
            before = json.dumps({"resource": r.resource, "context": r.context})
            after = json.loads(before.replace(GROUP, "other-stack"))
            if after != json.loads(before):
                moved.append((type(r)(r.call, r.action, after["resource"], after["context"]), policies))
                of_call.append(n)
    # THEN every such call is refused: at least one of the authorizations AWS makes for it is denied
    # (a CreateVolume's tag-on-create half is allowed by TagOnlyAtCreation, its volume half is not)
    decisions = evaluate(moved)
    calls = {}
    for n, d in zip(of_call, decisions):
        calls.setdefault(n, []).append(d)
    assert len(calls) >= 5
    let_through = [ds[0].request.describe() for ds in calls.values() if all(d.allowed for d in ds)]
    assert let_through == []
