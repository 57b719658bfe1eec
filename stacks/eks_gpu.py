"""EKS GPU spot stack: an EKS cluster with an on-demand system node group, spot GPU capacity (managed
node groups, Karpenter or EKS Auto Mode), EFS for checkpoints through the EFS CSI driver, and
optionally the Kubernetes manifests deployed through Terraform's kubernetes provider.

The Kubernetes manifests come from ``stacks/eks_gpu_config.build_manifests``, the same builder
``spotkit k8s render eks_gpu`` uses, so the rendered files and the deployed objects cannot drift.
"""

from __future__ import annotations

import json

from cdktn import Fn, TerraformOutput
from constructs import Construct

from spotkit.constructs.efs_checkpoints import EfsCheckpoints
from spotkit.constructs.eks_cluster import AUTO_NODE_POLICY, EksCluster
from spotkit.constructs.iam import assume_role_policy
from spotkit.constructs.eks_node_groups import EksManagedNodeGroup, EksNodeRole
from spotkit.constructs.user_data import escape_for_terraform
from spotkit.stacks.base import SpotkitStack
from spotkit.stacks.eks_gpu_config import EksGpuConfig, build_manifests, validate_config
from spotkit.k8s.manifests import SYSTEM_ROLE
from spotkit.runtime.notice import TAG_CLUSTER

KUBERNETES_PROVIDER_SOURCE = "hashicorp/kubernetes"
KUBERNETES_PROVIDER_CONSTRAINT = ">= 2.23, < 3"
EFS_CSI_POLICY = "arn:aws:iam::aws:policy/service-role/AmazonEFSCSIDriverPolicy"
# The EFS CSI controller must run on the tainted system nodes; its node DaemonSet on every node,
# including spot GPU nodes (tolerateAllTaints).
EFS_CSI_CONFIGURATION = {
    "controller": {"tolerations": [{"key": "CriticalAddonsOnly", "operator": "Exists", "effect": "NoSchedule"}]},
    "node": {"tolerateAllTaints": True},
}


