"""A spot group with retained data volumes, built with boto3 on the moto server (the runbook tests' world).

``SpotGroupWorld.create(aws, ...)`` makes a VPC with one subnet per AZ, a launch template, and a
mixed-instances Auto Scaling group tagged ``spotkit:group`` (tags propagate to instances), then one
retained data volume per instance (``spotkit:group``, ``spotkit:device``, ``spotkit:retain=true``,
DeleteOnTermination off) attached as the device, the way the data-volume module lays them out.

``interrupt(instance_id)`` is what AWS does on a spot reclaim: the instance goes, its retained volume
becomes available, and the group launches a replacement (moto's
``TerminateInstanceInAutoScalingGroup`` with ``ShouldDecrementDesiredCapacity=False`` does both).
"""

from __future__ import annotations

from dataclasses import dataclass, field

AZS = ("us-east-1a", "us-east-1b")


def _tags(d: dict) -> list[dict]:
    return [{"Key": k, "Value": v} for k, v in d.items()]


@dataclass
class SpotGroupWorld:
    ec2: object
    asg: object
    group: str
    subnets: dict[str, str]
    launch_template_id: str
    device: str = "/dev/sdf"
    volumes: dict[str, str] = field(default_factory=dict)  # instance id -> data volume id

    @classmethod
    def create(cls, aws, group: str = "training", size: int = 2, az: str = "us-east-1a", device: str = "/dev/sdf",
               on_demand_base: int = 0, with_volumes: bool = True) -> "SpotGroupWorld":
        ec2, asg = aws.client("ec2"), aws.client("autoscaling")
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnets = {z: ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=z)["Subnet"]["SubnetId"]
                   for i, z in enumerate(AZS)}
        lt = ec2.create_launch_template(LaunchTemplateName=f"{group}-lt", LaunchTemplateData={
            "ImageId": "ami-12c6146b", "InstanceType": "m6i.large"})["LaunchTemplate"]["LaunchTemplateId"]
        asg.create_auto_scaling_group(
            AutoScalingGroupName=group, MinSize=0, MaxSize=max(size * 2, 4), DesiredCapacity=size,
            VPCZoneIdentifier=subnets[az],
            MixedInstancesPolicy={
                "LaunchTemplate": {"LaunchTemplateSpecification": {"LaunchTemplateId": lt, "Version": "$Latest"},
                                   "Overrides": [{"InstanceType": "m6i.large"}, {"InstanceType": "m6a.large"}]},
                "InstancesDistribution": {"OnDemandBaseCapacity": on_demand_base,
                                          "OnDemandPercentageAboveBaseCapacity": 0,
                                          "SpotAllocationStrategy": "price-capacity-optimized"}},
            Tags=[{"Key": k, "Value": v, "PropagateAtLaunch": True, "ResourceId": group,
                   "ResourceType": "auto-scaling-group"} for k, v in {"spotkit:group": group, "spotkit:managed": "true"}.items()])
        world = cls(ec2, asg, group, subnets, lt, device)
        for iid in world.instance_ids() if with_volumes else ():
            inst_az = world.instance_az(iid)
            vol = ec2.create_volume(AvailabilityZone=inst_az, Size=20, VolumeType="gp3", TagSpecifications=[{
                "ResourceType": "volume", "Tags": _tags({"spotkit:group": group, "spotkit:device": device,
                                                         "spotkit:retain": "true", "Name": f"{group}-data"})}])["VolumeId"]
            ec2.attach_volume(VolumeId=vol, InstanceId=iid, Device=device)
            world.volumes[iid] = vol
        return world

    @classmethod
    def all_reclaimed(cls, aws, size: int) -> "SpotGroupWorld":
        """On a clean emulator, a group of ``size`` instances with their data volumes, every one reclaimed
        and replaced (the volumes left behind for ``recover volumes``)."""
        aws.reset()
        world = cls.create(aws, size=size)
        for iid in world.instance_ids():
            world.interrupt(iid)
        return world

    def instance_ids(self) -> list[str]:
        g = self.asg.describe_auto_scaling_groups(AutoScalingGroupNames=[self.group])["AutoScalingGroups"][0]
        return sorted(i["InstanceId"] for i in g["Instances"])

    def instance_az(self, instance_id: str) -> str:
        return self.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]["Placement"]["AvailabilityZone"]

    def move_to(self, az: str) -> None:
        """Launch replacements only in ``az`` from now on (as when spot is gone in the old AZ)."""
        self.asg.update_auto_scaling_group(AutoScalingGroupName=self.group, VPCZoneIdentifier=self.subnets[az])

    def interrupt(self, instance_id: str) -> str:
        """Reclaim an instance; return the id of the replacement the group launched."""
        before = set(self.instance_ids())
        self.asg.terminate_instance_in_auto_scaling_group(InstanceId=instance_id, ShouldDecrementDesiredCapacity=False)
        new = sorted(set(self.instance_ids()) - before)
        assert len(new) == 1, f"the group launched {new} after reclaiming {instance_id}"
        return new[0]

    def instance(self, instance_id: str) -> dict:
        return self.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]

    def volume(self, volume_id: str) -> dict:
        return self.ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]

    def all_volumes(self) -> list[dict]:
        return self.ec2.describe_volumes(Filters=[{"Name": "tag:spotkit:group", "Values": [self.group]}])["Volumes"]

    def all_snapshots(self) -> list[dict]:
        return self.ec2.describe_snapshots(OwnerIds=["self"], Filters=[{"Name": "tag:spotkit:group", "Values": [self.group]}])["Snapshots"]

    def devices(self, instance_id: str) -> dict[str, str]:
        inst = self.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
        return {b["DeviceName"]: b["Ebs"]["VolumeId"] for b in inst.get("BlockDeviceMappings", [])}
