"""EKS: CreateCluster keeps accessConfig; CreateNodegroup keeps updateConfig and invents no remoteAccess."""

from __future__ import annotations

from spotkit.rehearsal.local.patches import Patch, wrap_once


def _keeping_access_config(create_cluster):
    def patched_create_cluster(self):
        result = create_cluster(self)
        access = self._get_param("accessConfig")
        if access:
            cluster = self.eks_backend.describe_cluster(self._get_param("name"))
            # DescribeCluster returns the authentication mode; the bootstrap flag is create-only
            cluster.access_config = {"authenticationMode": access.get("authenticationMode", "CONFIG_MAP")}
        return result

    return patched_create_cluster


def _keeping_update_config(create_nodegroup):
    def patched_create_nodegroup(self):
        result = create_nodegroup(self)
        group = self.eks_backend.describe_nodegroup(self._get_param("name"), self._get_param("nodegroupName"))
        if not self._get_param("remoteAccess"):
            group.remote_access = None
        if self._get_param("updateConfig"):
            group.update_config = self._get_param("updateConfig")
        return result

    return patched_create_nodegroup


def _settings() -> None:
    from moto.eks.responses import EKSResponse

    wrap_once(EKSResponse, "create_cluster", _keeping_access_config)
    wrap_once(EKSResponse, "create_nodegroup", _keeping_update_config)


PATCHES = (
    Patch("eks", ("CreateCluster", "CreateNodegroup"),
          "keeps the cluster's accessConfig and the node group's updateConfig, and gives a node group no remoteAccess "
          "it was not asked for",
          "drops the cluster's accessConfig and the node group's updateConfig, and gives every node group "
          "remoteAccess with an 'eksKeypair' SSH key, so every re-plan wanted to replace the cluster and its node "
          "groups", "https://docs.aws.amazon.com/eks/latest/APIReference/API_CreateNodegroup.html", _settings),
)
