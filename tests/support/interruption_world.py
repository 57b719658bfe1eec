"""A small AWS world in the moto server for the interruption handler: managed and unmanaged instances,
an ELB target group they are registered in, an ECS cluster with a container instance per managed
instance, an Auto Scaling group with the spotkit drain hook, and the journal table. Also builders of
the EventBridge events AWS sends. Used by tests/test_interruption_*.py and bench/interruptions_handler.py.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from spotkit.runtime.interruption.actions import Clients
from spotkit.runtime.interruption.store import create_journal_table

GROUP = "train-fleet"
CLUSTER = "train-cluster"
TABLE = "spotkit-journal"
HOOK = "spotkit-drain"
AMI = "ami-12c6146b"  # one of moto's built-in images
ACCOUNT = "123456789012"


@dataclass
class World:
    clients: Clients
    vpc_id: str
    subnet_id: str
    target_group_arn: str
    managed: list[str] = field(default_factory=list)
    unmanaged: list[str] = field(default_factory=list)
    container_instances: dict[str, str] = field(default_factory=dict)


def clients_for(server) -> Clients:
    return Clients.of(factory=server.client)


def _tags(managed: bool) -> list[dict]:
    if not managed:
        return [{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "someone-else"}]}]
    return [{"ResourceType": "instance", "Tags": [{"Key": "spotkit:group", "Value": GROUP},
                                                   {"Key": "spotkit:managed", "Value": "true"}]}]


def build_world(server, *, managed: int = 2, unmanaged: int = 1, ecs: bool = True) -> World:
    c = clients_for(server)
    vpc = c.ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    subnet = c.ec2.create_subnet(VpcId=vpc, CidrBlock="10.20.0.0/18", AvailabilityZone="us-east-1a")["Subnet"]["SubnetId"]
    tg = c.elbv2.create_target_group(Name="train-tg", Protocol="HTTP", Port=8080, VpcId=vpc,
                                     TargetType="instance")["TargetGroups"][0]["TargetGroupArn"]
    world = World(clients=c, vpc_id=vpc, subnet_id=subnet, target_group_arn=tg)
    for count, is_managed in ((managed, True), (unmanaged, False)):
        remaining = count
        while remaining:
            n = min(remaining, 200)
            r = c.ec2.run_instances(ImageId=AMI, MinCount=n, MaxCount=n, InstanceType="m5.large", SubnetId=subnet,
                                    TagSpecifications=_tags(is_managed))
            ids = [i["InstanceId"] for i in r["Instances"]]
            (world.managed if is_managed else world.unmanaged).extend(ids)
            remaining -= n
    everyone = world.managed + world.unmanaged
    for i in range(0, len(everyone), 100):
        c.elbv2.register_targets(TargetGroupArn=tg, Targets=[{"Id": x} for x in everyone[i:i + 100]])
    if ecs:
        c.ecs.create_cluster(clusterName=CLUSTER)
        for iid in world.managed:
            doc = json.dumps({"instanceId": iid, "region": "us-east-1", "availabilityZone": "us-east-1a",
                              "accountId": ACCOUNT, "instanceType": "m5.large", "imageId": AMI, "privateIp": "10.20.0.9"})
            ci = c.ecs.register_container_instance(cluster=CLUSTER, instanceIdentityDocument=doc)["containerInstance"]
            world.container_instances[iid] = ci["containerInstanceArn"]
    lt = c.ec2.create_launch_template(LaunchTemplateName="train-lt",
                                      LaunchTemplateData={"ImageId": AMI, "InstanceType": "m5.large"})
    c.autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=GROUP, MinSize=0, MaxSize=4, DesiredCapacity=0, VPCZoneIdentifier=subnet,
        LaunchTemplate={"LaunchTemplateId": lt["LaunchTemplate"]["LaunchTemplateId"], "Version": "$Latest"})
    c.autoscaling.put_lifecycle_hook(AutoScalingGroupName=GROUP, LifecycleHookName=HOOK,
                                     LifecycleTransition="autoscaling:EC2_INSTANCE_TERMINATING",
                                     HeartbeatTimeout=300, DefaultResult="CONTINUE")
    create_journal_table(c.dynamodb, TABLE)
    return world


# --- the events AWS sends -----------------------------------------------------------------------

def _now(offset: float = 0) -> str:
    return (datetime.now(timezone.utc) + timedelta(seconds=offset)).strftime("%Y-%m-%dT%H:%M:%SZ")


def envelope(detail_type: str, source: str, detail: dict, *, resources=None) -> dict:
    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": detail_type, "source": source,
            "account": ACCOUNT, "time": _now(), "region": "us-east-1", "resources": resources or [], "detail": detail}


def spot_warning(instance_id: str, action: str = "terminate") -> dict:
    return envelope("EC2 Spot Instance Interruption Warning", "aws.ec2",
                    {"instance-id": instance_id, "instance-action": action},
                    resources=[f"arn:aws:ec2:us-east-1:{ACCOUNT}:instance/{instance_id}"])


def rebalance(instance_id: str) -> dict:
    return envelope("EC2 Instance Rebalance Recommendation", "aws.ec2", {"instance-id": instance_id})


def state_change(instance_id: str, state: str) -> dict:
    return envelope("EC2 Instance State-change Notification", "aws.ec2", {"instance-id": instance_id, "state": state})


def health_scheduled(instance_ids: list[str], arn: str = "arn:aws:health:us-east-1::event/EC2/AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED/1") -> dict:
    return envelope("AWS Health Event", "aws.health", {
        "eventArn": arn, "service": "EC2", "eventTypeCode": "AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED",
        "eventTypeCategory": "scheduledChange", "startTime": "Sat, 05 Jun 2027 07:00:00 GMT",
        "affectedEntities": [{"entityValue": i} for i in instance_ids]})


def lifecycle_terminate(instance_id: str, token: str | None = None, group: str = GROUP) -> dict:
    return envelope("EC2 Instance-terminate Lifecycle Action", "aws.autoscaling", {
        "LifecycleActionToken": token or str(uuid.uuid4()), "AutoScalingGroupName": group,
        "LifecycleHookName": HOOK, "EC2InstanceId": instance_id,
        "LifecycleTransition": "autoscaling:EC2_INSTANCE_TERMINATING", "Origin": "AutoScalingGroup",
        "Destination": "EC2"})


def capacity_reservation_warning(instance_id: str) -> dict:
    return envelope("EC2 Capacity Reservation Instance Interruption Warning", "aws.ec2", {
        "instance-id": instance_id, "instance-action": "terminate",
        "instance-termination-time": _now(120), "azId": "use1-az1"})
