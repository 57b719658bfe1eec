"""eks_gpu stack: synthesized values of the cluster, node groups, EFS CSI wiring, Karpenter / Auto Mode
and the opt-in kubernetes-provider deployment; validation before any resource."""

from __future__ import annotations

import dataclasses
import json

import pytest

from spotkit.constructs.eks_settings import NodeGroupSettings
from spotkit.constructs.gpu import is_gpu_instance_type
from spotkit.stacks.eks_gpu import EksGpuStack
from spotkit.stacks.eks_gpu_config import EksGpuConfig
from tests.support.synth import assert_resource_with_properties, build_stack, one, resources
from tests.support.tf_validate import needs_terraform, terraform_validate
from spotkit.errors import ValidationError


def node_groups_by_label(doc: dict) -> dict[str, dict]:
    return {g["tags"]["spotkit:node-group"]: g for g in resources(doc, "aws_eks_node_group").values()}


@pytest.fixture(scope="module")
def managed():
    # GIVEN the default config (managed node groups) WHEN the stack is synthesized
    doc, stack = build_stack(EksGpuStack, EksGpuConfig())
    return doc


@pytest.fixture(scope="module")
def karpenter():
    # GIVEN Karpenter mode with an on-demand GPU floor group and the manifests deployed through Terraform
    doc, stack = build_stack(EksGpuStack, EksGpuConfig(node_provisioning="karpenter", on_demand_gpu_group=True,
                                                       deploy_manifests=True))
    return doc


@pytest.fixture(scope="module")
def auto_mode():
    doc, stack = build_stack(EksGpuStack, EksGpuConfig(
        node_provisioning="auto_mode", cluster=dataclasses.replace(EksGpuConfig().cluster, version="1.30"), network=dataclasses.replace(EksGpuConfig().network, vpc_id="vpc-1",
                                                                   subnet_ids=("subnet-a", "subnet-b"))))
    return doc


# --- cluster -------------------------------------------------------------------------------------


def test_cluster_version_logging_and_secret_encryption(managed):
    cluster = one(managed, "aws_eks_cluster")
    assert cluster["version"] == "1.31"
    assert cluster["enabled_cluster_log_types"] == ["api", "audit", "authenticator", "controllerManager", "scheduler"]
    assert cluster["encryption_config"]["resources"] == ["secrets"]
    key_id = next(iter(resources(managed, "aws_kms_key")))
    assert cluster["encryption_config"]["provider"]["key_arn"] == f"${{aws_kms_key.{key_id}.arn}}"
    assert one(managed, "aws_kms_key")["enable_key_rotation"] is True
    assert cluster["access_config"] == {"authentication_mode": "API", "bootstrap_cluster_creator_admin_permissions": True}
    assert cluster["vpc_config"]["endpoint_private_access"] is True
    log_group = one(managed, "aws_cloudwatch_log_group")
    assert (log_group["name"], log_group["retention_in_days"]) == ("/aws/eks/spotkit-eks/cluster", 30)
    assert any(d.startswith("aws_cloudwatch_log_group.") for d in cluster["depends_on"])
    assert "compute_config" not in cluster


def test_cluster_version_is_configurable(auto_mode):
    # GIVEN version 1.30 in the config THEN the cluster runs it; a malformed version fails before any resource
    assert one(auto_mode, "aws_eks_cluster")["version"] == "1.30"
    with pytest.raises(ValidationError) as err:
        build_stack(EksGpuStack, EksGpuConfig(cluster=dataclasses.replace(EksGpuConfig().cluster, version="1.3")))
    assert str(err.value) == "EKS cluster 'spotkit-eks': cluster.version '1.3' is not a Kubernetes version: use 1.NN (e.g. 1.31)"


