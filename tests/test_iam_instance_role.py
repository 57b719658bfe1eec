"""The instance role proven on what runs on the instance (docs/iam.md): the data-volume boot part of the
synthesized training stack (bash + the AWS CLI) and the agent's lifecycle completion (its AWS CLI path),
each signing as the instance role of one instance (so every call carries ``ec2:SourceInstanceARN``).

GIVEN the training stack's instance policy ("spotkit-instance") and its group in the emulator,
WHEN a first instance boots (creates and attaches its retained volume), is reclaimed, its replacement
boots (re-attaches the waiting volume) and the agent completes the drain hook,
THEN iam-simulate allows every call under that policy.
"""

from __future__ import annotations

import json

import pytest

from tests.support.boot_part import AWS_CLI, require_aws_cli, run_boot_part, user_data_part
from tests.support.iam.policies import evaluate, inline_policies, record_proven
from tests.support.iam.recorder import PRINCIPAL_KEYS, Recorder, iam_requests
from tests.support.moto_server import REGION, start_moto_server
from tests.support.spot_group import SpotGroupWorld
from tests.support.synth import local_value

GROUP = "spotkit-training"


@pytest.fixture(scope="module")
def training_doc(tmp_path_factory):
    from spotkit.synth import synthesize

    [path] = synthesize(["training"], tmp_path_factory.mktemp("synth"), use_cache=False, cache_folder=None)
    return json.loads(path.read_text())


def as_instance(instance_id: str) -> dict:
    return {"AWS_ACCESS_KEY_ID": PRINCIPAL_KEYS["instance-role"], "AWS_SECRET_ACCESS_KEY": "x",
            "AWS_SESSION_TOKEN": f"instance:{instance_id}"}


@pytest.fixture(scope="module")
def instance_calls(training_doc, tmp_path_factory):
    require_aws_cli()
    from spotkit.runtime.agent.lifecycle import AwsCliAutoScaling, complete_lifecycle_action

    part = user_data_part(local_value(training_doc, "fleet_spotkit_training_user_data"), "data-volumes")
    recorder = Recorder()
    server = start_moto_server(recorder=recorder)
    server.reset()
    work = tmp_path_factory.mktemp("boot")
    try:
        world = SpotGroupWorld.create(server, group=GROUP, size=1, with_volumes=False)
        world.asg.put_lifecycle_hook(AutoScalingGroupName=GROUP, LifecycleHookName="spotkit-drain",
                                     LifecycleTransition="autoscaling:EC2_INSTANCE_TERMINATING", HeartbeatTimeout=300)
        (first,) = world.instance_ids()
        booted = run_boot_part(part, endpoint=server.url, instance=world.instance(first), workdir=work / "first",
                               credentials=as_instance(first))
        assert booted.returncode == 0, booted.output
        replacement = world.interrupt(first)
        again = run_boot_part(part, endpoint=server.url, instance=world.instance(replacement),
                              workdir=work / "replacement", credentials=as_instance(replacement))
        assert again.returncode == 0, again.output
        # the agent on the replacement, through the AWS CLI as on an AMI without boto3
        import os

        saved = {k: os.environ.get(k) for k in as_instance(replacement)}
        os.environ.update(as_instance(replacement))
        try:
            done = complete_lifecycle_action(AwsCliAutoScaling(str(AWS_CLI), region=REGION, endpoint_url=server.url),
                                             group=GROUP, instance_id=replacement)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        yield {"calls": [c for c in recorder.product_calls() if c.principal == "instance-role"],
               "agent": done, "volume": world.devices(replacement).get("/dev/sdf")}
    finally:
        server.stop()


def test_boot_part_and_agent_made_their_calls(instance_calls):
    ops = {(c.service, c.operation) for c in instance_calls["calls"]}
    assert {("ec2", "CreateVolume"), ("ec2", "AttachVolume"), ("ec2", "DescribeVolumes"),
            ("autoscaling", "CompleteLifecycleAction")} <= ops, sorted(ops)
    assert instance_calls["volume"], "the replacement holds no /dev/sdf volume"
    assert all(c.source_instance for c in instance_calls["calls"])


def test_every_instance_call_is_allowed_by_the_instance_role(training_doc, instance_calls):
    policies = inline_policies(training_doc, "spotkit-instance")
    decisions = evaluate([(r, policies) for c in instance_calls["calls"] for r in iam_requests(c)])
    denied = [d for d in decisions if not d.allowed]
    assert not denied, "\n".join(d.explain(policies) for d in denied)
    record_proven(decisions)
