"""The emulator process: moto's server with fixes for moto bugs that break real Terraform applies.

Run as ``python -m toolkit.local.server -H 127.0.0.1 -p PORT`` (``toolkit.local.emulator.start`` does).
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


def apply_fixes() -> None:
    """Patch moto with every fix of ``MOTO_FIXES`` (in the emulator process only)."""
    _patch_autoscaling()
    _patch_launch_template_tags()
    _patch_sqs_redrive_policy()
    _patch_security_group_rule_description()


def main(argv: list[str] | None = None) -> None:
    apply_fixes()
    from moto.server import main as moto_main

    moto_main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
