"""The handler's on-demand fallback and return to spot, and an ECS drain, proven against the gpu_inference
stack's Lambda role (docs/iam.md): the handler built from the synthesized function's environment, signing
as the Lambda role.

GIVEN gpu_inference synthesized (fallback on by default) and its spot group in the emulator, short of
capacity after spot launch failures,
WHEN the Lambda handles the group's "EC2 Instance Launch Unsuccessful" event (raises the on-demand base),
then the scheduled return checks (placement scores read, the base stepped back down after the hold), then a
spot warning for an instance registered in the stack's ECS cluster (set DRAINING, asked to checkpoint),
THEN iam-simulate allows every call under the synthesized handler policy.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import boto3
import pytest

from tests.support import capacity_events as ce
from tests.support.iam.policies import evaluate, inline_policies, record_proven, resolve
from tests.support.iam.recorder import PRINCIPAL_KEYS, Recorder, iam_requests
from tests.support.interruption_world import spot_warning
from tests.support.moto_server import REGION, start_moto_server
from spotkit.rehearsal.local.control import inject_scaling_activity
from tests.support.spot_group import SpotGroupWorld
from spotkit.rehearsal.local.control import set_spot_placement_scores
from tests.support.synth import one

GROUP = "spotkit-gpu-spot"
CLUSTER = "spotkit-gpu"


class Clock:
    def __init__(self):
        self.at = datetime.now(timezone.utc).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture(scope="module")
def gpu_doc(tmp_path_factory):
    from spotkit.synth import synthesize

    [path] = synthesize(["gpu_inference"], tmp_path_factory.mktemp("synth"), use_cache=False, cache_folder=None)
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def fallback_calls(gpu_doc):
    from spotkit.runtime.interruption.actions import Clients
    from spotkit.runtime.interruption.handler import Handler
    from spotkit.runtime.interruption.lambda_entry import settings_from_env
    from spotkit.runtime.interruption.store import DynamoDBStore, create_journal_table

    env = {k: resolve(gpu_doc, v) for k, v in one(gpu_doc, "aws_lambda_function")["environment"]["variables"].items()}
    assert env["SPOTKIT_FALLBACK"] == "true" and GROUP in env["SPOTKIT_GROUPS"].split(",")
    assert env["SPOTKIT_CLUSTERS"] == CLUSTER
    recorder = Recorder()
    server = start_moto_server(recorder=recorder)
    server.reset()
    try:
        world = SpotGroupWorld.create(server, group=GROUP, size=3, with_volumes=False)
        # the group's instance profile, named as SpotComputeGroup names it ("<group>-..."), in its launch template
        iam = server.client("iam")
        iam.create_role(RoleName=f"{GROUP}-0001", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}))
        profile = iam.create_instance_profile(InstanceProfileName=f"{GROUP}-0001")["InstanceProfile"]["Arn"]
        iam.add_role_to_instance_profile(InstanceProfileName=f"{GROUP}-0001", RoleName=f"{GROUP}-0001")
        world.ec2.create_launch_template_version(LaunchTemplateId=world.launch_template_id, SourceVersion="$Latest",
                                                 LaunchTemplateData={"IamInstanceProfile": {"Arn": profile}})
        ce.make_short(world, 2)
        create_journal_table(server.client("dynamodb"), env["SPOTKIT_JOURNAL_TABLE"])

        def as_lambda(service):
            return boto3.client(service, endpoint_url=server.url, region_name=REGION,
                                aws_access_key_id=PRINCIPAL_KEYS["lambda-handler"], aws_secret_access_key="x")

        clients = Clients(factory=as_lambda)
        clock = Clock()
        handler = Handler(clients, DynamoDBStore(clients.dynamodb, env["SPOTKIT_JOURNAL_TABLE"]), settings_from_env(env),
                          now=clock)
        raised = handler.handle_body(ce.launch_unsuccessful(GROUP))
        # the return check after the hold, reading placement scores (high: spot is back)
        clock.at += timedelta(minutes=31)
        set_spot_placement_scores(REGION, 9)
        checked = handler.handle_body(ce.scheduled_check(time=clock().strftime("%Y-%m-%dT%H:%M:%SZ")))
        # a spot warning for an instance that is an ECS container instance of the stack's cluster (drained there)
        ecs = server.client("ecs")
        ecs.put_account_setting(name="containerInstanceLongArnFormat", value="enabled")
        ecs.create_cluster(clusterName=CLUSTER)
        warned = world.instance_ids()[0]
        ecs.register_container_instance(cluster=CLUSTER, instanceIdentityDocument=json.dumps({
            "instanceId": warned, "region": REGION, "availabilityZone": "us-east-1a", "accountId": "123456789012",
            "instanceType": "m6i.large", "imageId": "ami-12c6146b", "privateIp": "10.0.0.9"}))
        drained = handler.handle_body(spot_warning(warned))
        state = ecs.describe_container_instances(cluster=CLUSTER, containerInstances=ecs.list_container_instances(
            cluster=CLUSTER)["containerInstanceArns"])["containerInstances"][0]["status"]
        base = world.asg.describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])["AutoScalingGroups"][0][
            "MixedInstancesPolicy"]["InstancesDistribution"]["OnDemandBaseCapacity"]
        yield {"calls": [c for c in recorder.product_calls() if c.principal == "lambda-handler"],
               "raised": raised, "checked": checked, "base": base, "drained": drained, "ecs_state": state}
    finally:
        server.stop()


def test_fallback_raised_then_stepped_back(fallback_calls):
    decisions = [a.detail.get("decision") for o in fallback_calls["checked"] for a in o.actions]
    assert "stepped-down" in decisions, decisions
    assert fallback_calls["base"] == 1
    ops = {(c.service, c.operation) for c in fallback_calls["calls"]}
    implied = {r.action for c in fallback_calls["calls"] for r in iam_requests(c)}
    assert {"ec2:RunInstances", "iam:PassRole"} <= implied, sorted(implied)
    assert {("autoscaling", "UpdateAutoScalingGroup"), ("autoscaling", "CreateOrUpdateTags"),
            ("ec2", "GetSpotPlacementScores"), ("autoscaling", "DescribeScalingActivities")} <= ops, sorted(ops)


def test_spot_warning_drained_the_container_instance(fallback_calls):
    assert fallback_calls["ecs_state"] == "DRAINING"
    ops = {(c.service, c.operation) for c in fallback_calls["calls"]}
    assert {("ecs", "ListContainerInstances"), ("ecs", "UpdateContainerInstancesState"), ("ssm", "SendCommand")} <= ops


def test_every_fallback_call_is_allowed_by_the_lambda_role(gpu_doc, fallback_calls):
    policies = inline_policies(gpu_doc, "spotkit-interruption-handler")
    decisions = evaluate([(r, policies) for c in fallback_calls["calls"] for r in iam_requests(c)])
    denied = [d for d in decisions if not d.allowed]
    assert not denied, "\n".join(d.explain(policies) for d in denied)
    record_proven(decisions)
