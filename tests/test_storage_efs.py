"""EFS checkpoints: synthesized values (encryption, mount targets, NFS rule source, access point, mount
grant, boot-time mount) and every rule (exact messages)."""

from __future__ import annotations

import json

import pytest

from spotkit.constructs.compute_group import SpotComputeGroup
from spotkit.constructs.efs_checkpoints import EfsCheckpoints, EfsCheckpointSettings, validate_efs
from tests.support.synth import local_value, one, resources, synth_construct
from spotkit.errors import ValidationError

SUBNETS = ["subnet-a", "subnet-b", "subnet-c"]


@pytest.fixture(scope="module")
def attached():
    # GIVEN a compute group in three subnets and EFS checkpoints attached to it, plus a bare role granted mount
    def build(stack):
        from cdktn_aws.iam import AwsRole as IamRole

        group = SpotComputeGroup(stack, "fleet", name="fleet", vpc_id="vpc-1", subnet_ids=SUBNETS)
        efs = EfsCheckpoints(stack, "ckpt", name="fleet", vpc_id="vpc-1", subnet_ids=SUBNETS,
                             settings=EfsCheckpointSettings(posix_uid=1001, posix_gid=1002))
        efs.attach(group)
        other = IamRole(stack, "other", assume_role_policy="{}")
        efs.grant_mount(other)
        return group

    # WHEN synthesized
    doc, _ = synth_construct(build)
    return doc


def _ref(doc: dict, rtype: str, attr: str) -> str:
    (name,) = resources(doc, rtype)
    return f"${{{rtype}.{name}.{attr}}}"


def test_file_system_is_encrypted_with_elastic_throughput_and_ia_lifecycle(attached):
    fs = one(attached, "aws_efs_file_system")
    assert fs["encrypted"] is True
    assert fs["throughput_mode"] == "elastic"
    assert fs["lifecycle_policy"] == [{"transition_to_ia": "AFTER_30_DAYS"},
                                      {"transition_to_primary_storage_class": "AFTER_1_ACCESS"}]
    assert one(attached, "aws_efs_backup_policy")["backup_policy"] == {"status": "ENABLED"}