def test_cluster_role_trusts_eks(managed):
    roles = resources(managed, "aws_iam_role")
    cluster_role = next(r for k, r in roles.items() if k.startswith("cluster_cluster-role"))
    assert json.loads(cluster_role["assume_role_policy"])["Statement"][0]["Principal"] == {"Service": "eks.amazonaws.com"}
    attached = {a["policy_arn"] for a in resources(managed, "aws_iam_role_policy_attachment").values()}
    assert "arn:aws:iam::aws:policy/AmazonEKSClusterPolicy" in attached
    assert {f"arn:aws:iam::aws:policy/{p}" for p in ("AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy",
                                                      "AmazonEC2ContainerRegistryReadOnly")} <= attached


# --- node groups ---------------------------------------------------------------------------------


def test_system_group_is_on_demand_and_tainted_critical_addons_only(managed):
    system = node_groups_by_label(managed)["system"]
    assert system["capacity_type"] == "ON_DEMAND"
    assert system["taint"] == [{"key": "CriticalAddonsOnly", "value": "true", "effect": "NO_SCHEDULE"}]
    assert system["labels"] == {"spotkit.io/lifecycle": "on-demand", "spotkit.io/node-role": "system"}
    assert system["ami_type"] == "AL2023_x86_64_STANDARD"
    assert system["scaling_config"] == {"min_size": 2, "max_size": 3, "desired_size": 2}


def test_spot_gpu_group_values(managed):
    gpu = node_groups_by_label(managed)["gpu-spot"]
    # THEN spot capacity, 3+ types that are all GPU types, the spot taint, lifecycle labels, the NVIDIA AMI
    assert gpu["capacity_type"] == "SPOT"
    assert gpu["instance_types"] == ["g5.xlarge", "g6.xlarge", "g6e.xlarge", "g4dn.xlarge"]
    assert len(gpu["instance_types"]) >= 3 and all(is_gpu_instance_type(t) for t in gpu["instance_types"])
    assert gpu["taint"] == [{"key": "spot", "value": "true", "effect": "NO_SCHEDULE"}]
    assert gpu["labels"] == {"spotkit.io/lifecycle": "spot", "spotkit.io/node-role": "gpu"}
    assert gpu["ami_type"] == "AL2023_x86_64_NVIDIA"
    assert gpu["lifecycle"]["ignore_changes"] == ["scaling_config[0].desired_size"]
    assert len(gpu["subnet_ids"]) == 2


def test_every_managed_node_group_keeps_pods_off_the_node_role_with_imds_hop_limit_1(managed, karpenter):
    # GIVEN the managed node groups of the default stack and of Karpenter mode's on-demand floor
    for doc in (managed, karpenter):
        templates = resources(doc, "aws_launch_template")
        for label, group in node_groups_by_label(doc).items():
            # THEN each group launches from a template of its own (EKS's default template has hop limit 2)
            ref = group["launch_template"]
            template_id = ref["id"].split(".")[1]
            assert ref["id"] == f"${{aws_launch_template.{template_id}.id}}"
            assert ref["version"] == f"${{aws_launch_template.{template_id}.latest_version}}"
            template = templates[template_id]
            # AND that template requires IMDSv2 with a response hop limit of 1: a pod cannot get a token
            assert template["metadata_options"] == {"http_endpoint": "enabled", "http_tokens": "required",
                                                    "http_put_response_hop_limit": 1}, label
            # AND the root volume moved from disk_size (EKS refuses both) to the template, encrypted gp3
            assert "disk_size" not in group and "image_id" not in template and "instance_type" not in template
            assert template["block_device_mappings"] == [{"device_name": "/dev/xvda", "ebs": {
                "volume_size": 50 if label == "system" else 200, "volume_type": "gp3", "encrypted": "true",
                "delete_on_termination": "true"}}]
        assert len(templates) == len(node_groups_by_label(doc))


def test_only_the_system_and_spot_groups_by_default(managed):
    assert sorted(node_groups_by_label(managed)) == ["gpu-spot", "system"]


