"""EFS for checkpoints: a file system that no spot reclaim, instance stop or AZ loss can take.

What it creates:
- an encrypted file system (elastic throughput by default, lifecycle to Infrequent Access and back on
  first access, AWS Backup policy on) and a file-system policy that refuses connections without TLS and
  gives nothing to anonymous clients, so only roles granted by ``grant_mount`` can mount;
- a mount target in every subnet given (one per AZ: give one subnet per AZ, as the compute group does);
- a security group for the mount targets with no ingress until ``allow_from(security_group_id)`` adds NFS
  (2049) from a compute group's security group;
- an access point (POSIX uid/gid, root directory such as ``/checkpoints`` created with permissions).

Capabilities: ``allow_from(sg_id)``, ``grant_mount(grantee)``, ``mount_part()`` (user data that mounts with
TLS and IAM through amazon-efs-utils, writes an fstab entry with ``_netdev``, retries while mount targets
become available and exports ``SPOTKIT_CHECKPOINT_DIR``), and ``attach(group)`` doing all three.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Optional, Sequence

from constructs import Construct

from spotkit.constructs.user_data import UserDataPart
from spotkit.errors import ValidationError
from spotkit.runtime.notice import TAG_GROUP

NFS_PORT = 2049
THROUGHPUT_MODES = ("elastic", "bursting", "provisioned")
IA_TRANSITIONS = ("AFTER_1_DAY", "AFTER_7_DAYS", "AFTER_14_DAYS", "AFTER_30_DAYS", "AFTER_60_DAYS",
                  "AFTER_90_DAYS", "AFTER_180_DAYS", "AFTER_270_DAYS", "AFTER_365_DAYS")


@dataclass(frozen=True)
class EfsCheckpointSettings:
    """Checkpoint file system settings.

    - ``enabled``: used by stacks to switch the construct. Default on.
    - ``throughput_mode``: elastic (default), bursting or provisioned; ``provisioned_throughput_mibps`` is
      required with provisioned and refused otherwise.
    - ``transition_to_ia``: AFTER_1_DAY..AFTER_365_DAYS, or None to keep everything in Standard. Default AFTER_30_DAYS.
    - ``backup``: AWS Backup policy on. Default on.
    - ``kms_key_id``: key ARN for encryption (always on). Default: the AWS-managed EFS key.
    - ``posix_uid`` / ``posix_gid``: the identity of every access through the access point. Default 1000/1000.
    - ``root_directory``: the access point's root, created if missing. Default /checkpoints.
    - ``root_permissions``: octal mode of the created root directory. Default 0750.
    - ``mount_point``: where instances mount it. Default /mnt/checkpoints.
    - ``mount_retries`` / ``mount_retry_seconds``: boot-time mount attempts while mount targets come up. Default 30 x 10 s.
    """

    enabled: bool = True
    throughput_mode: str = "elastic"
    provisioned_throughput_mibps: Optional[int] = None
    transition_to_ia: Optional[str] = "AFTER_30_DAYS"
    backup: bool = True
    kms_key_id: Optional[str] = None
    posix_uid: int = 1000
    posix_gid: int = 1000
    root_directory: str = "/checkpoints"
    root_permissions: str = "0750"
    mount_point: str = "/mnt/checkpoints"
    mount_retries: int = 30
    mount_retry_seconds: int = 10


def validate_efs(where: str, s: EfsCheckpointSettings, subnet_ids: Sequence[str]) -> None:
    if s.throughput_mode not in THROUGHPUT_MODES:
        raise ValidationError(
            f"{where}: throughput_mode {s.throughput_mode!r} is not accepted by EFS: use one of {', '.join(THROUGHPUT_MODES)}"
        )
    if s.throughput_mode == "provisioned" and not s.provisioned_throughput_mibps:
        raise ValidationError(
            f"{where}: throughput_mode 'provisioned' needs provisioned_throughput_mibps (1-3414): set it or use 'elastic'"
        )
    if s.throughput_mode != "provisioned" and s.provisioned_throughput_mibps:
        raise ValidationError(
            f"{where}: provisioned_throughput_mibps is only used with throughput_mode 'provisioned' "
            f"(got {s.throughput_mode!r}): remove it or set throughput_mode='provisioned'"
        )
    if s.transition_to_ia is not None and s.transition_to_ia not in IA_TRANSITIONS:
        raise ValidationError(
            f"{where}: transition_to_ia {s.transition_to_ia!r} is not accepted by EFS: use one of "
            f"{', '.join(IA_TRANSITIONS)}, or null to keep files in Standard"
        )
    for key, value in (("posix_uid", s.posix_uid), ("posix_gid", s.posix_gid)):
        if not 0 <= value <= 4294967295:
            raise ValidationError(f"{where}: {key} must be between 0 and 4294967295 (got {value})")
    if not s.root_directory.startswith("/") or s.root_directory == "/":
        raise ValidationError(
            f"{where}: root_directory {s.root_directory!r} must be an absolute path below / (e.g. /checkpoints), "
            "so the access point cannot expose the whole file system"
        )
    if not re.match(r"^0?[0-7]{3}$", s.root_permissions):
        raise ValidationError(f"{where}: root_permissions {s.root_permissions!r} must be an octal mode such as 0750")
    if not s.mount_point.startswith("/"):
        raise ValidationError(f"{where}: mount_point {s.mount_point!r} must be an absolute path")
    if s.mount_retries < 1 or s.mount_retry_seconds < 1:
        raise ValidationError(
            f"{where}: mount_retries and mount_retry_seconds must be at least 1 (got {s.mount_retries} and "
            f"{s.mount_retry_seconds}): mount targets take minutes to become available after creation"
        )
    if not subnet_ids:
        raise ValidationError(f"{where}: subnet_ids is empty: give the compute group's subnets (one mount target per subnet)")


class EfsCheckpoints(Construct):
    """The checkpoint file system, its mount targets, security group and access point."""

    def __init__(self, scope: Construct, id_: str, *, name: str, vpc_id: str, subnet_ids: Sequence[str],
                 settings: EfsCheckpointSettings = EfsCheckpointSettings()):
        where = f"EfsCheckpoints {name!r}"
        validate_efs(where, settings, subnet_ids)
        super().__init__(scope, id_)
        self.name = name
        self.settings = settings
        self._sg_rules = 0
        tags = {"Name": f"{name}-checkpoints", TAG_GROUP: name}
        self.file_system = self._create_file_system(tags)
        self._create_security_group(vpc_id, tags)
        self._create_mount_points(subnet_ids, tags)

    # --- resources --------------------------------------------------------------------------

    def _create_file_system(self, tags: dict):
        """The encrypted file system, its backup policy, and a policy that refuses access without TLS."""
        from cdktn_aws.efs import (
            AwsBackupPolicy as EfsBackupPolicy,
            AwsFileSystem as EfsFileSystem,
            AwsFileSystemPolicy as EfsFileSystemPolicy,
        )

        s = self.settings
        lifecycle = []
        if s.transition_to_ia:
            lifecycle = [EfsFileSystem.LifecyclePolicyProperty(transition_to_ia=s.transition_to_ia),
                         EfsFileSystem.LifecyclePolicyProperty(transition_to_primary_storage_class="AFTER_1_ACCESS")]
        file_system = EfsFileSystem(
            self, "file-system",
            creation_token=f"{self.name}-checkpoints",
            encrypted=True,
            kms_key_id=s.kms_key_id,
            performance_mode="generalPurpose",
            throughput_mode=s.throughput_mode,
            provisioned_throughput_in_mibps=s.provisioned_throughput_mibps,
            lifecycle_policy=lifecycle or None,
            tags=tags,
        )
        EfsBackupPolicy(self, "backup", file_system_id=file_system.id,
                        backup_policy=EfsBackupPolicy.BackupPolicyProperty(status="ENABLED" if s.backup else "DISABLED"))
        EfsFileSystemPolicy(
            self, "policy",
            file_system_id=file_system.id,
            policy=json.dumps({
                "Version": "2012-10-17",
                "Statement": [{
                    "Sid": "DenyWithoutTls",
                    "Effect": "Deny",
                    "Principal": {"AWS": "*"},
                    "Action": "*",
                    "Resource": file_system.arn,
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                }],
            }),
        )
        return file_system

    def _create_security_group(self, vpc_id: str, tags: dict) -> None:
        from cdktn import TerraformResourceLifecycle
        from cdktn_aws.vpc import AwsSecurityGroup as SecurityGroup

        self.security_group = SecurityGroup(
            self, "security-group",
            name_prefix=f"{self.name}-efs-",
            description=f"spotkit {self.name} checkpoints: NFS only from compute groups added by allow_from",
            vpc_id=vpc_id,
            tags=tags,
            lifecycle=TerraformResourceLifecycle(create_before_destroy=True),
        )
        self.security_group_id = self.security_group.id

    def _create_mount_points(self, subnet_ids: Sequence[str], tags: dict) -> None:
        """A mount target per subnet, and the access point every client mounts through."""
        from cdktn_aws.efs import AwsAccessPoint as EfsAccessPoint, AwsMountTarget as EfsMountTarget

        s = self.settings
        self.mount_targets = [
            EfsMountTarget(self, f"mount-target-{i}", file_system_id=self.file_system.id, subnet_id=subnet,
                           security_groups=[self.security_group.id])
            for i, subnet in enumerate(subnet_ids)
        ]
        self.access_point = EfsAccessPoint(
            self, "access-point",
            file_system_id=self.file_system.id,
            posix_user=EfsAccessPoint.PosixUserProperty(uid=s.posix_uid, gid=s.posix_gid),
            root_directory=EfsAccessPoint.RootDirectoryProperty(
                path=s.root_directory,
                creation_info=EfsAccessPoint.CreationInfoProperty(
                    owner_uid=s.posix_uid, owner_gid=s.posix_gid, permissions=s.root_permissions),
            ),
            tags=tags,
        )

    # --- capabilities -----------------------------------------------------------------------

    def allow_from(self, security_group_id: str, description: str = "NFS from the compute group") -> None:
        """Open NFS (2049/tcp) on the mount targets to one security group, and nothing else."""
        from cdktn_aws.vpc import AwsSecurityGroupIngressRule as VpcSecurityGroupIngressRule

        VpcSecurityGroupIngressRule(
            self, f"nfs-from-{self._sg_rules}",
            security_group_id=self.security_group.id,
            referenced_security_group_id=security_group_id,
            ip_protocol="tcp", from_port=NFS_PORT, to_port=NFS_PORT, description=description,
        )
        self._sg_rules += 1

    def mount_statement(self) -> dict:
        """Least privilege to mount and write through this access point only (no root access)."""
        return {
            "Sid": "MountCheckpoints",
            "Effect": "Allow",
            "Action": ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"],
            "Resource": self.file_system.arn,
            "Condition": {"StringEquals": {"elasticfilesystem:AccessPointArn": self.access_point.arn}},
        }

    def grant_mount(self, grantee) -> None:
        """Give a role mount + write through the access point. ``grantee`` is a compute group / spot
        instance (anything with ``add_to_role_policy``) or an ``IamRole``."""
        if hasattr(grantee, "add_to_role_policy"):
            grantee.add_to_role_policy(self.mount_statement())
            return
        from cdktn_aws.iam import AwsRolePolicy as IamRolePolicy

        IamRolePolicy(self, f"mount-{len(self.node.children)}", name_prefix="spotkit-efs-mount-", role=grantee.id,
                      policy=json.dumps({"Version": "2012-10-17", "Statement": [self.mount_statement()]}))

    def mount_part(self) -> UserDataPart:
        s = self.settings
        fs, ap, mnt = self.file_system.id, self.access_point.id, s.mount_point
        script = f"""
