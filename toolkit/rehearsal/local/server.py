"""The emulator process: moto's server with fixes for moto bugs that break real Terraform applies.

Run as ``python -m spotkit.rehearsal.local.server -H 127.0.0.1 -p PORT`` (``spotkit.rehearsal.local.emulator.start`` does).
Each fix is listed in ``MOTO_FIXES`` with the reason; none invents behavior AWS does not have.
"""

from __future__ import annotations

import sys

MOTO_FIXES: list[tuple[str, str]] = [
    ("autoscaling UpdateAutoScalingGroup keeps MixedInstancesPolicy when the call leaves it out",
     "moto 5.2 sets it to None on every update; AWS keeps it. The aws provider creates a group that has "
     "initial lifecycle hooks at size 0 and then updates its sizes, so the policy vanished under moto"),
    ("ec2 CreateLaunchTemplate keeps the template's own tags out of its LaunchTemplateData",
     "moto 5.2 copies the request's TagSpecifications (ResourceType launch-template: the tags of the "
     "template itself) into the data's TagSpecifications (the tags of launched instances and volumes); AWS "
     "keeps them apart, so under moto every re-plan wanted to change the launch template"),
    ("sqs GetQueueAttributes returns RedrivePolicy as compact JSON",
     "moto 5.2 answers json.dumps with spaces; AWS answers {\"deadLetterTargetArn\":\"...\",\"maxReceiveCount\":5}, "
     "and the provider compares the strings, so every re-plan wanted to change the queue"),
    ("ec2 DescribeSecurityGroupRules returns the description of a rule that references a security group",
     "moto 5.2 reads a rule's Description only from its CIDR range, so a rule from another security group "
     "came back without the description it was created with; AWS returns it"),
    ("ecs CreateService keeps the capacity provider strategy, placement, grace period and tagging settings",
     "moto 5.2 drops capacityProviderStrategy, placementStrategy/Constraints, healthCheckGracePeriodSeconds, "
     "enableECSManagedTags, enableExecuteCommand and availabilityZoneRebalancing, and reports launchType EC2 "
     "for a service on capacity providers; AWS returns what was set (and no launch type), so every re-plan "
     "wanted to replace the service"),
    ("eks CreateCluster keeps accessConfig; CreateNodegroup keeps updateConfig and invents no remoteAccess",
     "moto 5.2 drops the cluster's accessConfig and the node group's updateConfig, and gives every node group "
     "remoteAccess with an 'eksKeypair' SSH key it was not asked for; AWS returns what was set, so every "
     "re-plan wanted to replace the cluster and its node groups"),
    ("ec2 RunInstances with InstanceMarketOptions spot makes a spot instance with its spot request",
     "moto 5.2 reports neither InstanceLifecycle spot nor a SpotInstanceRequestId for it, so the provider "
     "read no instance_market_options back and every re-plan wanted to replace the instance; AWS makes a "
     "spot request (one-time or persistent, with its interruption behavior) and links it"),
    ("sqs queue operations are atomic, and ReceiveMessage computes the queue's attributes once per call",
     "moto 5.2's threaded server runs DeleteMessage, ReceiveMessage and SendMessage on a queue at once, and two "
     "concurrent deletes can undo one another (deleted messages are delivered again: `handle-events "
     "--concurrency 4` drains a wave with several deletes at once); and it scans the whole queue about nine "
     "times per message it hands out. SQS deletes for good and hands out a message without scanning the "
     "queue (toolkit/rehearsal/local/sqs_queue.py; same answers)"),
    ("iam calls are handled one at a time",
     "moto 5.2 finds a role or instance profile by iterating its dict while another thread of the server may "
     "insert into it (\"dictionary changed size during iteration\", HTTP 500); Terraform creates a stack's "
     "roles and instance profiles in parallel and polls each new profile, and with the local provider's 2 "
     "retries a stack with two instance profiles (gpu_inference, ecs_spot) failed now and then in the "
     "instance profile wait, more often under load. IAM answers each call consistently"),
]


def _patch_autoscaling() -> None:
    from moto.autoscaling.models import FakeAutoScalingGroup

    original = FakeAutoScalingGroup.update

    def update(self, *args, **kwargs):
        keep = self.mixed_instances_policy
        if kwargs.get("mixed_instances_policy") is None and keep is not None and not kwargs.get("launch_template") \
                and not kwargs.get("launch_config_name"):
            import copy

            # moto stored the spec with both the id and the name, which its own validation refuses.
            kept = copy.deepcopy(keep)
            spec = (kept.get("LaunchTemplate") or {}).get("LaunchTemplateSpecification") or {}
            if spec.get("LaunchTemplateId"):
                spec.pop("LaunchTemplateName", None)
            kwargs["mixed_instances_policy"] = kept
        return original(self, *args, **kwargs)

    FakeAutoScalingGroup.update = update


def _patch_launch_template_tags() -> None:
    import copy

    from moto.ec2.responses.launch_templates import LaunchTemplates

    original = LaunchTemplates.create_launch_template

    def create_launch_template(self):
        data = self._get_param("LaunchTemplateData", {}) or {}
        own = copy.deepcopy(data.get("TagSpecifications") or [])
        result = original(self)
        template = self.ec2_backend.get_launch_template_by_name(self._get_param("LaunchTemplateName"))
        for version in template.versions:
            if own:
                version.data["TagSpecifications"] = own
            else:
                version.data.pop("TagSpecifications", None)
        return result

    LaunchTemplates.create_launch_template = create_launch_template