def test_on_demand_gpu_floor_group(karpenter):
    groups = node_groups_by_label(karpenter)
    # THEN Karpenter mode keeps the system group and the optional floor, and no managed spot GPU group
    assert sorted(groups) == ["gpu-on-demand", "system"]
    floor = groups["gpu-on-demand"]
    assert floor["capacity_type"] == "ON_DEMAND"
    assert floor["labels"]["spotkit.io/lifecycle"] == "on-demand"
    assert floor["scaling_config"]["min_size"] == 1
    assert all(is_gpu_instance_type(t) for t in floor["instance_types"])


# --- EFS CSI ------------------------------------------------------------------------------------


def test_efs_csi_driver_wired_to_the_checkpoint_file_system(managed):
    addons = {a["addon_name"]: a for a in resources(managed, "aws_eks_addon").values()}
    assert sorted(addons) == ["aws-efs-csi-driver", "coredns", "eks-pod-identity-agent", "kube-proxy", "vpc-cni"]
    config = json.loads(addons["aws-efs-csi-driver"]["configuration_values"])
    assert config["controller"]["tolerations"] == [{"key": "CriticalAddonsOnly", "operator": "Exists",
                                                    "effect": "NoSchedule"}]
    assert config["node"] == {"tolerateAllTaints": True}
    # the controller's service account gets the EFS CSI policy through Pod Identity
    assoc = one(managed, "aws_eks_pod_identity_association")
    assert (assoc["namespace"], assoc["service_account"]) == ("kube-system", "efs-csi-controller-sa")
    role_id = assoc["role_arn"].split(".")[1]
    assert json.loads(resources(managed, "aws_iam_role")[role_id]["assume_role_policy"])["Statement"][0] == {
        "Effect": "Allow", "Principal": {"Service": "pods.eks.amazonaws.com"}, "Action": ["sts:AssumeRole", "sts:TagSession"]}
    assert_resource_with_properties(managed, "aws_iam_role_policy_attachment", {
        "policy_arn": "arn:aws:iam::aws:policy/service-role/AmazonEFSCSIDriverPolicy"})
    # NFS from the cluster security group (every node carries it) and the node role may mount
    cluster_id = next(iter(resources(managed, "aws_eks_cluster")))
    rule = one(managed, "aws_vpc_security_group_ingress_rule")
    assert rule["referenced_security_group_id"] == f"${{aws_eks_cluster.{cluster_id}.vpc_config[0].cluster_security_group_id}}"
    assert (rule["from_port"], rule["to_port"]) == (2049, 2049)
    grant = one(managed, "aws_iam_role_policy")
    node_role_id = next(k for k in resources(managed, "aws_iam_role") if k.startswith("node-role"))
    assert grant["role"] == f"${{aws_iam_role.{node_role_id}.id}}"
    assert json.loads(grant["policy"])["Statement"][0]["Action"] == ["elasticfilesystem:ClientMount",
                                                                     "elasticfilesystem:ClientWrite"]
    assert set(managed["output"]) >= {"efs_file_system_id", "efs_access_point_id", "cluster_name"}


def test_default_stack_uses_only_the_aws_provider(managed):
    assert sorted(managed["terraform"]["required_providers"]) == ["aws"]
    assert "kubernetes_manifest" not in managed["resource"]


# --- Karpenter ----------------------------------------------------------------------------------


def test_karpenter_controller_role_and_node_access(karpenter):
    assoc = {a["service_account"]: a for a in resources(karpenter, "aws_eks_pod_identity_association").values()}
    assert sorted(assoc) == ["efs-csi-controller-sa", "karpenter"]
    role_id = assoc["karpenter"]["role_arn"].split(".")[1]
    inline = next(p for p in resources(karpenter, "aws_iam_role_policy").values()
                  if p["role"] == f"${{aws_iam_role.{role_id}.id}}")
    sids = {s["Sid"]: s for s in json.loads(inline["policy"])["Statement"]}
    assert "ec2:CreateFleet" in sids["AllowScopedEC2InstanceActionsWithTags"]["Action"]  # tests/test_security.py: all of it
    pool_role_id = next(k for k in resources(karpenter, "aws_iam_role") if k.startswith("pool-node-role"))
    assert sids["AllowPassingInstanceRole"]["Resource"] == f"${{aws_iam_role.{pool_role_id}.arn}}"
    assert resources(karpenter, "aws_iam_role")[pool_role_id]["name"] == "spotkit-eks-karpenter-node"
    entry = one(karpenter, "aws_eks_access_entry")
    assert (entry["type"], entry["principal_arn"]) == ("EC2_LINUX", f"${{aws_iam_role.{pool_role_id}.arn}}")
    tags = resources(karpenter, "aws_ec2_tag").values()
    assert {(t["key"], t["value"]) for t in tags} == {("karpenter.sh/discovery", "spotkit-eks")}
    assert len(tags) == 3  # two subnets and the cluster security group


