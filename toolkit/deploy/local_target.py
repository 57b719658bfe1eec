"""Render a synthesized stack for the local target: the embedded AWS emulator (moto server).

Everything here works on a COPY of the stack's JSON kept in the local target's own working directory,
so nothing of it can reach ``--target aws``:

- ``provider_override``: the AWS provider pointed at the emulator for every service the stack uses
  (``services_used``: derived from resource and data-source types through ``SERVICE_BY_PREFIX``, plus
  ``ALWAYS_ENDPOINTS``), test credentials, the ``skip_*`` flags, a fixed region.
- ``prune_unsupported``: resources the emulator cannot create (``LOCAL_UNSUPPORTED``, found by applying
  every stack against moto) are left out, and so is whatever refers to them (outputs, locals, other
  resources); ``depends_on`` entries naming them are dropped. Each removal is reported with its reason.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

LOCAL_REGION = "us-east-1"
LOCAL_CREDENTIALS = {"access_key": "testing", "secret_key": "testing"}

# Resource types moto cannot create, and why. Found by applying every stack against moto 5.2.
LOCAL_UNSUPPORTED: dict[str, str] = {
    "aws_dlm_lifecycle_policy": "moto has no Data Lifecycle Manager (DLM) API",
    "aws_fis_experiment_template": "moto's FIS keeps templates but resolves no target and interrupts nothing "
                                   "(spotkit interrupt --target local drills the event path instead)",
    "aws_autoscaling_warm_pool": "moto does not implement Auto Scaling warm pools",
    "aws_sqs_queue_redrive_allow_policy": "moto does not keep RedriveAllowPolicy, so the provider waits for it forever",
    "aws_appautoscaling_target": "moto's Application Auto Scaling has no ListTagsForResource (the provider retries the 500)",
    "aws_appautoscaling_policy": "needs aws_appautoscaling_target, which the local target leaves out",
    "aws_eks_addon": "moto's EKS has no add-on API (CreateAddon answers 404)",
    "aws_eks_pod_identity_association": "moto's EKS has no pod identity API (404)",
    "aws_efs_file_system_policy": "moto does not implement EFS DeleteFileSystemPolicy, so destroy fails",
    "aws_efs_backup_policy": "moto does not implement EFS PutBackupPolicy (the provider retries it forever)",
    "aws_s3_bucket_policy": "the emulator serves plain HTTP, and moto enforces bucket policies: a TLS-only policy "
                            "(deny when aws:SecureTransport is false) refuses every request, as AWS would over HTTP",
}

# References to attributes moto leaves empty; a resource using one is left out (regex -> why).
LOCAL_UNSUPPORTED_REFERENCES: dict[str, str] = {
    r"aws_eks_cluster\.[\w-]+\.vpc_config\[0\]\.cluster_security_group_id":
        "moto's EKS creates no cluster security group (cluster_security_group_id is empty)",
}

# Resource/data type prefix -> provider `endpoints` key. Longest prefix wins.
SERVICE_BY_PREFIX: dict[str, str] = {
    "aws_autoscaling_": "autoscaling", "aws_appautoscaling_": "appautoscaling",
    "aws_launch_template": "ec2", "aws_launch_configuration": "autoscaling",
    "aws_vpc": "ec2", "aws_subnet": "ec2", "aws_security_group": "ec2", "aws_route": "ec2",
    "aws_internet_gateway": "ec2", "aws_egress_only_internet_gateway": "ec2", "aws_nat_gateway": "ec2",
    "aws_eip": "ec2", "aws_ebs_": "ec2", "aws_volume_attachment": "ec2", "aws_instance": "ec2",
    "aws_network_": "ec2", "aws_ec2_": "ec2", "aws_key_pair": "ec2", "aws_ami": "ec2", "aws_spot_": "ec2",
    "aws_placement_group": "ec2", "aws_availability_zone": "ec2", "aws_default_": "ec2",
    "aws_flow_log": "ec2", "aws_main_route_table_association": "ec2",
    "aws_iam_": "iam", "aws_caller_identity": "sts", "aws_partition": "sts", "aws_region": "ec2",
    "aws_ssm_": "ssm", "aws_efs_": "efs", "aws_dlm_": "dlm",
    "aws_cloudwatch_event_": "events", "aws_cloudwatch_log_": "logs", "aws_cloudwatch_metric_alarm": "cloudwatch",
    "aws_cloudwatch_dashboard": "cloudwatch", "aws_cloudwatch_composite_alarm": "cloudwatch",
    "aws_sqs_": "sqs", "aws_sns_": "sns", "aws_lambda_": "lambda", "aws_dynamodb_": "dynamodb",
    "aws_fis_": "fis", "aws_ecs_": "ecs", "aws_lb": "elbv2", "aws_alb": "elbv2", "aws_elb": "elb",
    "aws_ecr_": "ecr", "aws_eks_": "eks", "aws_s3_": "s3", "aws_kms_": "kms",
    "aws_secretsmanager_": "secretsmanager", "aws_sagemaker_": "sagemaker",
    "aws_service_discovery_": "servicediscovery", "aws_route53_": "route53", "aws_acm_": "acm",
    "aws_batch_": "batch", "aws_backup_": "backup", "aws_fsx_": "fsx", "aws_scheduler_": "scheduler",
    "aws_pipes_": "pipes", "aws_cloudformation_": "cloudformation", "aws_pricing_": "pricing",
}
# Every stack talks to these, whatever its resources (the provider calls STS and IAM itself).
ALWAYS_ENDPOINTS = ("ec2", "iam", "sts", "s3", "ssm", "autoscaling")
# Endpoint keys the provider (5.100) accepts, for the `aws_<service>_...` fallback.
KNOWN_ENDPOINTS = frozenset(SERVICE_BY_PREFIX.values()) | frozenset(ALWAYS_ENDPOINTS) | frozenset(
    {"apigateway", "athena", "cloudfront", "codebuild", "cognitoidp", "elasticache", "emr", "firehose",
     "glue", "kinesis", "rds", "redshift", "ses", "sfn", "ram", "organizations", "xray"})


@dataclass
class PrunedItem:
    address: str
    reason: str


@dataclass
class LocalRendering:
    doc: dict[str, Any]
    override: dict[str, Any]
    services: list[str]
    removed: list[PrunedItem] = field(default_factory=list)


def service_for_type(tf_type: str) -> str | None:
    best = ""
    for prefix in SERVICE_BY_PREFIX:
        if tf_type.startswith(prefix) and len(prefix) > len(best):
            best = prefix
    if best:
        return SERVICE_BY_PREFIX[best]
    parts = tf_type.split("_")
    if len(parts) > 1 and parts[1] in KNOWN_ENDPOINTS:
        return parts[1]
    return None


def services_used(doc: dict[str, Any]) -> list[str]:
    found = set(ALWAYS_ENDPOINTS)
    for block in ("resource", "data"):
        for tf_type in (doc.get(block) or {}):
            svc = service_for_type(tf_type)
            if svc:
                found.add(svc)
    return sorted(found)


def provider_override(endpoint_url: str, services: list[str], region: str = LOCAL_REGION) -> dict[str, Any]:
    """The ``spotkit_local_override.tf.json`` content: merged by Terraform over the stack's provider."""
    return {"provider": {"aws": [{
        "region": region,
        **LOCAL_CREDENTIALS,
        "skip_credentials_validation": True,
        "skip_metadata_api_check": True,
        "skip_requesting_account_id": False,  # the provider compares rule owners with it (ingress rules)
        "skip_region_validation": True,
        "s3_use_path_style": True,
        # A call moto does not implement answers 500, which the provider retries for a long time.
        "max_retries": 2,
        "endpoints": [{svc: endpoint_url for svc in services}],
    }]}}