class EksGpuStack(SpotkitStack):
    description = "EKS with spot GPU pools"

    def __init__(self, scope: Construct, id_: str, config: EksGpuConfig = EksGpuConfig()):
        validate_config(config)
        super().__init__(scope, id_, config)
        self.config = config
        vpc_id, subnet_ids = self.resolve_network(config.network)
        self.subnet_ids = subnet_ids
        mode = config.node_provisioning
        tags = {TAG_CLUSTER: config.name}

        self.node_role = EksNodeRole(self, "node-role", name=f"{config.name}-node"[:64], tags=tags)
        self.pool_node_role = None
        if config.uses_node_pools:
            self.pool_node_role = EksNodeRole(self, "pool-node-role", name=config.karpenter_node_role_name,
                                              auto_mode=mode == "auto_mode", tags=tags)

        self.cluster = EksCluster(
            self, "cluster", name=config.name, subnet_ids=subnet_ids, settings=config.cluster,
            auto_mode=mode == "auto_mode",
            auto_mode_node_role_arn=self.pool_node_role.arn if mode == "auto_mode" else None, tags=tags,
        )
        self._node_groups(subnet_ids)
        self._addons()
        self.interruption = None
        if config.uses_node_pools:
            self._node_pools(subnet_ids)
        self._checkpoints(vpc_id, subnet_ids)
        if config.deploy_manifests:
            if not config.cluster.endpoint_public_access:
                from spotkit.constructs.annotations import warn

                warn(self, f"eks_gpu {config.name!r}: deploy_manifests with a private API endpoint (the default): "
                           "run terraform from inside the VPC (VPN, bastion, CI runner in the VPC), or set "
                           "cluster.endpoint_public_access with cluster.public_access_cidrs naming where it runs")
            self._deploy_manifests()

        TerraformOutput(self, "cluster_name", value=self.cluster.cluster_name)
        TerraformOutput(self, "cluster_endpoint", value=self.cluster.endpoint)
        TerraformOutput(self, "kubeconfig_command",
                        value=f"aws eks update-kubeconfig --region {config.region} --name {config.name}")
        TerraformOutput(self, "render_command", value=Fn.join("", [
            "spotkit k8s render eks_gpu --file-system-id ", self.file_system_id or "<efs id>",
            " --access-point-id ", self.access_point_id or "<access point id>"]))

    # --- parts of the stack -----------------------------------------------------------------

    def _node_groups(self, subnet_ids: list) -> None:
        """The system group and the managed GPU groups. Auto Mode: its built-in "system" NodePool (on-demand,
        tainted CriticalAddonsOnly) takes the system group's role; a managed node group would get no CNI or
        kube-proxy there (Auto Mode bootstraps no add-ons)."""
        config, mode = self.config, self.config.node_provisioning
        cluster_name = self.cluster.cluster_name
        self.system_group = None
        if mode != "auto_mode":
            self.system_group = EksManagedNodeGroup(
                self, "system-group", cluster_name=cluster_name, cluster_label=config.name,
                node_role=self.node_role, subnet_ids=subnet_ids, settings=config.system_group, role=SYSTEM_ROLE)
        self.gpu_groups = []
        if mode == "managed":
            for group in config.spot_gpu_groups:
                self.gpu_groups.append(EksManagedNodeGroup(
                    self, f"group-{group.name}", cluster_name=cluster_name, cluster_label=config.name,
                    node_role=self.node_role, subnet_ids=subnet_ids, settings=group))
        if config.on_demand_gpu_group:
            self.gpu_groups.append(EksManagedNodeGroup(
                self, f"group-{config.on_demand_gpu.name}", cluster_name=cluster_name, cluster_label=config.name,
                node_role=self.node_role, subnet_ids=subnet_ids, settings=config.on_demand_gpu))

    def _addons(self) -> None:
        """The add-ons (Auto Mode runs CNI, kube-proxy, CoreDNS and the pod identity agent itself) and the
        EFS CSI driver with its pod identity."""
        system = [self.system_group.group] if self.system_group else []
        if self.config.node_provisioning != "auto_mode":
            for addon in ("vpc-cni", "kube-proxy", "eks-pod-identity-agent"):
                self.cluster.add_addon(addon)
            self.cluster.add_addon("coredns", depends_on=system)  # needs a node to become ACTIVE
        self.efs_csi_role = self._service_role("efs-csi", EFS_CSI_POLICY)
        self.cluster.add_pod_identity("efs-csi-controller", namespace="kube-system",
                                      service_account="efs-csi-controller-sa", role_arn=self.efs_csi_role.arn)
        self.efs_csi_addon = self.cluster.add_addon("aws-efs-csi-driver", configuration_values=EFS_CSI_CONFIGURATION,
                                                    depends_on=system)

    def _node_pools(self, subnet_ids: list) -> None:
        """Karpenter / Auto Mode: subnets tagged for discovery, the pool nodes' access entry, and for Karpenter
        its controller role and interruption queue."""
        self.cluster.tag_for_discovery(subnet_ids)
        if self.config.node_provisioning == "auto_mode":
            self.cluster.add_access_entry("auto-nodes", self.pool_node_role.arn, entry_type="EC2",
                                          policy_arn=AUTO_NODE_POLICY)
        else:
            self.cluster.add_access_entry("karpenter-nodes", self.pool_node_role.arn, entry_type="EC2_LINUX")
            self._karpenter()

    def _checkpoints(self, vpc_id: str, subnet_ids: list) -> None:
        """Checkpoints on EFS: the file system given, or one created, reachable from every node."""
        checkpoints = self.config.checkpoints
        self.file_system_id, self.access_point_id = checkpoints.file_system_id, checkpoints.access_point_id
        self.efs = None
        if self.file_system_id or not checkpoints.create_efs:
            return
        self.efs = EfsCheckpoints(self, "checkpoints", name=self.config.name, vpc_id=vpc_id, subnet_ids=subnet_ids,
                                  settings=checkpoints.efs)
        # Managed, Karpenter and Auto Mode nodes all carry the cluster security group.
        self.efs.allow_from(self.cluster.security_group_id, "NFS from EKS nodes (cluster security group)")
        for role in filter(None, [self.node_role, self.pool_node_role]):
            self.efs.grant_mount(role.role)
        self.file_system_id, self.access_point_id = self.efs.file_system.id, self.efs.access_point.id
        TerraformOutput(self, "efs_file_system_id", value=self.file_system_id)
        TerraformOutput(self, "efs_access_point_id", value=self.access_point_id)

    # --- helpers ----------------------------------------------------------------------------

    def _service_role(self, name: str, policy_arn: str | None = None, statements: list | None = None):
        """A role for a Kubernetes service account through EKS Pod Identity."""
        from cdktn_aws.iam import (
            AwsRole as IamRole,
            AwsRolePolicy as IamRolePolicy,
            AwsRolePolicyAttachment as IamRolePolicyAttachment,
        )

        role = IamRole(self, f"{name}-role", name_prefix=f"{self.config.name}-{name}-"[:38],
                       assume_role_policy=assume_role_policy("pods.eks.amazonaws.com", tag_session=True),
                       tags={TAG_CLUSTER: self.config.name})
        if policy_arn:
            IamRolePolicyAttachment(self, f"{name}-policy", role=role.name, policy_arn=policy_arn)
        if statements:
            IamRolePolicy(self, f"{name}-inline", name="spotkit", role=role.id,
                          policy=json.dumps({"Version": "2012-10-17", "Statement": statements}))
        return role

    def _karpenter(self) -> None:
        """The Karpenter controller's role (Pod Identity, kube-system/karpenter) and its interruption queue."""
        queue_arn = self._interruption_queue()
        statements = karpenter_controller_statements(
            cluster_name=self.config.name, region=self.config.region, partition=self._partition(),
            node_role_arn=self.pool_node_role.arn, cluster_arn=self.cluster.cluster.arn)
        if queue_arn:
            statements.append({"Sid": "AllowInterruptionQueueActions", "Effect": "Allow", "Resource": queue_arn,
                               "Action": ["sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl",
                                          "sqs:ReceiveMessage"]})
        self.karpenter_role = self._service_role("karpenter", statements=statements)
        self.cluster.add_pod_identity("karpenter", namespace="kube-system", service_account="karpenter",
                                      role_arn=self.karpenter_role.arn)
        TerraformOutput(self, "karpenter_node_role_name", value=self.pool_node_role.name)

    def _partition(self) -> str:
        from cdktn_aws.meta_data_sources import DataAwsPartition

        return DataAwsPartition(self, "partition").partition

    def _interruption_queue(self):
        """The SQS queue + EventBridge rules Karpenter reads (chart value ``settings.interruptionQueue``);
        None when ``karpenter.interruption_queue`` is off.

        Reuses the interruption module (spot interruption warning, rebalance recommendation, state change,
        AWS Health scheduled change rules; encrypted queue with a DLQ; a queue policy that only lets those
        rules send) in ``queue`` mode: Karpenter is the queue's one consumer, so no Lambda may compete for
        its messages, and there are no Auto Scaling groups to rehearse with FIS. Retention is 5 minutes as
        Karpenter recommends: a notice older than that is moot.
        """
        if not self.config.karpenter.interruption_queue:
            return None
        import warnings

        from spotkit.constructs.annotations import SpotkitWarning
        from spotkit.constructs.interruption_events import InterruptionEvents, InterruptionEventsSettings

        settings = InterruptionEventsSettings(handler_mode="queue", create_fis_templates=False,
                                              message_retention_seconds=300, checkpoint_command="")
        with warnings.catch_warnings():
            # Its queue-mode warning names 'spotkit handle-events'; here Karpenter is the consumer.
            warnings.simplefilter("ignore", SpotkitWarning)
            # Karpenter nodes belong to no Auto Scaling group: the cluster name stands in, so the
            # lifecycle-action rule matches nothing while the EC2 and Health rules route every notice.
            self.interruption = InterruptionEvents(self, "interruption", name=self.config.name,
                                                   groups=[self.config.name], settings=settings)
        TerraformOutput(self, "karpenter_interruption_queue", value=self.interruption.queue.name)
        return self.interruption.queue.arn

    def _deploy_manifests(self) -> None:
        """The manifests as ``kubernetes_manifest`` resources (opt-in: needs the hashicorp/kubernetes
        provider, which offline mirrors may lack, and a reachable cluster at plan time)."""
        from cdktn_aws.eks import DataAwsClusterAuth as DataAwsEksClusterAuth

        auth = DataAwsEksClusterAuth(self, "cluster-auth", name=self.cluster.cluster_name)
        self.add_override("terraform.required_providers.kubernetes",
                          {"source": KUBERNETES_PROVIDER_SOURCE, "version": KUBERNETES_PROVIDER_CONSTRAINT})
        self.add_override("provider.kubernetes", [{
            "host": self.cluster.endpoint,
            "cluster_ca_certificate": Fn.base64decode(self.cluster.certificate_authority_data),
            "token": auth.token,
        }])
        manifests = build_manifests(self.config, file_system_id=self.file_system_id,
                                    access_point_id=self.access_point_id)
        depends = [self.efs_csi_addon, *([self.system_group.group] if self.system_group else [])]
        self.k8s_manifests = {}
        for name, manifest in manifests.items():
            res = _kubernetes_manifest(self, f"k8s-{name}", depends_on=depends)
            # Shell ${VAR} in the Job's scripts must reach Kubernetes as-is, not as Terraform interpolation.
            res.add_override("manifest", _escape_strings(manifest))
            self.k8s_manifests[name] = res