def test_manifests_deployed_through_the_kubernetes_provider(karpenter):
    assert karpenter["terraform"]["required_providers"]["kubernetes"] == {"source": "hashicorp/kubernetes",
                                                                          "version": ">= 2.23, < 3"}
    provider = karpenter["provider"]["kubernetes"][0]
    cluster_id = next(iter(resources(karpenter, "aws_eks_cluster")))
    assert provider["host"] == f"${{aws_eks_cluster.{cluster_id}.endpoint}}"
    assert provider["token"] == "${data.aws_eks_cluster_auth.cluster-auth.token}"
    manifests = {k.removeprefix("k8s-"): v for k, v in resources(karpenter, "kubernetes_manifest").items()}
    assert sorted(manifests) == sorted([
        "storageclass-efs-checkpoints", "persistentvolume-spotkit-checkpoints", "pvc-checkpoints",
        "daemonset-nvidia-device-plugin", "ec2nodeclass-gpu", "nodepool-gpu-spot", "nodepool-gpu-on-demand",
        "job-train-example"])
    # the volume points at the stack's own file system and access point (Terraform references)
    fs_id = next(iter(resources(karpenter, "aws_efs_file_system")))
    ap_id = next(iter(resources(karpenter, "aws_efs_access_point")))
    handle = manifests["persistentvolume-spotkit-checkpoints"]["manifest"]["spec"]["csi"]["volumeHandle"]
    assert handle == f"${{aws_efs_file_system.{fs_id}.id}}::${{aws_efs_access_point.{ap_id}.id}}"
    # shell variables are escaped so Terraform leaves them to the container's shell
    script = manifests["job-train-example"]["manifest"]["spec"]["template"]["spec"]["containers"][0]["command"][2]
    assert 'mkdir -p "$CHECKPOINT_DIR"' in script and "$${RESUME_FROM:+" in script
    spot = manifests["nodepool-gpu-spot"]["manifest"]["spec"]["template"]["spec"]
    assert spot["taints"] == [{"key": "spot", "value": "true", "effect": "NoSchedule"}]
    assert manifests["job-train-example"]["depends_on"][0].startswith("aws_eks_addon.")


# --- Auto Mode ----------------------------------------------------------------------------------


def test_auto_mode_cluster(auto_mode):
    cluster = one(auto_mode, "aws_eks_cluster")
    pool_role_id = next(k for k in resources(auto_mode, "aws_iam_role") if k.startswith("pool-node-role"))
    assert cluster["compute_config"] == {"enabled": True, "node_pools": ["system"],
                                         "node_role_arn": f"${{aws_iam_role.{pool_role_id}.arn}}"}
    assert cluster["storage_config"] == {"block_storage": {"enabled": True}}
    assert cluster["kubernetes_network_config"] == {"elastic_load_balancing": {"enabled": True}}
    assert cluster["bootstrap_self_managed_addons"] is False
    assert cluster["vpc_config"]["subnet_ids"] == ["subnet-a", "subnet-b"]
    addons = sorted(a["addon_name"] for a in resources(auto_mode, "aws_eks_addon").values())
    assert addons == ["aws-efs-csi-driver"]
    # the built-in on-demand "system" pool (tainted CriticalAddonsOnly) replaces the system node group
    assert "aws_eks_node_group" not in auto_mode["resource"]
    assert_resource_with_properties(auto_mode, "aws_eks_access_policy_association", {
        "policy_arn": "arn:aws:eks::aws:cluster-access-policy/AmazonEKSAutoNodePolicy", "access_scope": {"type": "cluster"}})
    attached = {a["policy_arn"] for a in resources(auto_mode, "aws_iam_role_policy_attachment").values()}
    assert {"arn:aws:iam::aws:policy/AmazonEKSComputePolicy",
            "arn:aws:iam::aws:policy/AmazonEKSWorkerNodeMinimalPolicy"} <= attached
    assert "aws_sqs_queue" not in auto_mode["resource"]  # Auto Mode handles interruptions itself


