"""Checks on GPU pool, storage and Job settings, and on Job manifests (rendered or hand-written).

Every problem raises ``spotkit.errors.ValidationError`` whose message names the setting and the fix.
``check_job_manifest`` works on parsed YAML, so it also checks a Job the user wrote themselves.
"""

from __future__ import annotations

import posixpath
import re
from typing import Iterable, Optional

from spotkit.errors import ValidationError
from spotkit.k8s.manifests import (
    GRACE_MARGIN_SECONDS,
    KARPENTER_CAPACITY_TYPE,
    LIFECYCLE_LABEL,
    MAX_GRACE_SECONDS,
    SPOT_NOTICE_SECONDS,
    SPOT_TAINT,
    CheckpointStorageSpec,
    NodePoolSpec,
    Taint,
    TrainingJobSpec,
)

CAPACITY_TYPES = ("spot", "on-demand")
CONSOLIDATION_POLICIES = ("WhenEmpty", "WhenEmptyOrUnderutilized")
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
JOB_TARGETS = ("spot", "any")
_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def duration_seconds(text: str) -> Optional[int]:
    """``"2m"`` -> 120, ``"1h30m"`` -> 5400; None when it is not a Go-style duration of h/m/s."""
    match = _DURATION.match(text or "")
    if not text or not match:
        return None
    h, m, s = (int(g or 0) for g in match.groups())
    return h * 3600 + m * 60 + s


def grace_period_message(where: str, seconds: int) -> str:
    return (
        f"{where} is {seconds} s, longer than the spot notice allows: AWS reclaims a spot node "
        f"{SPOT_NOTICE_SECONDS} s after the notice and spotkit keeps {GRACE_MARGIN_SECONDS} s for the drain "
        f"to start and the last write to land; use {MAX_GRACE_SECONDS} or less"
    )


def missing_toleration_message(job_name: str, taint: Taint) -> str:
    return (
        f"Job {job_name!r} targets spot nodes ({LIFECYCLE_LABEL}=spot) but has no toleration for the spot "
        f"taint {taint}: add the toleration {{key: {taint.key}, operator: Equal, value: \"{taint.value}\", "
        f"effect: {taint.effect}}} or stop targeting spot"
    )


def check_taint(where: str, taint: Taint) -> None:
    if taint.effect not in TAINT_EFFECTS:
        raise ValidationError(f"{where}: taint effect {taint.effect!r} is not a Kubernetes effect: use one of "
                              f"{', '.join(TAINT_EFFECTS)}")
    if not taint.key:
        raise ValidationError(f"{where}: a taint needs a key")


def check_node_pool(pool: NodePoolSpec) -> None:
    where = f"node pool {pool.name!r}"
    if pool.capacity_type not in CAPACITY_TYPES:
        raise ValidationError(f"{where}: capacity_type {pool.capacity_type!r} is not a Karpenter capacity type: "
                              f"use spot or on-demand")
    if not pool.instance_families and not pool.gpu_names:
        raise ValidationError(f"{where}: give instance_families (e.g. g5, g6, g6e) or gpu_names (e.g. a10g, l4), "
                              "or the pool may launch any instance, GPU or not")
    if pool.capacity_type == "spot" and len(set(pool.instance_families) | set(pool.gpu_names)) < 2:
        raise ValidationError(
            f"{where}: a spot pool needs at least 2 instance families or GPU names (got "
            f"{', '.join(pool.instance_families + pool.gpu_names)}): losing one spot pool would take all its capacity"
        )
    if pool.consolidation_policy not in CONSOLIDATION_POLICIES:
        raise ValidationError(f"{where}: consolidation_policy {pool.consolidation_policy!r}: use "
                              f"{' or '.join(CONSOLIDATION_POLICIES)}")
    if duration_seconds(pool.termination_grace_period) is None:
        raise ValidationError(f"{where}: termination_grace_period {pool.termination_grace_period!r} is not a duration "
                              "such as 2m, 90s or 1h")
    if pool.gpu_limit < 1:
        raise ValidationError(f"{where}: gpu_limit must be 1 or more (got {pool.gpu_limit})")
    for taint in pool.taints:
        check_taint(where, taint)
    if pool.capacity_type == "spot" and SPOT_TAINT not in pool.taints:
        raise ValidationError(f"{where}: a spot pool must carry the spot taint {SPOT_TAINT} so only pods that "
                              "tolerate interruption land on it")


def check_job_fits_pool(job: TrainingJobSpec, pool: NodePoolSpec) -> None:
    """Karpenter force-terminates a draining node after the pool's termination grace period: the pod's
    own grace period (its checkpoint) must fit inside it."""
    limit = duration_seconds(pool.termination_grace_period)
    if limit is not None and job.termination_grace_period_seconds > limit:
        raise ValidationError(
            f"job.termination_grace_period_seconds ({job.termination_grace_period_seconds}) is longer than node pool "
            f"{pool.name!r} termination_grace_period ({pool.termination_grace_period}): the node would be "
            "terminated before the checkpoint finishes; raise the pool's termination_grace_period or lower the job's"
        )


