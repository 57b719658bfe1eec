"""What every spotkit EC2 instance carries, whether it runs in a compute group or alone: an egress-only
security group and an instance role (SSM core, plus one inline policy ``spotkit-instance`` built from the
construct's statement list when the stack is synthesized, so capabilities added later still land in it).

Both are created in the caller's scope with fixed ids (``security-group``, ``role``, ``ssm-core``,
``policy``, ``instance-profile``), so their Terraform addresses are the caller's.
"""

from __future__ import annotations

import json
from typing import Mapping, Optional

from constructs import Construct

from spotkit.constructs.iam import assume_role_policy
from spotkit.constructs.lazy import lazy_string

SSM_CORE_POLICY = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"


def egress_only_security_group(scope: Construct, *, name: str, vpc_id: str, description: str,
                               tags: Mapping[str, str]):
    """A security group with all outbound open and no inbound; replaced before it is destroyed."""
    from cdktn import TerraformResourceLifecycle
    from cdktn_aws.vpc import AwsSecurityGroup as SecurityGroup

    return SecurityGroup(
        scope, "security-group",
        name_prefix=f"{name}-",
        description=description,
        vpc_id=vpc_id,
        egress=[SecurityGroup.EgressProperty(from_port=0, to_port=0, protocol="-1", cidr_blocks=["0.0.0.0/0"],
                                             description="all outbound")],
        tags=tags,
        lifecycle=TerraformResourceLifecycle(create_before_destroy=True),
    )


def instance_role(scope: Construct, *, name: str, tags: Mapping[str, str], statements: list,
                  profile_tags: Optional[Mapping[str, str]] = None):
    """(role, instance profile) for EC2; the inline policy reads ``statements`` at synthesis time."""
    from cdktn_aws.iam import (
        AwsInstanceProfile as IamInstanceProfile,
        AwsRole as IamRole,
        AwsRolePolicy as IamRolePolicy,
        AwsRolePolicyAttachment as IamRolePolicyAttachment,
    )

    role = IamRole(
        scope, "role",
        name_prefix=f"{name}-"[:38],
        assume_role_policy=assume_role_policy("ec2.amazonaws.com"),
        tags=tags,
    )
    IamRolePolicyAttachment(scope, "ssm-core", role=role.name, policy_arn=SSM_CORE_POLICY)
    IamRolePolicy(scope, "policy", name="spotkit-instance", role=role.id,
                  policy=lazy_string(lambda: json.dumps({"Version": "2012-10-17", "Statement": statements})))
    profile = IamInstanceProfile(scope, "instance-profile", name_prefix=f"{name}-"[:38], role=role.name,
                                 tags=profile_tags)
    return role, profile
