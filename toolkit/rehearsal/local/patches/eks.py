"""EKS: CreateCluster keeps accessConfig; CreateNodegroup keeps updateConfig and invents no remoteAccess."""

from __future__ import annotations

from spotkit.rehearsal.local.patches import Patch


def _settings() -> None:
    from moto.eks.responses import EKSResponse

    if getattr(EKSResponse.create_cluster, "_spotkit", False):
        return
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

    patched_create_cluster._spotkit = True
    EKSResponse.create_cluster = patched_create_cluster
    EKSResponse.create_nodegroup = patched_create_nodegroup


PATCHES = (
    Patch("eks", ("CreateCluster", "CreateNodegroup"),
          "keeps the cluster's accessConfig and the node group's updateConfig, and gives a node group no remoteAccess "
          "it was not asked for",
          "drops the cluster's accessConfig and the node group's updateConfig, and gives every node group "
          "remoteAccess with an 'eksKeypair' SSH key, so every re-plan wanted to replace the cluster and its node "
          "groups", "https://docs.aws.amazon.com/eks/latest/APIReference/API_CreateNodegroup.html", _settings),
)
