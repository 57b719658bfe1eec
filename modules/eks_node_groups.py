"""EKS managed node groups for GPU spot pools, and the node role they share.

- ``EksNodeRole``: the EC2 role of worker nodes (EKS worker, CNI, ECR read, SSM core for Run
  Command); Karpenter and Auto Mode nodes get their own role through ``minimal=True``
  (Auto Mode's minimal worker policy and ECR pull-only).
- ``EksManagedNodeGroup``: one managed node group: capacity type (SPOT spreads across every listed
  type with price-capacity-optimized and capacity rebalancing, handled by EKS), the NVIDIA AL2023 AMI
  for GPU groups, lifecycle and role labels, taints, and desired size left to the autoscaler; a launch
  template of its own that requires IMDSv2 with a response hop limit of 1 (``NODE_METADATA_HOP_LIMIT``)
  and carries the encrypted gp3 root volume.

Pods must not reach the node role's credentials: with a hop limit of 1 the IMDSv2 token's response does
not survive the extra network hop of a pod's network namespace, so only processes on the node itself
(kubelet, the VPC CNI, host-network DaemonSets) read instance metadata. EKS's default launch template (used
when a node group has none) sets 2, which lets every pod act as the node role. Pods that need AWS
credentials get them from EKS Pod Identity or IRSA, which do not go through IMDS.

EKS drains a managed spot node on the rebalance recommendation / interruption notice, so pods get
their ``preStop`` hook and ``terminationGracePeriodSeconds`` within the two-minute notice.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from cdktn import TerraformResourceLifecycle, Token
from constructs import Construct

from spotkit.constructs.annotations import warn
from spotkit.constructs.eks_settings import EKS_TAINT_EFFECTS, NodeGroupSettings, validate_node_group
from spotkit.constructs.iam import assume_role_policy
from spotkit.errors import ValidationError
from spotkit.k8s.manifests import GPU_ROLE, NODE_METADATA_HOP_LIMIT
from spotkit.runtime.notice import TAG_CLUSTER, TAG_LIFECYCLE, TAG_NODE_GROUP

NODE_POLICIES = ("AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy", "AmazonEC2ContainerRegistryReadOnly",
                 "AmazonSSMManagedInstanceCore")
AUTO_MODE_NODE_POLICIES = ("AmazonEKSWorkerNodeMinimalPolicy", "AmazonEC2ContainerRegistryPullOnly")


class EksNodeRole(Construct):
    """The role worker nodes assume. ``auto_mode=True`` gives the minimal Auto Mode set."""

    def __init__(self, scope: Construct, id_: str, *, name: str, auto_mode: bool = False,
                 tags: Mapping[str, str] | None = None):
        super().__init__(scope, id_)
        from cdktn_aws.iam import AwsRole as IamRole, AwsRolePolicyAttachment as IamRolePolicyAttachment

        # A fixed name: Karpenter's EC2NodeClass and Auto Mode's NodeClass reference the role by name.
        self.role = IamRole(self, "role", name=name, assume_role_policy=assume_role_policy("ec2.amazonaws.com"),
                            tags=dict(tags or {}))
        self.attachments = [
            IamRolePolicyAttachment(self, f"policy-{p}", role=self.role.name, policy_arn=f"arn:aws:iam::aws:policy/{p}")
            for p in (AUTO_MODE_NODE_POLICIES if auto_mode else NODE_POLICIES)
        ]

    @property
    def arn(self) -> str:
        return self.role.arn

    @property
    def name(self) -> str:
        return self.role.name


class EksManagedNodeGroup(Construct):
    """One managed node group (see ``NodeGroupSettings`` for every setting and its default)."""

    def __init__(self, scope: Construct, id_: str, *, cluster_name: str, cluster_label: str, node_role: EksNodeRole,
                 subnet_ids: Sequence[str], settings: NodeGroupSettings = NodeGroupSettings(), role: str = GPU_ROLE,
                 depends_on: Sequence = ()):
        validate_node_group(settings, role)
        if not subnet_ids:
            raise ValidationError(f"node group {settings.name!r}: subnet_ids is empty: give subnets in 2 or more AZs")
        super().__init__(scope, id_)
        from cdktn_aws.ec2 import AwsLaunchTemplate as LaunchTemplate
        from cdktn_aws.eks import AwsNodeGroup as EksNodeGroup

        s = self.settings = settings
        if s.is_spot and s.gpu and len(set(s.instance_types)) == 2:
            warn(self, f"node group {s.name!r}: 2 GPU instance types leave one spot pool when the other is "
                       "reclaimed; list 3 or more (e.g. g5.xlarge, g6.xlarge, g6e.xlarge)")
        self.labels = s.node_labels(role)
        tags = {TAG_CLUSTER: cluster_label, TAG_NODE_GROUP: s.name, TAG_LIFECYCLE: s.lifecycle}
        # EKS refuses disk_size next to a launch template: the root volume is the template's. No image and
        # no instance type here: the node group keeps choosing the EKS AMI (ami_type) and the types.
        self.launch_template = LaunchTemplate(
            self, "launch-template",
            name_prefix=f"{cluster_label}-{s.name}-"[:37],
            description=f"spotkit EKS node group {s.name}: IMDSv2 with hop limit {NODE_METADATA_HOP_LIMIT}",
            update_default_version=True,
            metadata_options=LaunchTemplate.MetadataOptionsProperty(
                http_endpoint="enabled", http_tokens="required",
                http_put_response_hop_limit=NODE_METADATA_HOP_LIMIT),
            tag_specifications=[LaunchTemplate.TagSpecificationsProperty(resource_type="instance", tags=tags),
                                LaunchTemplate.TagSpecificationsProperty(resource_type="volume", tags=tags)],
            tags=tags,
        )
        # (an override, as compute_group does: the typed block device struct drops nested keys in this engine)
        self.launch_template.add_override("block_device_mappings", [{"device_name": "/dev/xvda", "ebs": {
            "volume_size": s.disk_size_gib, "volume_type": "gp3", "encrypted": "true",
            "delete_on_termination": "true"}}])
        self.group = EksNodeGroup(
            self, "group",
            cluster_name=cluster_name,
            node_group_name_prefix=f"{cluster_label}-{s.name}-"[:37],
            node_role_arn=node_role.arn,
            subnet_ids=list(subnet_ids),
            capacity_type=s.capacity_type,
            instance_types=list(s.instance_types),
            ami_type=s.ami_type,
            launch_template=EksNodeGroup.LaunchTemplateProperty(
                id=self.launch_template.id, version=Token.as_string(self.launch_template.latest_version)),
            scaling_config=EksNodeGroup.ScalingConfigProperty(
                min_size=s.min_size, max_size=s.max_size,
                desired_size=s.desired_size if s.desired_size is not None else s.min_size),
            update_config=EksNodeGroup.UpdateConfigProperty(max_unavailable_percentage=s.max_unavailable_percentage),
            labels=self.labels,
            taint=[EksNodeGroup.TaintProperty(key=t.key, value=t.value, effect=EKS_TAINT_EFFECTS[t.effect]) for t in s.taints],
            tags=tags,
            # The cluster autoscaler / users change desired size; Terraform must not pull it back.
            lifecycle=TerraformResourceLifecycle(create_before_destroy=True,
                                                 ignore_changes=["scaling_config[0].desired_size"]),
            depends_on=[*node_role.attachments, *depends_on] or None,
        )

    @property
    def node_group_name(self) -> str:
        return self.group.node_group_name
