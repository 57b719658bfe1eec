"""The emulator's fixes (toolkit/rehearsal/local/server.py MOTO_FIXES), checked over the wire with boto3 against the
emulator process spotkit starts: each makes moto answer what AWS answers, so a re-plan after an apply
shows no changes."""

from __future__ import annotations

import json

import boto3
import pytest

from tests.support.network import free_port
from tests.support.sqs_race import assert_concurrent_deletes_all_stick
from spotkit.rehearsal.local import emulator
from spotkit.rehearsal.local.server import MOTO_FIXES


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    project = tmp_path_factory.mktemp("emu") / ".spotkit"
    state, started = emulator.start(project, port=free_port())
    assert started
    yield state
    emulator.stop(project)


def client(state, service):
    return boto3.client(service, endpoint_url=state.url, region_name="us-east-1", aws_access_key_id="testing",
                        aws_secret_access_key="testing")


def test_every_fix_is_listed_with_a_reason():
    assert len(MOTO_FIXES) == 9
    assert all(what and len(why) > 40 for what, why in MOTO_FIXES)


def test_launch_template_data_keeps_only_its_own_tag_specifications(emu):
    ec2 = client(emu, "ec2")
    lt = ec2.create_launch_template(
        LaunchTemplateName="fix-lt",
        LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "m6i.large",
                            "TagSpecifications": [{"ResourceType": "instance", "Tags": [{"Key": "g", "Value": "x"}]}]},
        TagSpecifications=[{"ResourceType": "launch-template", "Tags": [{"Key": "own", "Value": "y"}]}],
    )["LaunchTemplate"]
    data = ec2.describe_launch_template_versions(LaunchTemplateId=lt["LaunchTemplateId"])["LaunchTemplateVersions"][0]
    assert data["LaunchTemplateData"]["TagSpecifications"] == [
        {"ResourceType": "instance", "Tags": [{"Key": "g", "Value": "x"}]}]
    # the template itself still carries its own tags
    (described,) = ec2.describe_launch_templates(LaunchTemplateIds=[lt["LaunchTemplateId"]])["LaunchTemplates"]
    assert {"Key": "own", "Value": "y"} in described["Tags"]
    # and a template with no data tags has none
    bare = ec2.create_launch_template(LaunchTemplateName="fix-lt-2", LaunchTemplateData={"ImageId": "ami-12c6146b"},
                                      TagSpecifications=[{"ResourceType": "launch-template",
                                                          "Tags": [{"Key": "own", "Value": "z"}]}])["LaunchTemplate"]
    v = ec2.describe_launch_template_versions(LaunchTemplateId=bare["LaunchTemplateId"])["LaunchTemplateVersions"][0]
    assert "TagSpecifications" not in v["LaunchTemplateData"]


