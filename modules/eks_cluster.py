"""An EKS control plane for GPU spot pools: IAM, control-plane logs, envelope encryption of secrets,
access entries and EKS Pod Identity (no OIDC thumbprint to manage, no tls provider needed).

What it creates:
- a KMS key with rotation for secrets (``kms_key_arn`` brings your own);
- the ``/aws/eks/<name>/cluster`` log group with retention, created before the cluster so EKS
  does not create one that never expires;
- the cluster role (plus the Auto Mode policies when ``auto_mode``);
- the cluster: private endpoint on, the public one per settings, ``API`` authentication (access
  entries), Auto Mode blocks when asked (compute, block storage, load balancing all on together);
- add-ons and Pod Identity associations through capabilities.

Capabilities: ``add_addon``, ``add_pod_identity``, ``add_access_entry``, ``grant_cluster_admin``,
``tag_for_discovery`` (Karpenter finds subnets and the cluster security group by tag).
"""

from __future__ import annotations

import json
from typing import Mapping, Optional, Sequence

from constructs import Construct

from spotkit.constructs.annotations import warn
from spotkit.constructs.eks_settings import EksClusterSettings, validate_cluster
from spotkit.constructs.iam import assume_role_policy
from spotkit.runtime.notice import TAG_CLUSTER

CLUSTER_ADMIN_POLICY = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
AUTO_NODE_POLICY = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSAutoNodePolicy"
AUTO_MODE_CLUSTER_POLICIES = (
    "AmazonEKSComputePolicy", "AmazonEKSBlockStoragePolicy", "AmazonEKSLoadBalancingPolicy", "AmazonEKSNetworkingPolicy",
)
DISCOVERY_TAG = "karpenter.sh/discovery"


def _auto_mode_config(node_role_arn: Optional[str]) -> dict:
    """The cluster arguments of Auto Mode: compute, block storage and load balancing must be switched on
    together, and EKS must not bootstrap the self-managed add-ons it now runs itself. Only the built-in
    "system" pool (on-demand, tainted CriticalAddonsOnly): spotkit brings its own GPU NodePools (rendered
    manifests), and the built-in "general-purpose" pool would take untolerating pods anywhere."""
    from cdktn_aws.eks import AwsCluster as Cluster

    return dict(
        bootstrap_self_managed_addons=False,
        compute_config=Cluster.ComputeConfigProperty(enabled=True, node_pools=["system"], node_role_arn=node_role_arn),
        storage_config=Cluster.StorageConfigProperty(block_storage=Cluster.BlockStorageProperty(enabled=True)),
        kubernetes_network_config=Cluster.KubernetesNetworkConfigProperty(
            elastic_load_balancing=Cluster.ElasticLoadBalancingProperty(enabled=True)),
    )


