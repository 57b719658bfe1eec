"""Secure defaults of the synthesized stacks (issue 14, security part): the Karpenter controller may tag only
at creation and delete only what it owns; the interruption handler's mutations are scoped to the stack's
target groups, clusters, groups and document; KMS keys are named by ARN, never ``*``; AttachVolume within
the group (tests/test_storage_data_volume.py); ECS tasks kept off the instance role; EKS API endpoint private by default; the Lambda
package is staged privately and verified before reuse; boot scripts write no fixed /tmp path.

Policies are asserted statement by statement, conditions included."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import stat
import warnings

import pytest

from spotkit.constructs.annotations import SpotkitWarning
from spotkit.constructs.data_volume import DataVolumeSettings, RetainedDataVolumes
from spotkit.constructs.compute_group import SpotComputeGroup
from spotkit.constructs.ecs_spot import EcsClusterSettings
from spotkit.constructs.eks_settings import EksClusterSettings
from spotkit.constructs.interruption_events import (
    InterruptionEvents,
    InterruptionEventsSettings,
    build_lambda_source,
    lambda_source_files,
)
from spotkit.constructs.kms import is_key_arn
from spotkit.stacks.ecs_spot import EcsSpotConfig, EcsSpotStack
from spotkit.stacks.eks_gpu import EksGpuStack
from spotkit.stacks.eks_gpu_config import EksGpuConfig
from spotkit.stacks.gpu_inference import GpuInferenceConfig, GpuInferenceStack
from spotkit.stacks.training import TrainingConfig, TrainingStack
from tests.support.synth import build_stack, data_sources, local_value, one, resources, synth_construct
from spotkit.errors import ValidationError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _policies(doc) -> list[dict]:
    return [json.loads(p["policy"]) for p in resources(doc, "aws_iam_role_policy").values()]


def _handler_policy(doc) -> dict[str, dict]:
    [handler] = [p for p in _policies(doc) if any(s.get("Sid") == "Journal" for s in p["Statement"])]
    return {s["Sid"]: s for s in handler["Statement"]}


def _actions(statement) -> list[str]:
    return [statement["Action"]] if isinstance(statement["Action"], str) else list(statement["Action"])


def _data_ref(doc, dtype: str, prefix: str, attr: str) -> str:
    [key] = [k for k in data_sources(doc, dtype) if k.startswith(prefix)]
    return f"${{data.{dtype}.{key}.{attr}}}"


# --- Karpenter controller ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def karpenter():
    doc, stack = build_stack(EksGpuStack, EksGpuConfig(node_provisioning="karpenter"))
    assoc = {a["service_account"]: a for a in resources(doc, "aws_eks_pod_identity_association").values()}
    role_id = assoc["karpenter"]["role_arn"].split(".")[1]
    [inline] = [p for p in resources(doc, "aws_iam_role_policy").values() if p["role"] == f"${{aws_iam_role.{role_id}.id}}"]
    return doc, json.loads(inline["policy"])["Statement"]


def test_karpenter_controller_policy_is_karpenters_reference_policy(karpenter):
    doc, statements = karpenter
    # GIVEN the stack's partition (data source), region us-east-1 and cluster spotkit-eks
    part = _data_ref(doc, "aws_partition", "partition", "partition")
    ec2 = f"arn:{part}:ec2:us-east-1"
    created = [f"{ec2}:*:fleet/*", f"{ec2}:*:instance/*", f"{ec2}:*:volume/*", f"{ec2}:*:network-interface/*",
               f"{ec2}:*:launch-template/*"]
    owned_request = {"aws:RequestTag/kubernetes.io/cluster/spotkit-eks": "owned",
                     "aws:RequestTag/eks:eks-cluster-name": "spotkit-eks"}
    by_sid = {s["Sid"]: s for s in statements}
    # THEN launching is allowed on the launch inputs without tags ...
    assert by_sid["AllowScopedEC2InstanceActions"] == {
        "Sid": "AllowScopedEC2InstanceActions", "Effect": "Allow",
        "Resource": [f"arn:{part}:ec2:us-east-1::image/*", f"arn:{part}:ec2:us-east-1::snapshot/*",
                     f"{ec2}:*:spot-instances-request/*", f"{ec2}:*:security-group/*", f"{ec2}:*:subnet/*",
                     f"{ec2}:*:launch-template/*"],
        "Action": ["ec2:RunInstances", "ec2:CreateFleet"]}
    # ... and creates instances, volumes, ENIs, fleets and launch templates only with the owned request tags
    assert by_sid["AllowScopedEC2InstanceActionsWithTags"] == {
        "Sid": "AllowScopedEC2InstanceActionsWithTags", "Effect": "Allow", "Resource": created,
        "Action": ["ec2:RunInstances", "ec2:CreateFleet", "ec2:CreateLaunchTemplate"],
        "Condition": {"StringEquals": owned_request, "StringLike": {"aws:RequestTag/karpenter.sh/nodepool": "*"}}}
    # AND tags only inside those create calls, under the same request tags
    assert by_sid["AllowScopedResourceCreationTagging"] == {
        "Sid": "AllowScopedResourceCreationTagging", "Effect": "Allow", "Resource": created, "Action": "ec2:CreateTags",
        "Condition": {"StringEquals": {**owned_request,
                                       "ec2:CreateAction": ["RunInstances", "CreateFleet", "CreateLaunchTemplate"]},
                      "StringLike": {"aws:RequestTag/karpenter.sh/nodepool": "*"}}}
    # AND afterwards only nodeclaim/Name (and eks:eks-cluster-name) on instances it owns
    assert by_sid["AllowScopedResourceTagging"] == {
        "Sid": "AllowScopedResourceTagging", "Effect": "Allow", "Resource": f"{ec2}:*:instance/*",
        "Action": "ec2:CreateTags",
        "Condition": {"StringEquals": {"aws:ResourceTag/kubernetes.io/cluster/spotkit-eks": "owned"},
                      "StringLike": {"aws:ResourceTag/karpenter.sh/nodepool": "*"},
                      "StringEqualsIfExists": {"aws:RequestTag/eks:eks-cluster-name": "spotkit-eks"},
                      "ForAllValues:StringEquals": {"aws:TagKeys": ["eks:eks-cluster-name", "karpenter.sh/nodeclaim",
                                                                    "Name"]}}}
    # AND terminates/deletes only what carries both the owned tag and a nodepool tag
    assert by_sid["AllowScopedDeletion"] == {
        "Sid": "AllowScopedDeletion", "Effect": "Allow", "Resource": [f"{ec2}:*:instance/*", f"{ec2}:*:launch-template/*"],
        "Action": ["ec2:TerminateInstances", "ec2:DeleteLaunchTemplate"],
        "Condition": {"StringEquals": {"aws:ResourceTag/kubernetes.io/cluster/spotkit-eks": "owned"},
                      "StringLike": {"aws:ResourceTag/karpenter.sh/nodepool": "*"}}}
    # AND reads stay on * in the stack's region only
    assert by_sid["AllowRegionalReadActions"]["Resource"] == "*"
    assert by_sid["AllowRegionalReadActions"]["Condition"] == {"StringEquals": {"aws:RequestedRegion": "us-east-1"}}
    assert all(a.split(":")[1].startswith("Describe") for a in by_sid["AllowRegionalReadActions"]["Action"])
    # AND instance profiles only with the owned + region + ec2nodeclass tags
    assert by_sid["AllowScopedInstanceProfileCreationActions"]["Condition"] == {
        "StringEquals": {**owned_request, "aws:RequestTag/topology.kubernetes.io/region": "us-east-1"},
        "StringLike": {"aws:RequestTag/karpenter.k8s.aws/ec2nodeclass": "*"}}
    assert by_sid["AllowScopedInstanceProfileActions"]["Condition"] == {
        "StringEquals": {"aws:ResourceTag/kubernetes.io/cluster/spotkit-eks": "owned",
                         "aws:ResourceTag/topology.kubernetes.io/region": "us-east-1"},
        "StringLike": {"aws:ResourceTag/karpenter.k8s.aws/ec2nodeclass": "*"}}
    assert by_sid["AllowUnscopedInstanceProfileListAction"] == {
        "Sid": "AllowUnscopedInstanceProfileListAction", "Effect": "Allow", "Action": "iam:ListInstanceProfiles",
        "Resource": "*"}
    # AND nothing else is on "*" but reads
    assert sorted(s["Sid"] for s in statements if s["Resource"] == "*" and "Condition" not in s) == [
        "AllowInstanceProfileReadActions", "AllowPricingReadActions", "AllowUnscopedInstanceProfileListAction"]
    assert by_sid["AllowPassingInstanceRole"]["Condition"] == {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}}
    assert by_sid["AllowAPIServerEndpointDiscovery"]["Resource"].startswith("${aws_eks_cluster.")
    assert by_sid["AllowInterruptionQueueActions"]["Action"] == [
        "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl", "sqs:ReceiveMessage"]


def test_karpenter_may_not_tag_or_terminate_without_conditions(karpenter):
    _, statements = karpenter
    # THEN no statement grants CreateTags, TerminateInstances or DeleteLaunchTemplate without a tag condition
    for s in statements:
        risky = set(_actions(s)) & {"ec2:CreateTags", "ec2:TerminateInstances", "ec2:DeleteLaunchTemplate",
                                    "ec2:CreateLaunchTemplate", "iam:CreateInstanceProfile", "iam:DeleteInstanceProfile"}
        if risky:
            assert "Condition" in s, s
            assert any(k.startswith(("aws:RequestTag/kubernetes.io/cluster/", "aws:ResourceTag/kubernetes.io/cluster/"))
                       for cond in s["Condition"].values() for k in cond), s
    # AND the old escalation path is gone: nothing allows CreateTags on "*"
    assert not [s for s in statements if "ec2:CreateTags" in _actions(s) and s["Resource"] == "*"]


# --- EKS endpoint -------------------------------------------------------------------------------


def test_eks_api_endpoint_is_private_by_default(karpenter):
    doc, _ = karpenter
    vpc = one(doc, "aws_eks_cluster")["vpc_config"]
    assert vpc["endpoint_private_access"] is True
    assert vpc["endpoint_public_access"] is False
    assert "public_access_cidrs" not in vpc
    assert EksClusterSettings().endpoint_public_access is False and EksClusterSettings().public_access_cidrs == ()


def test_public_eks_endpoint_needs_explicit_cidrs():
    cluster = dataclasses.replace(EksGpuConfig().cluster, endpoint_public_access=True)
    with pytest.raises(ValidationError) as err:
        build_stack(EksGpuStack, EksGpuConfig(cluster=cluster))
    assert str(err.value) == ("EKS cluster 'spotkit-eks': cluster.public_access_cidrs is empty while "
                              "endpoint_public_access is on: give the CIDRs allowed to reach the API, or turn "
                              "endpoint_public_access off")
    bad = dataclasses.replace(cluster, public_access_cidrs=("my office",))
    with pytest.raises(ValidationError) as err:
        build_stack(EksGpuStack, EksGpuConfig(cluster=bad))
    assert str(err.value) == ("EKS cluster 'spotkit-eks': cluster.public_access_cidrs has 'my office', which is not a "
                              "CIDR block (e.g. 203.0.113.0/24)")


def test_public_eks_endpoint_with_cidrs_and_the_explicit_whole_internet():
    office = dataclasses.replace(EksGpuConfig().cluster, endpoint_public_access=True,
                                 public_access_cidrs=("203.0.113.0/24",))
    with warnings.catch_warnings():
        warnings.simplefilter("error", SpotkitWarning)  # no warning for a named range
        doc, _ = build_stack(EksGpuStack, EksGpuConfig(cluster=office))
    vpc = one(doc, "aws_eks_cluster")["vpc_config"]
    assert (vpc["endpoint_public_access"], vpc["public_access_cidrs"]) == (True, ["203.0.113.0/24"])
    anywhere = dataclasses.replace(office, public_access_cidrs=("0.0.0.0/0",))
    with pytest.warns(SpotkitWarning) as caught:
        doc, _ = build_stack(EksGpuStack, EksGpuConfig(cluster=anywhere))
    assert ("EKS cluster 'spotkit-eks': cluster.public_access_cidrs has 0.0.0.0/0: the API endpoint is public to the "
            "whole internet (authentication still applies); set it to your office/VPN ranges or turn "
            "cluster.endpoint_public_access off") in [str(w.message) for w in caught]
    assert one(doc, "aws_eks_cluster")["vpc_config"]["public_access_cidrs"] == ["0.0.0.0/0"]


# --- interruption handler -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def training():
    doc, _ = build_stack(TrainingStack, TrainingConfig())
    return doc


@pytest.fixture(scope="module")
def ecs():
    doc, _ = build_stack(EcsSpotStack, EcsSpotConfig())
    return doc


def _arn(doc, service: str, resource: str, account: bool = True) -> str:
    part = _data_ref(doc, "aws_partition", "interruptions_partition_", "partition")
    region = _data_ref(doc, "aws_region", "interruptions_region_", "name")
    acct = _data_ref(doc, "aws_caller_identity", "interruptions_account_", "account_id") if account else ""
    return f"arn:{part}:{service}:{region}:{acct}:{resource}"


def test_handler_deregisters_only_from_the_stacks_target_groups(training):
    by_sid = _handler_policy(training)
    assert "DeregisterListed" not in by_sid  # none listed
    assert by_sid["DeregisterOwnTargetGroups"] == {
        "Sid": "DeregisterOwnTargetGroups", "Effect": "Allow", "Action": ["elasticloadbalancing:DeregisterTargets"],
        "Resource": [_arn(training, "elasticloadbalancing", "targetgroup/*/*")],
        "Condition": {"StringEquals": {"aws:ResourceTag/spotkit:name": "spotkit-training"}}}
    # AND the stack's target groups do carry that tag (provider default tags)
    tags = training["provider"]["aws"][0]["default_tags"][0]["tags"]
    assert tags["spotkit:name"] == "spotkit-training"


def test_handler_without_clusters_drains_only_its_groups_container_instances(training):
    by_sid = _handler_policy(training)
    assert by_sid["EcsDrainOwnGroups"] == {
        "Sid": "EcsDrainOwnGroups", "Effect": "Allow", "Action": ["ecs:UpdateContainerInstancesState"],
        "Resource": [_arn(training, "ecs", "container-instance/*")],
        "Condition": {"StringEquals": {"aws:ResourceTag/spotkit:group": ["spotkit-training"]}}}
    assert by_sid["EcsDescribe"]["Action"] == ["ecs:DescribeContainerInstances"]
    assert by_sid["EcsList"]["Resource"] == [_arn(training, "ecs", "cluster/*")]


def test_handler_of_an_ecs_stack_drains_in_its_cluster_only(ecs):
    by_sid = _handler_policy(ecs)
    assert by_sid["EcsList"] == {"Sid": "EcsList", "Effect": "Allow", "Action": ["ecs:ListContainerInstances"],
                                 "Resource": [_arn(ecs, "ecs", "cluster/spotkit-ecs")]}
    assert by_sid["EcsDrain"] == {"Sid": "EcsDrain", "Effect": "Allow",
                                  "Action": ["ecs:DescribeContainerInstances", "ecs:UpdateContainerInstancesState"],
                                  "Resource": [_arn(ecs, "ecs", "container-instance/spotkit-ecs/*")]}
    assert "EcsDrainOwnGroups" not in by_sid
    # AND the handler looks only there
    assert one(ecs, "aws_lambda_function")["environment"]["variables"]["SPOTKIT_CLUSTERS"] == "spotkit-ecs"


def test_handler_checkpoint_and_lifecycle_are_scoped(ecs):
    by_sid = _handler_policy(ecs)
    assert by_sid["CheckpointDocument"]["Resource"] == [_arn(ecs, "ssm", "document/AWS-RunShellScript", account=False)]
    assert by_sid["CheckpointOwnInstances"] == {
        "Sid": "CheckpointOwnInstances", "Effect": "Allow", "Action": ["ssm:SendCommand"],
        "Resource": [_arn(ecs, "ec2", "instance/*")],
        "Condition": {"StringEquals": {"aws:ResourceTag/spotkit:group": ["spotkit-ecs-spot", "spotkit-ecs-od"]}}}
    assert by_sid["CompleteLifecycle"]["Resource"] == [
        _arn(ecs, "autoscaling", f"autoScalingGroup:*:autoScalingGroupName/{g}") for g in ("spotkit-ecs-spot", "spotkit-ecs-od")]


def test_handler_mutations_are_never_account_wide(training, ecs):
    mutating = ("Deregister", "Update", "SendCommand", "Complete", "Record", "Set", "Create", "Delete", "Put")
    for doc in (training, ecs):
        for s in _handler_policy(doc).values():
            for action in _actions(s):
                verb = action.split(":")[1]
                if verb.startswith(mutating):
                    resources_ = s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]]
                    assert "*" not in resources_, s
                    # an ARN naming every resource of its type (instance/*, targetgroup/*/*) only under a condition
                    if any(re.fullmatch(r"[\w-]+(/\*)+", r.rsplit(":", 1)[-1]) for r in resources_):
                        assert s.get("Condition"), s


def test_listed_target_groups_are_added():
    arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcdef"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SpotkitWarning)
        doc, _ = synth_construct(lambda st: InterruptionEvents(
            st, "ie", name="test", groups=["g"], settings=InterruptionEventsSettings(target_group_arns=(arn,))))
    by_sid = _handler_policy(doc)
    assert by_sid["DeregisterListed"] == {"Sid": "DeregisterListed", "Effect": "Allow",
                                          "Action": ["elasticloadbalancing:DeregisterTargets"], "Resource": [arn]}
    assert by_sid["DeregisterOwnTargetGroups"]["Condition"] == {"StringEquals": {"aws:ResourceTag/spotkit:name": "test"}}


# --- KMS ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("given", ["alias/interruptions", "1234abcd-12ab-34cd-56ef-1234567890ab",
                                   "arn:aws:kms:us-east-1:123456789012:alias/interruptions"])
def test_queue_key_by_id_or_alias_is_resolved_to_its_arn(given):
    doc, _ = synth_construct(lambda st: InterruptionEvents(
        st, "ie", name="test", groups=["g"], settings=InterruptionEventsSettings(kms_key_arn=given)))
    [key] = data_sources(doc, "aws_kms_key").values()
    assert key == {"key_id": given}
    arn = _data_ref(doc, "aws_kms_key", "ie_queue-key", "arn")
    assert _handler_policy(doc)["QueueKey"] == {"Sid": "QueueKey", "Effect": "Allow",
                                                "Action": ["kms:Decrypt", "kms:GenerateDataKey"], "Resource": [arn]}
    assert one(doc, "aws_dynamodb_table")["server_side_encryption"] == {"enabled": True, "kms_key_arn": arn}
    assert {q["kms_master_key_id"] for q in resources(doc, "aws_sqs_queue").values()} == {arn}


def test_queue_key_given_by_arn_is_used_as_is():
    arn = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    doc, _ = synth_construct(lambda st: InterruptionEvents(
        st, "ie", name="test", groups=["g"], settings=InterruptionEventsSettings(kms_key_arn=arn)))
    assert data_sources(doc, "aws_kms_key") == {}
    assert _handler_policy(doc)["QueueKey"]["Resource"] == [arn]


def test_data_volume_key_by_alias_is_resolved_never_star():
    def build(stack):
        group = SpotComputeGroup(stack, "fleet", name="fleet", vpc_id="vpc-1", subnet_ids=["subnet-a"])
        RetainedDataVolumes(stack, "data", group=group, volumes=[DataVolumeSettings(kms_key_id="alias/data")])

    doc, _ = synth_construct(build)
    assert [d["key_id"] for d in data_sources(doc, "aws_kms_key").values()] == ["alias/data"]
    policy = json.loads(one(doc, "aws_iam_role_policy")["policy"])
    [kms] = [s for s in policy["Statement"] if s.get("Sid") == "UseDataVolumeKey"]
    assert kms["Resource"] == [_data_ref(doc, "aws_kms_key", "data_kms-key-0", "arn")]
    assert kms["Condition"] == {"StringLike": {"kms:ViaService": "ec2.*.amazonaws.com"}}


@pytest.mark.parametrize("stack_cls, config", [(TrainingStack, TrainingConfig()), (EcsSpotStack, EcsSpotConfig())])
def test_no_kms_statement_on_star_in_shipped_stacks(stack_cls, config):
    doc, _ = build_stack(stack_cls, config)
    for policy in _policies(doc):
        for s in policy["Statement"]:
            if any(a.startswith("kms:") for a in _actions(s)):
                assert s["Resource"] != "*" and "*" not in s["Resource"], s


def test_key_arn_recognition():
    assert is_key_arn("arn:aws:kms:us-east-1:123456789012:key/abc")
    assert is_key_arn("arn:aws-us-gov:kms:us-gov-west-1:123456789012:key/abc")
    assert not is_key_arn("arn:aws:kms:us-east-1:123456789012:alias/abc")
    assert not is_key_arn("alias/abc") and not is_key_arn("abc")


# --- ECS tasks and the instance role --------------------------------------------------------------


def test_ecs_hosts_keep_tasks_off_the_instance_role(ecs):
    script = local_value(ecs, "ecs_spot-group")
    # THEN awsvpc tasks are blocked by the agent, and container instances carry the EC2 tags
    assert "ECS_AWSVPC_BLOCK_IMDS=true\n" in script
    assert "ECS_CONTAINER_INSTANCE_PROPAGATE_TAGS_FROM=ec2_instance\n" in script
    # AND bridge tasks are one hop too far: hop limit 1 with IMDSv2 required, on both groups
    templates = resources(ecs, "aws_launch_template").values()
    assert len(templates) == 2
    for lt in templates:
        assert lt["metadata_options"]["http_put_response_hop_limit"] == 1
        assert lt["metadata_options"]["http_tokens"] == "required"


def test_gpu_inference_hosts_keep_tasks_off_the_instance_role():
    doc, _ = build_stack(GpuInferenceStack, GpuInferenceConfig())
    assert "ECS_AWSVPC_BLOCK_IMDS=true\n" in local_value(doc, "ecs_spot-group")
    assert {lt["metadata_options"]["http_put_response_hop_limit"]
            for lt in resources(doc, "aws_launch_template").values()} == {1}
    assert one(doc, "aws_lambda_function")["environment"]["variables"]["SPOTKIT_CLUSTERS"] == "spotkit-gpu"


def test_opting_out_restores_the_hop_limit_and_warns():
    cluster = dataclasses.replace(EcsClusterSettings(), block_task_instance_metadata=False)
    with pytest.warns(SpotkitWarning) as caught:
        doc, _ = build_stack(EcsSpotStack, EcsSpotConfig(cluster=cluster))
    assert ("EcsSpotCluster 'spotkit-ecs': block_task_instance_metadata is off: tasks can read the instance role's "
            "credentials from instance metadata (IMDS hop limit 2/2, awsvpc tasks not blocked); give tasks their own "
            "task role and turn it back on unless they need IMDS") in [str(w.message) for w in caught]
    assert "ECS_AWSVPC_BLOCK_IMDS" not in local_value(doc, "ecs_spot-group")
    assert {lt["metadata_options"]["http_put_response_hop_limit"]
            for lt in resources(doc, "aws_launch_template").values()} == {2}


# --- temp files --------------------------------------------------------------------------------


def test_lambda_package_is_staged_in_a_private_verified_cache(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    # WHEN the package is built twice
    first = build_lambda_source(cache_root=cache)
    second = build_lambda_source(cache_root=cache)
    # THEN it is the same content-addressed folder, private to us
    assert first == second and first.parent == cache
    assert stat.S_IMODE(first.stat().st_mode) == 0o700
    assert re.fullmatch(r"[0-9a-f]{64}", first.name)
    marker = first / "spotkit" / "runtime" / "interruption" / "handler.py"
    original = marker.read_bytes()
    # WHEN someone tampers with the cached package
    marker.write_bytes(original + b"\nimport os; os.system('curl evil')\n")
    (first / "spotkit" / "extra.py").write_text("x = 1\n")
    third = build_lambda_source(cache_root=cache)
    # THEN it is rebuilt from the sources, not reused
    assert (third / "spotkit" / "runtime" / "interruption" / "handler.py").read_bytes() == original
    assert not (third / "spotkit" / "extra.py").exists()
    assert sorted(p.relative_to(third).as_posix() for p in third.rglob("*") if p.is_file()) == sorted(
        name for name, _ in lambda_source_files())


def test_lambda_package_symlink_in_cache_is_not_followed(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    built = build_lambda_source(cache_root=cache)
    link = built / "spotkit" / "runtime" / "interruption" / "handler.py"
    link.unlink()
    (tmp_path / "evil.py").write_text("raise SystemExit\n")
    link.symlink_to(tmp_path / "evil.py")
    again = build_lambda_source(cache_root=cache)
    assert not (again / "spotkit" / "runtime" / "interruption" / "handler.py").is_symlink()


def test_lambda_cache_root_is_private(tmp_path, monkeypatch):
    from spotkit.constructs.interruption_events import lambda_cache_root

    monkeypatch.setenv("SPOTKIT_CACHE_DIR", str(tmp_path / "c"))
    root = lambda_cache_root()
    assert root == tmp_path / "c" / "lambda"
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    os.chmod(root, 0o777)  # loosened by someone: tightened again before use
    assert stat.S_IMODE(lambda_cache_root().stat().st_mode) == 0o700


def test_lambda_package_is_not_in_a_shared_temp_path(training):
    fn = one(training, "aws_lambda_function")
    assert fn["filename"].startswith("assets/")
    src = build_lambda_source()
    assert not str(src).startswith(("/tmp/spotkit-lambda/", "/var/tmp/spotkit-lambda/"))


def test_boot_scripts_write_no_fixed_tmp_path():
    # GIVEN every shipped stack's synthesized user data (the agent installs from S3 in training)
    from spotkit.constructs.agent_user_data import AgentSettings, agent_user_data_part

    part = agent_user_data_part(AgentSettings(package_spec="s3://bucket/spotkit-0.1.0-py3-none-any.whl"))
    # THEN the download goes to a private mktemp folder, removed after the install
    assert 'spotkit_dl=$(mktemp -d)' in part.script
    assert 'rm -rf "$spotkit_dl"' in part.script
    for stack_cls, config in ((TrainingStack, TrainingConfig()), (EcsSpotStack, EcsSpotConfig())):
        doc, _ = build_stack(stack_cls, config)
        for name, script in (doc.get("locals") or {}).items():
            assert not re.search(r"(?<![\w$])/tmp/", script), (name, re.findall(r".{40}/tmp/.{40}", script))


def test_agent_artifact_bucket_is_private_tls_only_versioned_and_expires_replaced_builds(training):
    # GIVEN the training stack's agent artifact bucket (one per stack, read by instance roles only)
    buckets = {k: v for k, v in resources(training, "aws_s3_bucket").items() if "agent-artifact" in k}
    [(bucket_id, _)] = buckets.items()
    ref = f"${{aws_s3_bucket.{bucket_id}.id}}"

    def of_bucket(rtype: str) -> dict:
        [found] = [r for r in resources(training, rtype).values() if r["bucket"] == ref]
        return found

    # THEN public access is blocked, TLS is required, objects are encrypted and versioned
    assert {k: v for k, v in of_bucket("aws_s3_bucket_public_access_block").items() if k != "bucket"} == {
        "block_public_acls": True, "block_public_policy": True, "ignore_public_acls": True,
        "restrict_public_buckets": True}
    policy = json.loads(of_bucket("aws_s3_bucket_policy")["policy"])
    assert policy["Statement"][0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert of_bucket("aws_s3_bucket_versioning")["versioning_configuration"]["status"] == "Enabled"
    # AND a lifecycle rule removes replaced builds after 30 days and abandoned uploads after 1 (CKV2_AWS_61)
    [rule] = of_bucket("aws_s3_bucket_lifecycle_configuration")["rule"]
    assert rule["status"] == "Enabled" and rule["filter"] == [{"prefix": ""}]
    assert rule["noncurrent_version_expiration"] == [{"noncurrent_days": 30}]
    assert rule["abort_incomplete_multipart_upload"] == [{"days_after_initiation": 1}]