# --- validation before any resource ---------------------------------------------------------------


def test_spot_gpu_group_with_one_type_fails_the_stack():
    config = EksGpuConfig(spot_gpu_groups=(NodeGroupSettings(instance_types=("g6.xlarge",)),))
    with pytest.raises(ValidationError) as err:
        build_stack(EksGpuStack, config)
    assert str(err.value) == (
        "node group 'gpu-spot': a spot GPU group needs at least 2 instance types (got 1: g6.xlarge); losing that "
        "one spot pool would take every node: list 3 or more GPU types (e.g. g5.xlarge, g6.xlarge, g6e.xlarge)")


def test_non_gpu_type_in_a_gpu_group_fails():
    config = EksGpuConfig(spot_gpu_groups=(NodeGroupSettings(instance_types=("g5.xlarge", "m6i.xlarge")),))
    with pytest.raises(ValidationError) as err:
        build_stack(EksGpuStack, config)
    assert str(err.value).startswith("node group 'gpu-spot': m6i.xlarge is not a GPU instance type: a GPU node group "
                                     "takes NVIDIA GPU families only (g4dn, g5, ")


def test_spot_system_group_fails():
    config = EksGpuConfig(system_group=dataclasses.replace(EksGpuConfig().system_group, capacity_type="SPOT"))
    with pytest.raises(ValidationError) as err:
        build_stack(EksGpuStack, config)
    assert str(err.value) == ("node group 'system': a spot group must carry the taint spot=true:NoSchedule so only "
                              "pods that tolerate interruption land on it: add it to taints")
    config = EksGpuConfig(system_group=dataclasses.replace(EksGpuConfig().system_group, taints=()))
    with pytest.raises(ValidationError) as err:
        build_stack(EksGpuStack, config)
    assert str(err.value) == ("node group 'system': the system group must carry the taint "
                              "CriticalAddonsOnly=true:NoSchedule so workloads stay off it")


def test_config_file_overrides_reach_nested_groups():
    from spotkit.config import apply_overrides

    config = apply_overrides(EksGpuConfig(), {"node_provisioning": "karpenter", "spot_gpu_groups": [
        {"name": "big", "instance_types": ["g6e.2xlarge", "g5.2xlarge", "g6.2xlarge"], "max_size": 8}],
        "karpenter": {"pools": [{"name": "spot-l4", "gpu_names": ["l4", "a10g"], "instance_families": []}]}},
        prefix="eks_gpu")
    assert config.spot_gpu_groups[0].taints[0].key == "spot"
    assert config.spot_gpu_groups[0].capacity_type == "SPOT"
    assert config.karpenter.pools[0].capacity_type == "spot"
    assert config.karpenter.pools[0].gpu_names == ("l4", "a10g")


@pytest.mark.terraform
def test_default_stack_validates_with_aws_provider_5_100(managed, tmp_path):
    needs_terraform()
    result = terraform_validate(managed, tmp_path / "eks")
    assert result.returncode == 0, result.stdout + result.stderr


