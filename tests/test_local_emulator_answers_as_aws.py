"""The emulator's patches (the one registry, toolkit/rehearsal/local/registry.py PATCHES), checked over the wire with
boto3 against the emulator process `spotkit local start` runs: each makes moto answer what AWS answers (so a re-plan
after an apply shows no changes, and the runbooks and the handler meet what they meet on AWS); the docs list them
all; the control path answers under /spotkit/."""

from __future__ import annotations

import json

from pathlib import Path

import boto3
import pytest
import requests
from botocore.exceptions import ClientError

from tests.support.network import free_port
from tests.support.sqs_race import assert_concurrent_deletes_all_stick
from spotkit.rehearsal.local import emulator
from spotkit.rehearsal.local.control import ROUTES
from spotkit.rehearsal.local.registry import PATCHES, docs_table

ROOT = Path(__file__).resolve().parents[1]


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


def test_every_patch_is_listed_with_what_aws_does_and_what_moto_does():
    assert len(PATCHES) == 18
    assert len({p.what for p in PATCHES}) == len(PATCHES)
    for patch in PATCHES:
        assert patch.service and patch.operations and len(patch.aws) > 40 and len(patch.moto) > 40, patch.what
        assert patch.reference.startswith("https://docs.aws.amazon.com/") or patch.service == "iam", patch.what


def test_the_local_target_page_lists_every_patch_of_the_registry():
    # GIVEN the registry WHEN the local target page lists what the emulator changes in moto
    page = (ROOT / "docs" / "local-target.md").read_text()
    # THEN its table is the registry's, row for row (paste docs_table() into the page when this fails)
    assert docs_table() in page, "docs/local-target.md differs from the registry; its table must be:\n" + docs_table()
    rows = [line for line in page.splitlines() if line.startswith("| ") and "moto 5.2 does instead" not in line
            and line.split("|")[1].strip().split(" ")[0] in {p.service for p in PATCHES}]
    assert len(rows) == len(PATCHES)
    # AND its control table names every route of the control path, and no other
    control_rows = [line for line in page.splitlines() if line.startswith("| `") and " /spotkit/" in line]
    assert sorted(line.split("`")[1].split("?")[0] for line in control_rows) == sorted(f"{m} {p}" for m, p in ROUTES)


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


def test_a_mixed_instances_group_launches_its_on_demand_base_then_spot(emu):
    # GIVEN a group of 3 whose policy asks for 1 on-demand instance and the rest spot
    ec2, asg = client(emu, "ec2"), client(emu, "autoscaling")
    subnet = ec2.create_subnet(VpcId=ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"], CidrBlock="10.9.0.0/24",
                               AvailabilityZone="us-east-1a")["Subnet"]["SubnetId"]
    lt = ec2.create_launch_template(LaunchTemplateName="market-lt", LaunchTemplateData={
        "ImageId": "ami-12c6146b", "InstanceType": "m6i.large"})["LaunchTemplate"]["LaunchTemplateId"]
    policy = {"LaunchTemplate": {"LaunchTemplateSpecification": {"LaunchTemplateId": lt, "Version": "$Latest"},
                                 "Overrides": [{"InstanceType": "m6i.large"}, {"InstanceType": "m6a.large"}]},
              "InstancesDistribution": {"OnDemandBaseCapacity": 1, "OnDemandPercentageAboveBaseCapacity": 0}}
    asg.create_auto_scaling_group(AutoScalingGroupName="market", MinSize=0, MaxSize=6, DesiredCapacity=3,
                                  VPCZoneIdentifier=subnet, MixedInstancesPolicy=policy)

    def markets():
        ids = [i["InstanceId"] for i in asg.describe_auto_scaling_groups(
            AutoScalingGroupNames=["market"])["AutoScalingGroups"][0]["Instances"]]
        found = [i for r in ec2.describe_instances(InstanceIds=ids)["Reservations"] for i in r["Instances"]]
        return sorted(i.get("InstanceLifecycle", "on-demand") for i in found)

    # THEN EC2 describes 1 on-demand instance and 2 spot ones
    assert markets() == ["on-demand", "spot", "spot"]
    # WHEN the group grows by 2 with the base raised to 2 (the capacity fallback's raise)
    policy["InstancesDistribution"]["OnDemandBaseCapacity"] = 2
    asg.update_auto_scaling_group(AutoScalingGroupName="market", MixedInstancesPolicy=policy, DesiredCapacity=5)
    # THEN one of the new instances is on-demand (the base), the other spot
    assert markets() == ["on-demand", "on-demand", "spot", "spot", "spot"]


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

    (iam,) = [patch for patch in PATCHES if patch.service == "iam"]
    iam.apply()
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