def _refs(value: Any) -> str:
    import json

    return json.dumps(value)


def _address_patterns(gone: dict[str, str]) -> list[re.Pattern]:
    """One pattern per address of ``gone``, in its order: the address as a whole word (``x.a`` not in ``x.ab``)."""
    return [re.compile(re.escape(addr) + r"\b") for addr in gone]


def _unsupported(resources: dict[str, Any], unsupported: dict[str, str]) -> dict[str, str]:
    """Address -> reason of the resources the emulator cannot create: by type, then by a reference to an
    attribute it leaves empty."""
    gone: dict[str, str] = {}
    for tf_type, items in list(resources.items()):
        if tf_type in unsupported:
            for name in list(items):
                gone[f"{tf_type}.{name}"] = unsupported[tf_type]
    for tf_type, items in resources.items():
        for name, body in items.items():
            text = _refs(body)
            for pattern, reason in LOCAL_UNSUPPORTED_REFERENCES.items():
                if f"{tf_type}.{name}" not in gone and re.search(pattern, text):
                    gone[f"{tf_type}.{name}"] = reason
    return gone


def _add_referrers(doc: dict[str, Any], resources: dict[str, Any], gone: dict[str, str]) -> None:
    """Add to ``gone`` anything whose expressions refer to a removed resource (or removed local), transitively."""
    changed = bool(gone)
    while changed:
        changed = False
        patterns = _address_patterns(gone)

        def refers(value: Any) -> str | None:
            value = copy.deepcopy(value)
            if isinstance(value, dict):
                value.pop("depends_on", None)
            text = _refs(value)
            for addr, pat in zip(gone, patterns):
                if pat.search(text):
                    return addr
            return None

        for tf_type, items in resources.items():
            for name, body in items.items():
                addr = f"{tf_type}.{name}"
                if addr in gone:
                    continue
                hit = refers(body)
                if hit:
                    gone[addr] = f"refers to {hit}, which is left out"
                    changed = True
        for name, value in (doc.get("locals") or {}).items():
            addr = f"local.{name}"
            if addr not in gone:
                hit = refers(value)
                if hit:
                    gone[addr] = f"refers to {hit}, which is left out"
                    changed = True


