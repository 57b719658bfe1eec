"""The interruption agent as a shipped artifact: one zipapp built at synthesis, stored in a bucket the stack owns.

``build_agent_pyz()`` packs the folder ``runtime/agent/`` with its contract (``runtime_sources``: the package
markers and ``runtime/notice.py``), every module of it (standard library only) into ``spotkit-agent.pyz``, run on an instance as
``/usr/bin/python3 -I -S /opt/spotkit/spotkit-agent.pyz [options]`` (Python 3.9 and newer: Amazon Linux
2023's system Python). The build is deterministic (sorted entries, fixed timestamps and modes, stored
uncompressed), so its sha256 only changes when the agent's code does, on any machine; it is written into a private
folder (0700) owned by the user running the synthesis.

``AgentArtifact`` (one per stack, ``AgentArtifact.for_stack(scope)``) ships it: a ``TerraformAsset``, an
S3 bucket (private: public access blocked, owner-enforced, SSE-S3 encrypted, versioned, TLS-only bucket
policy) and an ``aws_s3_object`` at a key named by the hash. ``grant_read(group)`` lets an instance role
``s3:GetObject`` that one object and nothing else. ``ref`` is what the boot part needs (S3 URI and sha256).
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from constructs import Construct

from spotkit.constructs.runtime_sources import runtime_sources
from spotkit.runtime.agent.systemd import ARTIFACT_NAME  # noqa: F401 (the install paths live in spotkit.runtime.agent.systemd)
from spotkit.runtime.notice import TAG_MANAGED, TAG_PURPOSE

# Days a replaced build stays in the bucket (as a noncurrent version) before S3 removes it.
NONCURRENT_DAYS = 30
SHEBANG = b"#!/usr/bin/python3 -I -S\n"
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip can hold: no build time leaks into the hash
_MAIN = b'''"""spotkit-agent.pyz: the spotkit interruption agent (standard library only). --help lists the options."""
import sys

from spotkit.runtime.agent.cli import main

sys.exit(main())
'''


@dataclass(frozen=True)
class BuiltArtifact:
    path: Path
    sha256: str
    size: int


@dataclass(frozen=True)
class AgentArtifactRef:
    """What the boot part needs: where to download the artifact and the sha256 it must have."""

    s3_uri: str
    sha256: str


def artifact_sources() -> list[tuple[str, bytes]]:
    """(name in the archive, content), sorted: ``runtime/agent/`` with its contract (``runtime_sources``)
    and the archive's ``__main__.py``."""
    entries = [(name, path.read_bytes()) for name, path in runtime_sources("agent")]
    entries.append(("__main__.py", _MAIN))
    return sorted(entries)


def pyz_bytes() -> bytes:
    buf = io.BytesIO()
    buf.write(SHEBANG)
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in artifact_sources():
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            # Stored, not deflated: the bytes then depend on the sources alone, not on the zlib version of the
            # machine that synthesizes (a laptop and CI get the same sha256, so no spurious launch template change).
            info.compress_type = zipfile.ZIP_STORED
            info.create_system = 3  # unix, wherever the synthesis runs
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            zf.writestr(info, data)
    return buf.getvalue()


def private_build_dir() -> Path:
    """``$TMPDIR/spotkit-agent-<uid>``, 0700 and ours; a fresh ``mkdtemp`` if anything about it is off."""
    path = Path(tempfile.gettempdir()) / f"spotkit-agent-{os.getuid()}"
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        st = os.lstat(path)
        if stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o077:
            return path
    except OSError:
        pass
    return Path(tempfile.mkdtemp(prefix="spotkit-agent-"))


def build_agent_pyz(out_dir: Optional[Path] = None) -> BuiltArtifact:
    """Build ``spotkit-agent.pyz`` into ``out_dir/<sha256[:16]>/`` (default: a private folder); idempotent."""
    data = pyz_bytes()
    digest = hashlib.sha256(data).hexdigest()
    base = Path(out_dir) if out_dir is not None else private_build_dir()
    target_dir = base / digest[:16]
    target = target_dir / ARTIFACT_NAME
    if not (target.is_file() and hashlib.sha256(target.read_bytes()).hexdigest() == digest):
        target_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".pyz-", dir=target_dir)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    return BuiltArtifact(target, digest, len(data))