def karpenter_controller_statements(*, cluster_name: str, region: str, partition: str, node_role_arn: str,
                                    cluster_arn: str) -> list[dict]:
    """The Karpenter controller's IAM statements, mirroring Karpenter v1's reference CloudFormation policy
    (``getting-started-with-karpenter/cloudformation.yaml`` in aws/karpenter-provider-aws; v1 adds the
    ``eks:eks-cluster-name`` tag and names instance profiles by ``karpenter.k8s.aws/ec2nodeclass``):

    - it tags only at creation: RunInstances / CreateFleet / CreateLaunchTemplate of instances, volumes,
      network interfaces, fleets and launch templates only with the request tags
      ``kubernetes.io/cluster/<name>=owned`` and ``karpenter.sh/nodepool``; ``ec2:CreateTags`` only as part
      of those calls (``ec2:CreateAction``) and under the same request tags;
    - after creation it may set only ``karpenter.sh/nodeclaim`` and ``Name``, and only on instances it
      owns (both tags present);
    - it terminates instances and deletes launch templates only when they carry both tags, so it
      cannot tag an instance of someone else's and then terminate it;
    - reads stay on ``*`` (EC2 Describe*, pricing:GetProducts, iam:GetInstanceProfile/ListInstanceProfiles
      have no resource-level scope that fits), EC2 reads limited to the stack's region.

    Long: one IAM policy kept statement for statement beside Karpenter's reference policy (same Sids, same
    order), so it can be compared with that file and audited as a whole.
    """
    ec2 = f"arn:{partition}:ec2:{region}"
    owned_key = f"kubernetes.io/cluster/{cluster_name}"
    created = [f"{ec2}:*:{r}/*" for r in ("fleet", "instance", "volume", "network-interface", "launch-template")]
    owned_request = {f"aws:RequestTag/{owned_key}": "owned", "aws:RequestTag/eks:eks-cluster-name": cluster_name}
    request_tags = {"StringEquals": owned_request, "StringLike": {"aws:RequestTag/karpenter.sh/nodepool": "*"}}
    resource_tags = {"StringEquals": {f"aws:ResourceTag/{owned_key}": "owned"},
                     "StringLike": {"aws:ResourceTag/karpenter.sh/nodepool": "*"}}
    profile_owned = {f"aws:ResourceTag/{owned_key}": "owned", "aws:ResourceTag/topology.kubernetes.io/region": region}
    profile_request = {**owned_request, "aws:RequestTag/topology.kubernetes.io/region": region}
    nodeclass = "karpenter.k8s.aws/ec2nodeclass"
    return [
        {"Sid": "AllowScopedEC2InstanceActions", "Effect": "Allow",
         "Resource": [f"arn:{partition}:ec2:{region}::image/*", f"arn:{partition}:ec2:{region}::snapshot/*",
                      f"{ec2}:*:spot-instances-request/*", f"{ec2}:*:security-group/*", f"{ec2}:*:subnet/*",
                      f"{ec2}:*:launch-template/*"],
         "Action": ["ec2:RunInstances", "ec2:CreateFleet"]},
        {"Sid": "AllowScopedEC2InstanceActionsWithTags", "Effect": "Allow", "Resource": created,
         "Action": ["ec2:RunInstances", "ec2:CreateFleet", "ec2:CreateLaunchTemplate"],
         "Condition": request_tags},
        {"Sid": "AllowScopedResourceCreationTagging", "Effect": "Allow", "Resource": created,
         "Action": "ec2:CreateTags",
         "Condition": {"StringEquals": {**owned_request,
                                        "ec2:CreateAction": ["RunInstances", "CreateFleet", "CreateLaunchTemplate"]},
                       "StringLike": {"aws:RequestTag/karpenter.sh/nodepool": "*"}}},
        {"Sid": "AllowScopedResourceTagging", "Effect": "Allow", "Resource": f"{ec2}:*:instance/*",
         "Action": "ec2:CreateTags",
         "Condition": {**resource_tags,
                       "StringEqualsIfExists": {"aws:RequestTag/eks:eks-cluster-name": cluster_name},
                       "ForAllValues:StringEquals": {"aws:TagKeys": ["eks:eks-cluster-name", "karpenter.sh/nodeclaim",
                                                                     "Name"]}}},
        {"Sid": "AllowScopedDeletion", "Effect": "Allow",
         "Resource": [f"{ec2}:*:instance/*", f"{ec2}:*:launch-template/*"],
         "Action": ["ec2:TerminateInstances", "ec2:DeleteLaunchTemplate"], "Condition": resource_tags},
        {"Sid": "AllowRegionalReadActions", "Effect": "Allow", "Resource": "*",
         "Action": ["ec2:DescribeAvailabilityZones", "ec2:DescribeImages", "ec2:DescribeInstances",
                    "ec2:DescribeInstanceTypeOfferings", "ec2:DescribeInstanceTypes", "ec2:DescribeLaunchTemplates",
                    "ec2:DescribeSecurityGroups", "ec2:DescribeSpotPriceHistory", "ec2:DescribeSubnets"],
         "Condition": {"StringEquals": {"aws:RequestedRegion": region}}},
        {"Sid": "AllowSSMReadActions", "Effect": "Allow", "Action": "ssm:GetParameter",
         "Resource": f"arn:{partition}:ssm:{region}::parameter/aws/service/*"},
        {"Sid": "AllowPricingReadActions", "Effect": "Allow", "Action": "pricing:GetProducts", "Resource": "*"},
        {"Sid": "AllowPassingInstanceRole", "Effect": "Allow", "Action": "iam:PassRole", "Resource": node_role_arn,
         "Condition": {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}}},
        {"Sid": "AllowScopedInstanceProfileCreationActions", "Effect": "Allow", "Resource": "*",
         "Action": ["iam:CreateInstanceProfile"],
         "Condition": {"StringEquals": profile_request,
                       "StringLike": {f"aws:RequestTag/{nodeclass}": "*"}}},
        {"Sid": "AllowScopedInstanceProfileTagActions", "Effect": "Allow", "Resource": "*",
         "Action": ["iam:TagInstanceProfile"],
         "Condition": {"StringEquals": {**profile_owned, **profile_request},
                       "StringLike": {f"aws:ResourceTag/{nodeclass}": "*", f"aws:RequestTag/{nodeclass}": "*"}}},
        {"Sid": "AllowScopedInstanceProfileActions", "Effect": "Allow", "Resource": "*",
         "Action": ["iam:AddRoleToInstanceProfile", "iam:RemoveRoleFromInstanceProfile", "iam:DeleteInstanceProfile"],
         "Condition": {"StringEquals": profile_owned,
                       "StringLike": {f"aws:ResourceTag/{nodeclass}": "*"}}},
        {"Sid": "AllowInstanceProfileReadActions", "Effect": "Allow", "Action": "iam:GetInstanceProfile",
         "Resource": "*"},
        # Newer charts' instance-profile garbage collector lists them (IAM List calls take no resource scope).
        {"Sid": "AllowUnscopedInstanceProfileListAction", "Effect": "Allow", "Action": "iam:ListInstanceProfiles",
         "Resource": "*"},
        {"Sid": "AllowAPIServerEndpointDiscovery", "Effect": "Allow", "Action": "eks:DescribeCluster",
         "Resource": cluster_arn},
    ]


def _escape_strings(value):
    if isinstance(value, str):
        return escape_for_terraform(value)
    if isinstance(value, dict):
        return {k: _escape_strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escape_strings(v) for v in value]
    return value


def _kubernetes_manifest(scope, id_, depends_on=()):
    """A raw ``kubernetes_manifest`` resource: the manifest goes in by ``add_override`` (raw JSON) so no
    kubernetes provider bindings are imported (cdktn-provider-kubernetes is a large package)."""
    from cdktn import TerraformProviderGeneratorMetadata, TerraformResource

    return TerraformResource(scope, id_, terraform_resource_type="kubernetes_manifest",
                             terraform_generator_metadata=TerraformProviderGeneratorMetadata(provider_name="kubernetes"),
                             depends_on=list(depends_on) or None)