def _remove(doc: dict[str, Any], resources: dict[str, Any], gone: dict[str, str]) -> list[PrunedItem]:
    """Take the resources and locals of ``gone`` out of ``doc``; what was removed, in ``gone``'s order."""
    removed: list[PrunedItem] = []
    for addr, reason in gone.items():
        if addr.startswith("local."):
            doc["locals"].pop(addr[len("local."):], None)
        else:
            tf_type, name = addr.split(".", 1)
            resources[tf_type].pop(name, None)
            if not resources[tf_type]:
                resources.pop(tf_type)
        removed.append(PrunedItem(addr, reason))
    return removed


def _remove_mentions(doc: dict[str, Any], gone: dict[str, str], removed: list[PrunedItem]) -> None:
    """Outputs that refer to what is gone go too (added to ``removed``); ``depends_on`` entries naming it
    are dropped; an emptied ``output`` or ``locals`` block goes."""
    patterns = _address_patterns(gone)
    for name, value in list((doc.get("output") or {}).items()):
        text = _refs(value)
        hit = next((a for a, p in zip(gone, patterns) if p.search(text)), None)
        if hit:
            doc["output"].pop(name)
            removed.append(PrunedItem(f"output.{name}", f"refers to {hit}, which is left out"))
    for block in ("resource", "data"):
        for items in (doc.get(block) or {}).values():
            for body in items.values():
                deps = body.get("depends_on")
                if deps:
                    kept = [d for d in deps if not any(p.fullmatch(d) or d == a for a, p in zip(gone, patterns))]
                    if kept:
                        body["depends_on"] = kept
                    else:
                        body.pop("depends_on")
    if doc.get("output") == {}:
        doc.pop("output")
    if doc.get("locals") == {}:
        doc.pop("locals")


def prune_unsupported(doc: dict[str, Any], unsupported: dict[str, str] | None = None) -> tuple[dict[str, Any], list[PrunedItem]]:
    """Return (a pruned copy of ``doc``, what was removed and why)."""
    unsupported = LOCAL_UNSUPPORTED if unsupported is None else unsupported
    doc = copy.deepcopy(doc)
    resources = doc.get("resource") or {}
    gone = _unsupported(resources, unsupported)  # address -> reason
    _add_referrers(doc, resources, gone)
    removed = _remove(doc, resources, gone)
    if gone:
        _remove_mentions(doc, gone, removed)
    return doc, removed


def render(doc: dict[str, Any], endpoint_url: str, unsupported: dict[str, str] | None = None) -> LocalRendering:
    pruned, removed = prune_unsupported(doc, unsupported)
    services = services_used(pruned)
    return LocalRendering(doc=pruned, override=provider_override(endpoint_url, services), services=services,
                          removed=removed)