def check_storage(storage: CheckpointStorageSpec) -> None:
    if not storage.file_system_id:
        raise ValidationError("storage.file_system_id is empty: give the EFS file system id "
                              "(terraform output efs_file_system_id) or let the stack create one")


def check_job(job: TrainingJobSpec) -> None:
    if job.target not in JOB_TARGETS:
        raise ValidationError(f"job.target {job.target!r}: use spot (prefer spot nodes) or any")
    if job.termination_grace_period_seconds < 0:
        raise ValidationError(f"job.termination_grace_period_seconds must be 0 or more (got "
                              f"{job.termination_grace_period_seconds})")
    if job.termination_grace_period_seconds > MAX_GRACE_SECONDS:
        raise ValidationError(grace_period_message("job.termination_grace_period_seconds",
                                                   job.termination_grace_period_seconds))
    if not _is_under(job.checkpoint_dir, job.mount_path):
        raise ValidationError(
            f"job.checkpoint_dir {job.checkpoint_dir!r} is not under job.mount_path {job.mount_path!r}, where the "
            "checkpoint claim is mounted: checkpoints written there would die with the node; put checkpoint_dir "
            "under mount_path"
        )
    if job.target == "spot" and not job.tolerate_spot:
        raise ValidationError(missing_toleration_message(job.name, SPOT_TAINT))
    if job.gpus < 1:
        raise ValidationError(f"job.gpus must be 1 or more (got {job.gpus})")


def _is_under(path: str, root: str) -> bool:
    path, root = posixpath.normpath(path), posixpath.normpath(root)
    return path == root or path.startswith(root.rstrip("/") + "/")


# --- manifests (parsed YAML) -------------------------------------------------------------------


def _pod_spec(job: dict) -> dict:
    return ((job.get("spec") or {}).get("template") or {}).get("spec") or {}


def targets_spot(job: dict) -> bool:
    """Does the Job ask for spot nodes (node selector, required or preferred affinity)?"""
    pod = _pod_spec(job)
    selector = pod.get("nodeSelector") or {}
    if selector.get(LIFECYCLE_LABEL) == "spot" or selector.get(KARPENTER_CAPACITY_TYPE) == "spot":
        return True
    affinity = ((pod.get("affinity") or {}).get("nodeAffinity")) or {}
    terms = list(((affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {})
                  .get("nodeSelectorTerms")) or [])
    terms += [p.get("preference") or {} for p in affinity.get("preferredDuringSchedulingIgnoredDuringExecution") or []]
    for term in terms:
        for expr in term.get("matchExpressions") or []:
            if (expr.get("key") in (LIFECYCLE_LABEL, KARPENTER_CAPACITY_TYPE) and expr.get("operator") == "In"
                    and "spot" in (expr.get("values") or [])):
                return True
    return False


def tolerates(tolerations: Iterable[dict], taint: Taint) -> bool:
    for tol in tolerations:
        if tol.get("effect") not in (None, "", taint.effect):
            continue
        op = tol.get("operator", "Equal")
        if op == "Exists" and tol.get("key") in (None, "", taint.key):
            return True
        if op == "Equal" and tol.get("key") == taint.key and str(tol.get("value", "")) == taint.value:
            return True
    return False


def check_job_manifest(job: dict, spot_taint: Taint = SPOT_TAINT) -> None:
    """A Job that targets spot must tolerate the spot taint, and its grace period must fit the notice."""
    name = (job.get("metadata") or {}).get("name", "?")
    pod = _pod_spec(job)
    if targets_spot(job) and not tolerates(pod.get("tolerations") or [], spot_taint):
        raise ValidationError(missing_toleration_message(name, spot_taint))
    grace = pod.get("terminationGracePeriodSeconds", 30)
    if grace > MAX_GRACE_SECONDS:
        raise ValidationError(grace_period_message(f"Job {name!r}: terminationGracePeriodSeconds", grace))


def check_files(paths: Iterable[str]) -> list[str]:
    """Check every Job in the YAML files (multi-document allowed); return ``kind/name`` of what was checked.

    Raises ``ValidationError`` (prefixed with the file) on the first Job that breaks a rule, and
    ``ToolkitError`` for a missing or unparsable file.
    """
    from pathlib import Path

    import yaml

    from spotkit.errors import ToolkitError

    checked: list[str] = []
    for path in paths:
        p = Path(path)
        try:
            docs = [d for d in yaml.safe_load_all(p.read_text(encoding="utf-8")) if d]
        except FileNotFoundError:
            raise ToolkitError(f"{p} does not exist", hint="pass the YAML files of your Jobs") from None
        except yaml.YAMLError as exc:
            raise ToolkitError(f"{p} is not valid YAML: {exc}") from exc
        for doc in docs:
            if not isinstance(doc, dict) or doc.get("kind") != "Job":
                continue
            try:
                check_job_manifest(doc)
            except ValidationError as exc:
                raise ValidationError(f"{p}: {exc.message}") from None
            checked.append(f"Job/{(doc.get('metadata') or {}).get('name', '?')}")
    return checked