if ! command -v mount.efs >/dev/null 2>&1; then
  (dnf install -y amazon-efs-utils || yum install -y amazon-efs-utils || (apt-get update && apt-get install -y amazon-efs-utils)) >/dev/null 2>&1 \\
    || echo "spotkit: could not install amazon-efs-utils"
fi
mkdir -p {mnt}
FSTAB_LINE="{fs}:/ {mnt} efs _netdev,noresvport,tls,iam,accesspoint={ap} 0 0"
grep -q " {mnt} efs " /etc/fstab || echo "$FSTAB_LINE" >> /etc/fstab
for i in $(seq 1 {s.mount_retries}); do
  mountpoint -q {mnt} && break
  mount {mnt} && break
  echo "spotkit: EFS mount attempt $i failed (mount targets may still be creating); retrying in {s.mount_retry_seconds}s"
  sleep {s.mount_retry_seconds}
done
mountpoint -q {mnt} || echo "spotkit: EFS not mounted at {mnt}; checkpoints would be lost"
echo "SPOTKIT_CHECKPOINT_DIR={mnt}" >> /etc/environment
echo "export SPOTKIT_CHECKPOINT_DIR={mnt}" > /etc/profile.d/spotkit-checkpoints.sh
"""
        return UserDataPart("efs-checkpoints", script, order=30)

    def attach(self, group) -> None:
        """Wire a compute group or spot instance: NFS from its security group, mount grant, mount at boot."""
        self.allow_from(group.security_group_id)
        self.grant_mount(group)
        group.add_user_data(self.mount_part())