def test_karpenter_interruption_queue_and_rules(karpenter):
    # THEN the interruption rules route spot warnings, rebalance recommendations, state changes and
    # scheduled changes to one queue that only Karpenter reads (no Lambda competes for messages)
    patterns = {json.loads(r["event_pattern"])["detail-type"][0]
                for r in resources(karpenter, "aws_cloudwatch_event_rule").values()}
    assert {"EC2 Spot Instance Interruption Warning", "EC2 Instance Rebalance Recommendation",
            "EC2 Instance State-change Notification", "AWS Health Event"} <= patterns
    queues = {q["name"]: q for q in resources(karpenter, "aws_sqs_queue").values()}
    queue_id = next(k for k, q in resources(karpenter, "aws_sqs_queue").items() if q["name"] == "spotkit-eks-interruptions")
    assert queues["spotkit-eks-interruptions"]["message_retention_seconds"] == 300
    targets = {t["arn"] for t in resources(karpenter, "aws_cloudwatch_event_target").values()}
    assert targets == {f"${{aws_sqs_queue.{queue_id}.arn}}"}
    assert "aws_lambda_function" not in karpenter["resource"]
    assert "aws_fis_experiment_template" not in karpenter["resource"]
    # AND the controller may read and delete from that queue only
    role_id = next(a for a in resources(karpenter, "aws_eks_pod_identity_association").values()
                   if a["service_account"] == "karpenter")["role_arn"].split(".")[1]
    inline = next(p for p in resources(karpenter, "aws_iam_role_policy").values()
                  if p["role"] == f"${{aws_iam_role.{role_id}.id}}")
    sids = {s["Sid"]: s for s in json.loads(inline["policy"])["Statement"]}
    assert sids["AllowInterruptionQueueActions"] == {
        "Sid": "AllowInterruptionQueueActions", "Effect": "Allow", "Resource": f"${{aws_sqs_queue.{queue_id}.arn}}",
        "Action": ["sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl", "sqs:ReceiveMessage"]}
    assert karpenter["output"]["karpenter_interruption_queue"]["value"] == f"${{aws_sqs_queue.{queue_id}.name}}"


def test_managed_mode_has_no_interruption_queue(managed):
    # EKS managed node groups drain spot nodes on the rebalance signal themselves
    assert "aws_sqs_queue" not in managed["resource"]


@pytest.mark.terraform
def test_karpenter_stack_aws_side_validates_with_provider_5_100(karpenter, tmp_path):
    # GIVEN the Karpenter stack WITHOUT its kubernetes-provider part (only hashicorp/aws is in the offline
    # mirror; the kubernetes_manifest resources are checked by value above)
    needs_terraform()
    doc = json.loads(json.dumps(karpenter))
    doc["terraform"]["required_providers"].pop("kubernetes")
    doc["provider"].pop("kubernetes")
    doc["resource"].pop("kubernetes_manifest")
    # WHEN terraform validates it THEN the EKS, IAM, EFS and interruption resources are valid for 5.100
    result = terraform_validate(doc, tmp_path / "eks-karpenter")
    assert result.returncode == 0, result.stdout + result.stderr


def test_spot_gpu_group_with_two_types_warns():
    import warnings

    from spotkit.constructs.annotations import SpotkitWarning
    from spotkit.constructs.eks_node_groups import EksManagedNodeGroup, EksNodeRole
    from tests.support.synth import synth_construct

    # GIVEN a spot GPU group with two types (allowed) WHEN it is built
    def build(stack):
        role = EksNodeRole(stack, "role", name="test-node")
        return EksManagedNodeGroup(stack, "group", cluster_name="c", cluster_label="c", node_role=role,
                                   subnet_ids=["subnet-a", "subnet-b"],
                                   settings=NodeGroupSettings(instance_types=("g5.xlarge", "g6.xlarge")))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SpotkitWarning)
        doc, _ = synth_construct(build)
    # THEN it synthesizes with both types and a warning that asks for a third
    assert one(doc, "aws_eks_node_group")["instance_types"] == ["g5.xlarge", "g6.xlarge"]
    assert [str(w.message) for w in caught if w.category is SpotkitWarning] == [
        "node group 'gpu-spot': 2 GPU instance types leave one spot pool when the other is reclaimed; list 3 or "
        "more (e.g. g5.xlarge, g6.xlarge, g6e.xlarge)"]