def _patch_sqs_redrive_policy() -> None:
    import json

    from moto.sqs.models import Queue

    original = Queue.attributes

    def attributes(self):
        result = original.fget(self)
        if self.redrive_policy:
            result["RedrivePolicy"] = json.dumps(self.redrive_policy, separators=(",", ":"))
        return result

    Queue.attributes = property(attributes)


def _patch_security_group_rule_description() -> None:
    from moto.ec2.models.security_groups import SecurityGroupRule

    def description(self):
        return self.ip_range.get("Description") or (self.source_group or {}).get("Description")

    SecurityGroupRule.description = property(description)


ECS_SERVICE_SETTINGS = {  # CreateService parameter -> moto Service attribute (serialized under the AWS name)
    "capacityProviderStrategy": "capacity_provider_strategy",
    "placementStrategy": "placement_strategy",
    "placementConstraints": "placement_constraints",
    "healthCheckGracePeriodSeconds": "health_check_grace_period_seconds",
    "enableECSManagedTags": "enable_ecs_managed_tags",
    "enableExecuteCommand": "enable_execute_command",
    "availabilityZoneRebalancing": "availability_zone_rebalancing",
}


def _patch_ecs_service_settings() -> None:
    from moto.ecs.responses import EC2ContainerServiceResponse

    original = EC2ContainerServiceResponse.create_service

    def create_service(self):
        result = original(self)
        service = self.ecs_backend.describe_services(self._get_param("cluster", "default"),
                                                     [self._get_param("serviceName")])[0][0]
        for param, attr in ECS_SERVICE_SETTINGS.items():
            value = self._get_param(param)
            if value is not None:
                setattr(service, attr, value)
        if self._get_param("capacityProviderStrategy") and not self._get_param("launchType"):
            service.launch_type = None  # AWS reports no launch type for a service on capacity providers
        return result

    EC2ContainerServiceResponse.create_service = create_service


def _patch_eks_settings() -> None:
    from moto.eks.responses import EKSResponse

    create_cluster, create_nodegroup = EKSResponse.create_cluster, EKSResponse.create_nodegroup

    def patched_create_cluster(self):
        result = create_cluster(self)
        access = self._get_param("accessConfig")
        if access:
            cluster = self.eks_backend.describe_cluster(self._get_param("name"))
            # DescribeCluster returns the authentication mode; the bootstrap flag is create-only
            cluster.access_config = {"authenticationMode": access.get("authenticationMode", "CONFIG_MAP")}
        return result

    def patched_create_nodegroup(self):
        result = create_nodegroup(self)
        group = self.eks_backend.describe_nodegroup(self._get_param("name"), self._get_param("nodegroupName"))
        if not self._get_param("remoteAccess"):
            group.remote_access = None
        if self._get_param("updateConfig"):
            group.update_config = self._get_param("updateConfig")
        return result

    EKSResponse.create_cluster = patched_create_cluster
    EKSResponse.create_nodegroup = patched_create_nodegroup


def _patch_spot_run_instances() -> None:
    from moto.ec2.models.spot_requests import SpotInstanceRequest
    from moto.ec2.responses.instances import InstanceResponse

    original = InstanceResponse.run_instances

    def run_instances(self):
        result = original(self)
        if self._get_param("InstanceMarketOptions.MarketType") != "spot":
            return result
        options = self._get_param("InstanceMarketOptions.SpotOptions", {}) or {}
        launch = SpotInstanceRequest.launch_instance
        for instance in result.result.instances if hasattr(result, "result") else []:
            # The request records the instance RunInstances made; it launches nothing of its own.
            SpotInstanceRequest.launch_instance = lambda req, inst=instance: inst
            try:
                (request,) = self.ec2_backend.request_spot_instances(
                    price=options.get("MaxPrice"), image_id=instance.image_id, count=1,
                    spot_instance_type=options.get("SpotInstanceType", "one-time"), valid_from=None,
                    valid_until=options.get("ValidUntil"), launch_group=None, availability_zone_group=None,
                    key_name=instance.key_name, security_groups=[], user_data=None,
                    instance_type=instance.instance_type, placement=instance.placement, kernel_id=None,
                    ramdisk_id=None, monitoring_enabled=False, subnet_id=instance.subnet_id,
                    instance_interruption_behaviour=options.get("InstanceInterruptionBehavior", "terminate"))
            finally:
                SpotInstanceRequest.launch_instance = launch
            instance.instance_lifecycle = "spot"
            instance.spot_instance_request_id = request.id
        return result

    InstanceResponse.run_instances = run_instances


def _patch_iam_serialized() -> None:
    import threading

    from moto.iam.responses import IamResponse

    lock = threading.Lock()
    original = IamResponse.call_action

    def call_action(self):
        with lock:
            return original(self)

    IamResponse.call_action = call_action


def apply_fixes() -> None:
    """Patch moto with every fix of ``MOTO_FIXES`` (in the emulator process only)."""
    _patch_autoscaling()
    _patch_launch_template_tags()
    _patch_sqs_redrive_policy()
    _patch_security_group_rule_description()
    _patch_ecs_service_settings()
    _patch_eks_settings()
    _patch_spot_run_instances()
    _patch_iam_serialized()
    from spotkit.rehearsal.local import sqs_queue

    sqs_queue.install()


def main(argv: list[str] | None = None) -> None:
    apply_fixes()
    from moto.server import main as moto_main

    moto_main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