def test_redrive_policy_comes_back_as_aws_writes_it(emu):
    sqs = client(emu, "sqs")
    dlq = sqs.create_queue(QueueName="fix-dlq")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    url = sqs.create_queue(QueueName="fix-q", Attributes={
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": 5})})["QueueUrl"]
    got = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"])["Attributes"]["RedrivePolicy"]
    assert got == '{"deadLetterTargetArn":"%s","maxReceiveCount":5}' % arn


def test_rule_from_a_security_group_keeps_its_description(emu):
    ec2 = client(emu, "ec2")
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    a = ec2.create_security_group(GroupName="fix-a", Description="a", VpcId=vpc)["GroupId"]
    b = ec2.create_security_group(GroupName="fix-b", Description="b", VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=a, IpPermissions=[{
        "IpProtocol": "tcp", "FromPort": 2049, "ToPort": 2049,
        "UserIdGroupPairs": [{"GroupId": b, "Description": "NFS from the compute group"}]}])
    rules = ec2.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": [a]}])["SecurityGroupRules"]
    (rule,) = [r for r in rules if not r["IsEgress"]]
    assert rule["Description"] == "NFS from the compute group"
    assert rule["ReferencedGroupInfo"]["GroupId"] == b


def test_ecs_service_keeps_its_capacity_provider_strategy_and_settings(emu):
    ecs = client(emu, "ecs")
    ecs.create_cluster(clusterName="fix-c")
    ecs.register_task_definition(family="fix-f", containerDefinitions=[{"name": "x", "image": "i", "memory": 128}])
    strategy = [{"capacityProvider": "spot", "weight": 4, "base": 0}, {"capacityProvider": "od", "weight": 1, "base": 1}]
    placement = [{"type": "spread", "field": "attribute:ecs.availability-zone"}, {"type": "spread", "field": "instanceId"}]
    ecs.create_service(cluster="fix-c", serviceName="fix-s", taskDefinition="fix-f", desiredCount=1,
                       capacityProviderStrategy=strategy, placementStrategy=placement, healthCheckGracePeriodSeconds=900,
                       enableECSManagedTags=True, availabilityZoneRebalancing="DISABLED")
    (svc,) = ecs.describe_services(cluster="fix-c", services=["fix-s"])["services"]
    assert svc["capacityProviderStrategy"] == strategy
    assert svc["placementStrategy"] == placement
    assert (svc["healthCheckGracePeriodSeconds"], svc["enableECSManagedTags"], svc["availabilityZoneRebalancing"]) == \
        (900, True, "DISABLED")
    assert "launchType" not in svc


def test_eks_cluster_and_node_group_keep_what_was_set_and_nothing_more(emu):
    ec2, eks = client(emu, "ec2"), client(emu, "eks")
    vpc = ec2.create_vpc(CidrBlock="10.8.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.8.{i}.0/24", AvailabilityZone=f"us-east-1{az}")["Subnet"]["SubnetId"]
               for i, az in enumerate("ab")]
    role = "arn:aws:iam::123456789012:role/eks"
    eks.create_cluster(name="fix-eks", roleArn=role, resourcesVpcConfig={"subnetIds": subnets},
                       accessConfig={"authenticationMode": "API", "bootstrapClusterCreatorAdminPermissions": True})
    cluster = eks.describe_cluster(name="fix-eks")["cluster"]
    assert cluster["accessConfig"] == {"authenticationMode": "API"}
    eks.create_nodegroup(clusterName="fix-eks", nodegroupName="fix-ng", subnets=subnets, nodeRole=role,
                         scalingConfig={"minSize": 0, "maxSize": 2, "desiredSize": 0},
                         updateConfig={"maxUnavailablePercentage": 33})
    group = eks.describe_nodegroup(clusterName="fix-eks", nodegroupName="fix-ng")["nodegroup"]
    assert group["updateConfig"] == {"maxUnavailablePercentage": 33}
    assert "remoteAccess" not in group, "no SSH access that was not asked for"


def _instance_count(ec2) -> int:
    return sum(len(r["Instances"]) for r in ec2.describe_instances()["Reservations"])


def test_a_spot_run_instances_makes_a_spot_instance_with_its_request(emu):
    ec2 = client(emu, "ec2")
    before = _instance_count(ec2)
    (inst,) = ec2.run_instances(ImageId="ami-12c6146b", InstanceType="m6i.large", MinCount=1, MaxCount=1,
                                InstanceMarketOptions={"MarketType": "spot", "SpotOptions": {
                                    "SpotInstanceType": "persistent", "InstanceInterruptionBehavior": "hibernate"}},
                                )["Instances"]
    (described,) = ec2.describe_instances(InstanceIds=[inst["InstanceId"]])["Reservations"][0]["Instances"]
    assert described["InstanceLifecycle"] == "spot"
    (request,) = ec2.describe_spot_instance_requests(
        SpotInstanceRequestIds=[described["SpotInstanceRequestId"]])["SpotInstanceRequests"]
    assert (request["Type"], request["InstanceInterruptionBehavior"], request["InstanceId"]) == \
        ("persistent", "hibernate", inst["InstanceId"])
    # an on-demand instance stays one, and RunInstances made exactly the instances asked for
    (plain,) = ec2.run_instances(ImageId="ami-12c6146b", InstanceType="m6i.large", MinCount=1, MaxCount=1)["Instances"]
    (d2,) = ec2.describe_instances(InstanceIds=[plain["InstanceId"]])["Reservations"][0]["Instances"]
    assert "InstanceLifecycle" not in d2 and "SpotInstanceRequestId" not in d2
    assert _instance_count(ec2) == before + 2


def test_concurrent_deletes_stick_in_the_emulator(emu):
    # `handle-events --concurrency 4` against `spotkit local start` deletes from one queue at once
    sqs = client(emu, "sqs")
    url = sqs.create_queue(QueueName="fix-race", Attributes={"VisibilityTimeout": "300"})["QueueUrl"]
    assert_concurrent_deletes_all_stick(lambda: client(emu, "sqs"), url)


def test_iam_answers_while_profiles_are_created_in_parallel():
    # GIVEN moto's own server app with the emulator's IAM fix, and Terraform's pattern: instance profiles
    # created while others are read back. (In process, with a tiny thread switch interval, so the race
    # moto 5.2 has alone shows within seconds: without the fix some reads fail with
    # "dictionary changed size during iteration".)
    import sys
    import threading

    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.test import Client

    from spotkit.rehearsal.local.server import _patch_iam_serialized

    _patch_iam_serialized()
    app = DomainDispatcherApplication(create_backend_app)
    auth = "AWS4-HMAC-SHA256 Credential=testing/20240101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=x"

    def call(action: str, name: str):
        body = f"Action={action}&Version=2010-05-08&InstanceProfileName={name}"
        return Client(app).post("/", data=body, headers={
            "Host": "iam.amazonaws.com", "Content-Type": "application/x-www-form-urlencoded", "Authorization": auth})

    prefix = f"race{free_port()}"
    for n in range(300):  # (moto finds a profile by a scan of all of them)
        call("CreateInstanceProfile", f"{prefix}-seed-{n}")
    answers: list = []

    def create():
        for n in range(400):
            call("CreateInstanceProfile", f"{prefix}-new-{n}")

    def read():
        for _ in range(500):
            try:
                answers.append(call("GetInstanceProfile", f"{prefix}-missing").status_code)
            except RuntimeError as exc:
                answers.append(repr(exc))

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=create), threading.Thread(target=read)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    finally:
        sys.setswitchinterval(interval)
    # THEN every read is answered (404: no such profile)
    assert set(answers) == {404}