def test_file_system_policy_refuses_connections_without_tls(attached):
    policy = json.loads(one(attached, "aws_efs_file_system_policy")["policy"])
    (statement,) = policy["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_one_mount_target_per_subnet_behind_the_efs_security_group(attached):
    targets = resources(attached, "aws_efs_mount_target").values()
    assert sorted(t["subnet_id"] for t in targets) == SUBNETS
    efs_sg = [k for k, v in resources(attached, "aws_security_group").items() if v["name_prefix"] == "fleet-efs-"]
    assert all(t["security_groups"] == [f"${{aws_security_group.{efs_sg[0]}.id}}"] for t in targets)
    # AND that security group has no inline ingress: NFS comes only from allow_from
    assert "ingress" not in resources(attached, "aws_security_group")[efs_sg[0]]


def test_nfs_rule_source_is_the_compute_group_security_group(attached):
    rules = [r for r in resources(attached, "aws_vpc_security_group_ingress_rule").values() if r["from_port"] == 2049]
    assert len(rules) == 1
    (rule,) = rules
    groups = resources(attached, "aws_security_group")
    fleet_sg = [k for k, v in groups.items() if v["name_prefix"] == "fleet-"][0]
    efs_sg = [k for k, v in groups.items() if v["name_prefix"] == "fleet-efs-"][0]
    assert rule["referenced_security_group_id"] == f"${{aws_security_group.{fleet_sg}.id}}"
    assert rule["security_group_id"] == f"${{aws_security_group.{efs_sg}.id}}"
    assert (rule["ip_protocol"], rule["to_port"]) == ("tcp", 2049)
    assert "cidr_ipv4" not in rule


def test_access_point_posix_user_and_created_root(attached):
    ap = one(attached, "aws_efs_access_point")
    assert ap["posix_user"] == {"uid": 1001, "gid": 1002}
    assert ap["root_directory"] == {"path": "/checkpoints",
                                    "creation_info": {"owner_uid": 1001, "owner_gid": 1002, "permissions": "0750"}}


def test_grant_mount_is_least_privilege_through_the_access_point(attached):
    fleet_policy = [p for p in resources(attached, "aws_iam_role_policy").values() if p.get("name") == "spotkit-instance"][0]
    statement = [s for s in json.loads(fleet_policy["policy"])["Statement"] if s.get("Sid") == "MountCheckpoints"][0]
    assert statement["Action"] == ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"]
    assert statement["Resource"] == _ref(attached, "aws_efs_file_system", "arn")
    assert statement["Condition"] == {"StringEquals": {
        "elasticfilesystem:AccessPointArn": _ref(attached, "aws_efs_access_point", "arn")}}
    # AND a bare IamRole gets the same statement in its own inline policy
    other = [p for p in resources(attached, "aws_iam_role_policy").values() if p.get("name_prefix") == "spotkit-efs-mount-"]
    assert [json.loads(p["policy"])["Statement"] for p in other] == [[statement]]


def test_user_data_mounts_with_tls_through_efs_utils_with_retries(attached):
    script = local_value(attached, "fleet_fleet_user_data")
    fs_id = _ref(attached, "aws_efs_file_system", "id")
    ap_id = _ref(attached, "aws_efs_access_point", "id")
    # THEN the fstab line mounts the access point with TLS and IAM and waits for the network
    assert (f'FSTAB_LINE="{fs_id}:/ /mnt/checkpoints efs _netdev,noresvport,tls,iam,accesspoint={ap_id} 0 0"') in script
    assert "dnf install -y amazon-efs-utils" in script
    assert "for i in $(seq 1 30); do" in script and "sleep 10" in script
    assert 'echo "export SPOTKIT_CHECKPOINT_DIR=/mnt/checkpoints" > /etc/profile.d/spotkit-checkpoints.sh' in script


# --- rules, exact messages -------------------------------------------------------------------


@pytest.mark.parametrize("settings, message", [
    (EfsCheckpointSettings(throughput_mode="max"),
     "X: throughput_mode 'max' is not accepted by EFS: use one of elastic, bursting, provisioned"),
    (EfsCheckpointSettings(throughput_mode="provisioned"),
     "X: throughput_mode 'provisioned' needs provisioned_throughput_mibps (1-3414): set it or use 'elastic'"),
    (EfsCheckpointSettings(provisioned_throughput_mibps=100),
     "X: provisioned_throughput_mibps is only used with throughput_mode 'provisioned' (got 'elastic'): remove it or "
     "set throughput_mode='provisioned'"),
    (EfsCheckpointSettings(transition_to_ia="AFTER_2_DAYS"),
     "X: transition_to_ia 'AFTER_2_DAYS' is not accepted by EFS: use one of AFTER_1_DAY, AFTER_7_DAYS, AFTER_14_DAYS, "
     "AFTER_30_DAYS, AFTER_60_DAYS, AFTER_90_DAYS, AFTER_180_DAYS, AFTER_270_DAYS, AFTER_365_DAYS, or null to keep "
     "files in Standard"),
    (EfsCheckpointSettings(posix_uid=-1), "X: posix_uid must be between 0 and 4294967295 (got -1)"),
    (EfsCheckpointSettings(root_directory="/"),
     "X: root_directory '/' must be an absolute path below / (e.g. /checkpoints), so the access point cannot expose "
     "the whole file system"),
    (EfsCheckpointSettings(root_permissions="rwx"), "X: root_permissions 'rwx' must be an octal mode such as 0750"),
    (EfsCheckpointSettings(mount_point="mnt"), "X: mount_point 'mnt' must be an absolute path"),
    (EfsCheckpointSettings(mount_retries=0),
     "X: mount_retries and mount_retry_seconds must be at least 1 (got 0 and 10): mount targets take minutes to "
     "become available after creation"),
])
def test_efs_rules(settings, message):
    with pytest.raises(ValidationError) as err:
        validate_efs("X", settings, SUBNETS)
    assert str(err.value) == message


def test_rule_subnets_required_before_any_resource():
    with pytest.raises(ValidationError) as err:
        EfsCheckpoints(None, "ckpt", name="fleet", vpc_id="vpc-1", subnet_ids=[])
    assert str(err.value) == ("EfsCheckpoints 'fleet': subnet_ids is empty: give the compute group's subnets "
                              "(one mount target per subnet)")


def test_provisioned_throughput_is_accepted_with_a_value():
    validate_efs("X", EfsCheckpointSettings(throughput_mode="provisioned", provisioned_throughput_mibps=128), SUBNETS)