class AgentArtifact(Construct):
    """The agent artifact in an S3 bucket the stack owns. One per stack: use ``for_stack``."""

    ID = "spotkit-agent-artifact"

    @classmethod
    def for_stack(cls, scope: Construct) -> "AgentArtifact":
        from cdktn import TerraformStack

        stack = TerraformStack.of(scope)
        found = stack.node.try_find_child(cls.ID)
        return found if isinstance(found, AgentArtifact) else cls(stack, cls.ID)

    def __init__(self, scope: Construct, id_: str, *, name_prefix: str = "spotkit-agent-"):
        super().__init__(scope, id_)
        from cdktn_aws.s3 import AwsBucket as S3Bucket

        self.built = build_agent_pyz()
        self.sha256 = self.built.sha256
        self.key = f"agent/{self.sha256}/{ARTIFACT_NAME}"
        tags = {TAG_MANAGED: "true", TAG_PURPOSE: "interruption-agent"}
        self.bucket = S3Bucket(self, "bucket", bucket_prefix=name_prefix[:37], force_destroy=True, tags=tags)
        access, encryption, versioning = self._lock_down_bucket()
        self._expire_replaced_builds(versioning)
        policy = self._tls_only_policy(access)
        self._upload(tags, depends_on=[encryption, versioning, policy])

    # --- resources --------------------------------------------------------------------------

    def _lock_down_bucket(self):
        """(public access block, encryption, versioning): no public access, owner-enforced, AES256, versioned."""
        from cdktn_aws.s3 import (
            AwsBucketOwnershipControls as S3BucketOwnershipControls,
            AwsBucketPublicAccessBlock as S3BucketPublicAccessBlock,
            AwsBucketServerSideEncryptionConfiguration as S3BucketServerSideEncryptionConfiguration,
            AwsBucketVersioning as S3BucketVersioning,
        )

        access = S3BucketPublicAccessBlock(self, "public-access-block", bucket=self.bucket.id, block_public_acls=True,
                                           block_public_policy=True, ignore_public_acls=True,
                                           restrict_public_buckets=True)
        S3BucketOwnershipControls(self, "ownership", bucket=self.bucket.id,
                                  rule=S3BucketOwnershipControls.RuleProperty(object_ownership="BucketOwnerEnforced"))
        encryption = S3BucketServerSideEncryptionConfiguration(
            self, "encryption", bucket=self.bucket.id,
            rule=[S3BucketServerSideEncryptionConfiguration.RuleProperty(
                apply_server_side_encryption_by_default=(
                    S3BucketServerSideEncryptionConfiguration.ApplyServerSideEncryptionByDefaultProperty(
                        sse_algorithm="AES256")))])
        versioning = S3BucketVersioning(self, "versioning", bucket=self.bucket.id,
                                         versioning_configuration=S3BucketVersioning.VersioningConfigurationProperty(
                                             status="Enabled"))
        return access, encryption, versioning

    def _expire_replaced_builds(self, versioning) -> None:
        """Each build is a new key (agent/<sha256>/...): the one it replaces becomes a noncurrent version when
        Terraform deletes it. Keep those NONCURRENT_DAYS (a rollback window), then let S3 remove them, and
        clean up uploads that never completed. (checkov CKV2_AWS_61)"""
        from cdktn_aws.s3 import AwsBucketLifecycleConfiguration as S3BucketLifecycleConfiguration

        self.lifecycle = S3BucketLifecycleConfiguration(
            self, "lifecycle", bucket=self.bucket.id, depends_on=[versioning],
            rule=[S3BucketLifecycleConfiguration.RuleProperty(
                id="expire-replaced-agent-builds", status="Enabled",
                filter=[S3BucketLifecycleConfiguration.FilterProperty(prefix="")],
                noncurrent_version_expiration=[S3BucketLifecycleConfiguration.NoncurrentVersionExpirationProperty(
                    noncurrent_days=NONCURRENT_DAYS)],
                abort_incomplete_multipart_upload=[
                    S3BucketLifecycleConfiguration.AbortIncompleteMultipartUploadProperty(days_after_initiation=1)])])

    def _tls_only_policy(self, access):
        import json

        from cdktn_aws.s3 import AwsBucketPolicy as S3BucketPolicy

        self.bucket_policy = {
            "Version": "2012-10-17",
            "Statement": [{
                "Sid": "TlsOnly", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
                "Resource": [self.bucket.arn, f"{self.bucket.arn}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }],
        }
        return S3BucketPolicy(self, "policy", bucket=self.bucket.id, policy=json.dumps(self.bucket_policy),
                              depends_on=[access])

    def _upload(self, tags: dict, depends_on: list) -> None:
        """The built pyz as a Terraform asset, uploaded once the bucket is locked down."""
        from cdktn import AssetType, TerraformAsset
        from cdktn_aws.s3 import AwsObject as S3Object

        self.asset = TerraformAsset(self, "pyz", path=str(self.built.path), type=AssetType.FILE)
        self.object = S3Object(self, "object", bucket=self.bucket.id, key=self.key, source=self.asset.path,
                               source_hash=self.sha256, content_type="application/zip",
                               server_side_encryption="AES256", tags=tags, depends_on=depends_on)

    @property
    def object_arn(self) -> str:
        return f"{self.bucket.arn}/{self.key}"

    @property
    def ref(self) -> AgentArtifactRef:
        return AgentArtifactRef(f"s3://{self.bucket.bucket}/{self.key}", self.sha256)

    def read_statement(self) -> dict:
        """The one statement an instance role needs: GetObject on this object only."""
        return {"Sid": "ReadAgentArtifact", "Effect": "Allow", "Action": ["s3:GetObject"], "Resource": self.object_arn}

    def grant_read(self, group) -> None:
        """Let ``group`` (anything with ``add_to_role_policy``) download the artifact, and nothing else."""
        group.add_to_role_policy(self.read_statement())