def _group_with_drain_hook(emu, name: str) -> None:
    autoscaling = client(emu, "autoscaling")
    autoscaling.create_launch_configuration(LaunchConfigurationName=name, ImageId="ami-12c6146b",
                                            InstanceType="m6i.large")
    autoscaling.create_auto_scaling_group(AutoScalingGroupName=name, LaunchConfigurationName=name, MinSize=0,
                                          MaxSize=1, DesiredCapacity=0, AvailabilityZones=["us-east-1a"])
    autoscaling.put_lifecycle_hook(LifecycleHookName="spotkit-drain", AutoScalingGroupName=name,
                                   LifecycleTransition="autoscaling:EC2_INSTANCE_TERMINATING")


def test_the_emulator_local_start_runs_completes_lifecycle_actions(emu):
    # GIVEN the emulator `spotkit local start` runs, a group and its drain hook (moto 5.2 has no handler for
    # CompleteLifecycleAction: a patch of the one registry, which the tests' server applies too)
    _group_with_drain_hook(emu, "fix-hooked")
    autoscaling = client(emu, "autoscaling")
    # WHEN the handler completes the action and the agent heart-beats it
    autoscaling.complete_lifecycle_action(AutoScalingGroupName="fix-hooked", LifecycleHookName="spotkit-drain",
                                          InstanceId="i-0123456789abcdef0", LifecycleActionResult="CONTINUE")
    autoscaling.record_lifecycle_action_heartbeat(AutoScalingGroupName="fix-hooked", LifecycleHookName="spotkit-drain",
                                                  InstanceId="i-0123456789abcdef0")
    # THEN both are answered, and a hook the group does not have is refused as AWS refuses it
    with pytest.raises(ClientError) as refused:
        autoscaling.complete_lifecycle_action(AutoScalingGroupName="fix-hooked", LifecycleHookName="other",
                                              InstanceId="i-0123456789abcdef0", LifecycleActionResult="CONTINUE")
    assert refused.value.response["Error"]["Code"] == "ValidationError"
    # AND the control path reports what was answered
    calls = requests.get(f"{emu.url}/spotkit/lifecycle-actions", timeout=10).json()
    assert [(c["action"], c["group"], c.get("result")) for c in calls] == [
        ("CompleteLifecycleAction", "fix-hooked", "CONTINUE"), ("RecordLifecycleActionHeartbeat", "fix-hooked", None)]


def test_the_emulator_local_start_refuses_an_attach_ec2_refuses(emu):
    # GIVEN a volume attached to an instance
    ec2 = client(emu, "ec2")
    inst, other = ec2.run_instances(ImageId="ami-12c6146b", InstanceType="m6i.large", MinCount=2, MaxCount=2,
                                    Placement={"AvailabilityZone": "us-east-1a"})["Instances"]
    volume = ec2.create_volume(AvailabilityZone="us-east-1a", Size=10)["VolumeId"]
    ec2.attach_volume(VolumeId=volume, InstanceId=inst["InstanceId"], Device="/dev/sdf")
    # WHEN another instance attaches it THEN EC2's refusal comes back
    with pytest.raises(ClientError) as refused:
        ec2.attach_volume(VolumeId=volume, InstanceId=other["InstanceId"], Device="/dev/sdf")
    assert refused.value.response["Error"]["Code"] == "VolumeInUse"


def test_the_control_path_sets_what_only_a_rehearsal_can(emu):
    # GIVEN the group of the emulator `spotkit local start` runs, with no scaling activity and no placement score
    _group_with_drain_hook(emu, "fix-activities")
    autoscaling, ec2 = client(emu, "autoscaling"), client(emu, "ec2")
    assert autoscaling.describe_scaling_activities(AutoScalingGroupName="fix-activities")["Activities"] == []
    with pytest.raises(ClientError) as refused:
        ec2.get_spot_placement_scores(InstanceTypes=["m6i.large"], TargetCapacity=1, RegionNames=["us-east-1"])
    assert refused.value.response["Error"]["Code"] == "UnauthorizedOperation"
    # WHEN a rehearsal records a failed spot launch and sets a score on the control path
    recorded = requests.post(f"{emu.url}/spotkit/scaling-activities", timeout=10, json={
        "group": "fix-activities", "message": "InsufficientInstanceCapacity", "minutes_ago": 2}).json()
    requests.put(f"{emu.url}/spotkit/spot-placement-scores", json={"region": "us-east-1", "score": 7},
                 timeout=10).raise_for_status()
    # THEN the AWS calls answer them as AWS would have
    (activity,) = autoscaling.describe_scaling_activities(AutoScalingGroupName="fix-activities")["Activities"]
    assert (activity["ActivityId"], activity["StatusCode"], activity["StatusMessage"]) == (
        recorded["ActivityId"], "Failed", "InsufficientInstanceCapacity")
    scores = ec2.get_spot_placement_scores(InstanceTypes=["m6i.large"], TargetCapacity=1, RegionNames=["us-east-1"])
    assert [(s["Region"], s["Score"]) for s in scores["SpotPlacementScores"]] == [("us-east-1", 7)]
    # AND a path the control API does not have is refused with the list of those it has
    missing = requests.get(f"{emu.url}/spotkit/nothing", timeout=10)
    assert missing.status_code == 404 and "POST /spotkit/scaling-activities" in missing.json()["routes"]