class EksCluster(Construct):
    """The control plane. ``cluster_name``, ``endpoint``, ``security_group_id`` (the cluster security
    group EKS creates, shared by managed nodes) feed node groups, EFS and the manifests."""

    def __init__(self, scope: Construct, id_: str, *, name: str, subnet_ids: Sequence[str],
                 settings: EksClusterSettings = EksClusterSettings(), auto_mode: bool = False,
                 auto_mode_node_role_arn: Optional[str] = None, tags: Mapping[str, str] | None = None):
        validate_cluster(name, settings)
        super().__init__(scope, id_)
        from cdktn_aws.cloudwatch_logs import AwsGroup as CloudwatchLogGroup
        from cdktn_aws.eks import AwsCluster as Cluster

        self.name = name
        self.settings = settings
        self.auto_mode = auto_mode
        self.subnet_ids = list(subnet_ids)
        self.tags = {TAG_CLUSTER: name, **dict(tags or {})}
        if settings.endpoint_public_access and "0.0.0.0/0" in settings.public_access_cidrs:
            warn(self, f"EKS cluster {name!r}: cluster.public_access_cidrs has 0.0.0.0/0: the API endpoint is public "
                       "to the whole internet (authentication still applies); set it to your office/VPN ranges or "
                       "turn cluster.endpoint_public_access off")
        self.kms_key_arn = settings.kms_key_arn or self._create_secrets_key()
        self.log_group = CloudwatchLogGroup(self, "log-group", name=f"/aws/eks/{name}/cluster",
                                            retention_in_days=settings.log_retention_days, tags=self.tags)
        attachments = self._create_role()
        self.cluster = Cluster(
            self, "cluster",
            name=name,
            version=settings.version,
            role_arn=self.role.arn,
            vpc_config=Cluster.VpcConfigProperty(
                subnet_ids=self.subnet_ids,
                endpoint_private_access=True,
                endpoint_public_access=settings.endpoint_public_access,
                public_access_cidrs=list(settings.public_access_cidrs) if settings.endpoint_public_access else None,
            ),
            enabled_cluster_log_types=list(settings.log_types),
            encryption_config=Cluster.EncryptionConfigProperty(
                provider=Cluster.ProviderProperty(key_arn=self.kms_key_arn), resources=["secrets"]),
            access_config=Cluster.AccessConfigProperty(authentication_mode="API",
                                                 bootstrap_cluster_creator_admin_permissions=True),
            tags=self.tags,
            depends_on=[self.log_group, *attachments],
            **(_auto_mode_config(auto_mode_node_role_arn) if auto_mode else {}),
        )
        for i, arn in enumerate(settings.admin_principal_arns):
            self.grant_cluster_admin(arn, f"admin-{i}")

    # --- resources --------------------------------------------------------------------------

    def _create_secrets_key(self) -> str:
        """A KMS key for envelope encryption of Kubernetes secrets; its ARN."""
        from cdktn_aws.kms import AwsKey as KmsKey

        key = KmsKey(self, "secrets-key", description=f"EKS {self.name}: envelope encryption of Kubernetes secrets",
                     enable_key_rotation=True, deletion_window_in_days=30, tags=self.tags)
        return key.arn

    def _create_role(self) -> list:
        """The cluster role (``self.role``) and its managed policies; the attachments, which the cluster waits for."""
        from cdktn_aws.iam import AwsRole as IamRole, AwsRolePolicyAttachment as IamRolePolicyAttachment

        self.role = IamRole(self, "cluster-role", name_prefix=f"{self.name}-cluster-"[:38],
                            assume_role_policy=assume_role_policy("eks.amazonaws.com", tag_session=self.auto_mode),
                            tags=self.tags)
        policies = ["AmazonEKSClusterPolicy"] + (list(AUTO_MODE_CLUSTER_POLICIES) if self.auto_mode else [])
        return [
            IamRolePolicyAttachment(self, f"cluster-{p}", role=self.role.name,
                                    policy_arn=f"arn:aws:iam::aws:policy/{p}")
            for p in policies
        ]

    # --- properties -------------------------------------------------------------------------

    @property
    def cluster_name(self) -> str:
        return self.cluster.name

    @property
    def endpoint(self) -> str:
        return self.cluster.endpoint

    @property
    def certificate_authority_data(self) -> str:
        return self.cluster.certificate_authority.get(0).data

    @property
    def security_group_id(self) -> str:
        """The cluster security group EKS creates; managed nodes and the control plane share it."""
        return self.cluster.vpc_config.cluster_security_group_id

    # --- capabilities -----------------------------------------------------------------------

    def add_addon(self, addon_name: str, *, configuration_values: Optional[dict] = None,
                  depends_on: Sequence = ()):
        from cdktn_aws.eks import AwsAddon as EksAddon

        return EksAddon(
            self, f"addon-{addon_name}",
            cluster_name=self.cluster.name,
            addon_name=addon_name,
            configuration_values=json.dumps(configuration_values) if configuration_values else None,
            resolve_conflicts_on_create="OVERWRITE",
            resolve_conflicts_on_update="OVERWRITE",
            tags=self.tags,
            depends_on=list(depends_on) or None,
        )

    def add_pod_identity(self, id_: str, *, namespace: str, service_account: str, role_arn: str):
        """Let pods of ``namespace/service_account`` assume ``role_arn`` (needs the pod identity agent)."""
        from cdktn_aws.eks import AwsPodIdentityAssociation as EksPodIdentityAssociation

        return EksPodIdentityAssociation(self, f"pod-identity-{id_}", cluster_name=self.cluster.name,
                                         namespace=namespace, service_account=service_account, role_arn=role_arn,
                                         tags=self.tags)

    def add_access_entry(self, id_: str, principal_arn: str, *, entry_type: str = "STANDARD",
                         policy_arn: Optional[str] = None):
        """An access entry; with ``policy_arn``, the access policy associated cluster-wide."""
        from cdktn_aws.eks import (
            AwsAccessEntry as EksAccessEntry,
            AwsAccessPolicyAssociation as EksAccessPolicyAssociation,
        )

        entry = EksAccessEntry(self, f"access-{id_}", cluster_name=self.cluster.name, principal_arn=principal_arn,
                               type=entry_type, tags=self.tags)
        if policy_arn:
            EksAccessPolicyAssociation(self, f"access-policy-{id_}", cluster_name=self.cluster.name,
                                       principal_arn=principal_arn, policy_arn=policy_arn,
                                       access_scope=EksAccessPolicyAssociation.AccessScopeProperty(type="cluster"),
                                       depends_on=[entry])
        return entry

    def grant_cluster_admin(self, principal_arn: str, id_: str = "admin"):
        return self.add_access_entry(id_, principal_arn, policy_arn=CLUSTER_ADMIN_POLICY)

    def tag_for_discovery(self, subnet_ids: Sequence[str]) -> None:
        """Tag subnets and the cluster security group ``karpenter.sh/discovery=<cluster>`` (works for
        subnets the stack did not create, too)."""
        from cdktn_aws.ec2 import AwsTag as Ec2Tag

        for i, subnet in enumerate(subnet_ids):
            Ec2Tag(self, f"discovery-subnet-{i}", resource_id=subnet, key=DISCOVERY_TAG, value=self.name)
        Ec2Tag(self, "discovery-sg", resource_id=self.security_group_id, key=DISCOVERY_TAG, value=self.name)
