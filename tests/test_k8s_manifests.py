"""Rendered Kubernetes manifests of the eks_gpu stack, parsed back from YAML, and their validation."""

from __future__ import annotations

import dataclasses
import posixpath
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from spotkit.constructs.eks_settings import NodeGroupSettings, validate_node_group
from spotkit.stacks.eks_gpu_config import EksGpuConfig, KarpenterSettings, build_manifests, validate_config
from spotkit.errors import ToolkitError, ValidationError
from spotkit.k8s import manifests as m
from spotkit.k8s.render import render
from spotkit.k8s.validate import check_job_manifest, check_node_pool


def load_dir(outdir: Path) -> dict[str, dict]:
    """Parse every rendered file back: kind/name -> object."""
    docs = {}
    for path in sorted(outdir.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        docs[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return docs


@pytest.fixture(scope="module")
def karpenter_render(tmp_path_factory):
    # GIVEN the stack in Karpenter mode WHEN its manifests are rendered with the EFS ids
    out = tmp_path_factory.mktemp("k8s")
    result = render("eks_gpu", out, {"eks_gpu": {"node_provisioning": "karpenter"}},
                    file_system_id="fs-0123", access_point_id="fsap-0456")
    return result, load_dir(out)


def _pod(docs):
    return docs["Job/train-example"]["spec"]["template"]["spec"]


def test_render_writes_one_file_per_object_in_apply_order(karpenter_render):
    result, docs = karpenter_render
    # THEN storage comes first, the Job last, and every file parses back to the same kinds
    assert [Path(f).name for f in result.files] == [
        "00-storageclass-efs-checkpoints.yaml", "01-persistentvolume-spotkit-checkpoints.yaml",
        "02-pvc-checkpoints.yaml", "03-daemonset-nvidia-device-plugin.yaml", "04-ec2nodeclass-gpu.yaml",
        "05-nodepool-gpu-spot.yaml", "06-nodepool-gpu-on-demand.yaml", "07-job-train-example.yaml",
    ]
    assert sorted(docs) == sorted(f"{k}/{n}" for k, n in [
        ("StorageClass", "efs-checkpoints"), ("PersistentVolume", "spotkit-checkpoints"),
        ("PersistentVolumeClaim", "checkpoints"), ("DaemonSet", "nvidia-device-plugin"), ("EC2NodeClass", "gpu"),
        ("NodePool", "gpu-spot"), ("NodePool", "gpu-on-demand"), ("Job", "train-example")])
    assert result.notes == ["install the Karpenter chart first (see docs/eks.md, 'Training on EKS'): NodePools need its CRDs"]


def test_spot_nodepool_values(karpenter_render):
    _, docs = karpenter_render
    pool = docs["NodePool/gpu-spot"]["spec"]
    reqs = {r["key"]: r["values"] for r in pool["template"]["spec"]["requirements"]}
    # THEN spot capacity, GPU families only, the spot taint, and a safe disruption policy
    assert reqs["karpenter.sh/capacity-type"] == ["spot"]
    assert reqs["karpenter.k8s.aws/instance-family"] == ["g5", "g6", "g6e"]
    assert pool["template"]["spec"]["taints"] == [{"key": "spot", "value": "true", "effect": "NoSchedule"}]
    assert pool["template"]["metadata"]["labels"] == {"spotkit.io/lifecycle": "spot", "spotkit.io/node-role": "gpu"}
    assert pool["disruption"] == {"consolidationPolicy": "WhenEmpty", "consolidateAfter": "5m",
                                  "budgets": [{"nodes": "10%"}]}
    assert pool["template"]["spec"]["terminationGracePeriod"] == "2m"
    assert pool["template"]["spec"]["nodeClassRef"] == {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "gpu"}
    assert pool["limits"] == {"nvidia.com/gpu": "16"}
    assert pool["weight"] > docs["NodePool/gpu-on-demand"]["spec"]["weight"]


def test_on_demand_nodepool_is_the_floor(karpenter_render):
    _, docs = karpenter_render
    pool = docs["NodePool/gpu-on-demand"]["spec"]
    reqs = {r["key"]: r["values"] for r in pool["template"]["spec"]["requirements"]}
    assert reqs["karpenter.sh/capacity-type"] == ["on-demand"]
    assert pool["template"]["metadata"]["labels"]["spotkit.io/lifecycle"] == "on-demand"
    assert pool["template"]["spec"]["taints"] == [{"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}]


def test_node_class_finds_subnets_by_discovery_tag_and_requires_imdsv2(karpenter_render):
    _, docs = karpenter_render
    spec = docs["EC2NodeClass/gpu"]["spec"]
    assert spec["role"] == "spotkit-eks-karpenter-node"
    assert spec["subnetSelectorTerms"] == [{"tags": {"karpenter.sh/discovery": "spotkit-eks"}}]
    assert spec["securityGroupSelectorTerms"] == [{"tags": {"karpenter.sh/discovery": "spotkit-eks"}}]
    assert spec["metadataOptions"]["httpTokens"] == "required"
    # AND pods cannot reach the node role's credentials: the IMDSv2 token does not survive a pod's extra hop
    assert spec["metadataOptions"]["httpPutResponseHopLimit"] == 1


def test_job_tolerates_every_taint_of_the_gpu_pools(karpenter_render):
    _, docs = karpenter_render
    tolerations = _pod(docs)["tolerations"]
    # THEN each GPU pool's taint is matched by an Equal toleration, and CriticalAddonsOnly is not tolerated
    for pool in ("NodePool/gpu-spot", "NodePool/gpu-on-demand"):
        for taint in docs[pool]["spec"]["template"]["spec"]["taints"]:
            assert {"operator": "Equal", **taint} in tolerations
    assert all(t.get("key") != "CriticalAddonsOnly" for t in tolerations)


def test_job_prefers_spot_and_avoids_system_nodes(karpenter_render):
    _, docs = karpenter_render
    affinity = _pod(docs)["affinity"]["nodeAffinity"]
    assert affinity["preferredDuringSchedulingIgnoredDuringExecution"] == [{"weight": 100, "preference": {
        "matchExpressions": [{"key": "spotkit.io/lifecycle", "operator": "In", "values": ["spot"]}]}}]
    assert affinity["requiredDuringSchedulingIgnoredDuringExecution"] == {"nodeSelectorTerms": [{"matchExpressions": [
        {"key": "spotkit.io/node-role", "operator": "NotIn", "values": ["system"]}]}]}


def test_grace_period_and_prestop_fit_the_notice(karpenter_render):
    _, docs = karpenter_render
    pod = _pod(docs)
    container = pod["containers"][0]
    assert pod["terminationGracePeriodSeconds"] == 90
    assert pod["terminationGracePeriodSeconds"] <= m.SPOT_NOTICE_SECONDS - m.GRACE_MARGIN_SECONDS
    hook = container["lifecycle"]["preStop"]["exec"]["command"]
    assert hook[:2] == ["/bin/sh", "-c"]
    assert hook[2] == m.TrainingJobSpec().checkpoint_command
    # the hook waits at most 80 s, less than the grace period
    assert "$(seq 1 80)" in hook[2]
    assert docs["Job/train-example"]["spec"]["podFailurePolicy"]["rules"] == [
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]


def test_checkpoint_dir_is_on_the_claim(karpenter_render):
    _, docs = karpenter_render
    pod = _pod(docs)
    container = pod["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    mount = container["volumeMounts"][0]
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    # THEN the directory the hook and the trainer write lies under the mount of the checkpoint claim
    assert env["CHECKPOINT_DIR"] == "/checkpoints/train-example"
    assert posixpath.commonpath([env["CHECKPOINT_DIR"], mount["mountPath"]]) == mount["mountPath"] == "/checkpoints"
    assert '"$CHECKPOINT_DIR/.saved"' in container["lifecycle"]["preStop"]["exec"]["command"][2]
    assert volume["persistentVolumeClaim"]["claimName"] == "checkpoints"
    claim = docs["PersistentVolumeClaim/checkpoints"]["spec"]
    assert claim["volumeName"] == "spotkit-checkpoints"
    assert claim["storageClassName"] == "efs-checkpoints"
    assert claim["accessModes"] == ["ReadWriteMany"]


def test_volume_is_the_efs_access_point_with_tls_and_iam(karpenter_render):
    _, docs = karpenter_render
    pv = docs["PersistentVolume/spotkit-checkpoints"]["spec"]
    assert pv["csi"] == {"driver": "efs.csi.aws.com", "volumeHandle": "fs-0123::fsap-0456"}
    assert pv["mountOptions"] == ["tls", "iam"]
    assert pv["persistentVolumeReclaimPolicy"] == "Retain"
    sc = docs["StorageClass/efs-checkpoints"]
    assert (sc["provisioner"], sc["reclaimPolicy"]) == ("efs.csi.aws.com", "Retain")


def test_resume_script_picks_the_newest_checkpoint(karpenter_render, tmp_path):
    # GIVEN the rendered entrypoint and a checkpoint directory with two checkpoints, a marker and a partial write
    import os
    import subprocess

    script = _pod(karpenter_render[1])["containers"][0]["command"][2]
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    for i, name in enumerate(["step-100", "step-200", "step-300.tmp", ".saved"]):
        (ckpt / name).write_text("x")
        os.utime(ckpt / name, (1_000_000 + i, 1_000_000 + i))
    # WHEN it runs with a trainer that only prints what it was given
    script = script.replace("exec python /workspace/train.py", "exec echo train")
    out = subprocess.run(["/bin/sh", "-c", script], env={"CHECKPOINT_DIR": str(ckpt), "PATH": os.environ["PATH"]},
                         capture_output=True, text=True, timeout=30)
    # THEN it resumes from step-200 (newest complete), skipping the marker and the .tmp
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == f"train --checkpoint-dir {ckpt} --resume {ckpt}/step-200"


def test_managed_mode_has_no_nodepools_and_auto_mode_uses_nodeclass():
    managed = build_manifests(EksGpuConfig())
    assert [d["kind"] for d in managed.values()] == [
        "StorageClass", "PersistentVolume", "PersistentVolumeClaim", "DaemonSet", "Job"]
    auto = build_manifests(EksGpuConfig(node_provisioning="auto_mode"))
    kinds = [d["kind"] for d in auto.values()]
    assert "DaemonSet" not in kinds  # Auto Mode ships the NVIDIA device plugin
    pool = auto["nodepool-gpu-spot"]["spec"]["template"]["spec"]
    assert pool["nodeClassRef"] == {"group": "eks.amazonaws.com", "kind": "NodeClass", "name": "gpu"}
    assert {"key": "eks.amazonaws.com/instance-family", "operator": "In", "values": ["g5", "g6", "g6e"]} in pool["requirements"]
    assert auto["nodeclass-gpu"]["spec"]["role"] == "spotkit-eks-auto-node"


def test_placeholder_ids_are_reported(tmp_path):
    result = render("eks_gpu", tmp_path, {})
    pv = yaml.safe_load((tmp_path / "01-persistentvolume-spotkit-checkpoints.yaml").read_text())
    assert pv["spec"]["csi"]["volumeHandle"] == "fs-REPLACE-ME::fsap-REPLACE-ME"
    assert result.notes == ["the PersistentVolume has placeholder EFS ids: pass --file-system-id and --access-point-id "
                            "(terraform output efs_file_system_id / efs_access_point_id) after apply"]


def test_bring_your_own_file_system_without_access_point_mounts_root():
    docs = build_manifests(EksGpuConfig(checkpoints=dataclasses.replace(EksGpuConfig().checkpoints,
                                                                        file_system_id="fs-byo")))
    pv = docs["persistentvolume-spotkit-checkpoints"]["spec"]
    assert pv["csi"]["volumeHandle"] == "fs-byo"
    assert pv["mountOptions"] == ["tls"]


# --- validation, exact messages ------------------------------------------------------------------


def test_grace_period_longer_than_the_notice_is_refused():
    config = EksGpuConfig(job=dataclasses.replace(m.TrainingJobSpec(), termination_grace_period_seconds=100))
    with pytest.raises(ValidationError) as err:
        validate_config(config)
    assert str(err.value) == (
        "job.termination_grace_period_seconds is 100 s, longer than the spot notice allows: AWS reclaims a spot "
        "node 120 s after the notice and spotkit keeps 30 s for the drain to start and the last write to land; "
        "use 90 or less")


def test_hand_written_job_with_long_grace_period_is_refused():
    job = m.training_job(m.TrainingJobSpec(), m.CheckpointStorageSpec())
    job["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 300
    with pytest.raises(ValidationError) as err:
        check_job_manifest(job)
    assert str(err.value) == (
        "Job 'train-example': terminationGracePeriodSeconds is 300 s, longer than the spot notice allows: AWS "
        "reclaims a spot node 120 s after the notice and spotkit keeps 30 s for the drain to start and the last "
        "write to land; use 90 or less")


def test_spot_gpu_group_with_one_instance_type_is_refused():
    with pytest.raises(ValidationError) as err:
        validate_node_group(NodeGroupSettings(name="gpu-spot", instance_types=("g5.xlarge",)))
    assert str(err.value) == (
        "node group 'gpu-spot': a spot GPU group needs at least 2 instance types (got 1: g5.xlarge); losing that "
        "one spot pool would take every node: list 3 or more GPU types (e.g. g5.xlarge, g6.xlarge, g6e.xlarge)")


def test_job_targeting_spot_without_the_toleration_is_refused():
    # GIVEN a Job that prefers spot nodes WHEN its spot toleration is removed
    job = m.training_job(m.TrainingJobSpec(), m.CheckpointStorageSpec())
    job["spec"]["template"]["spec"]["tolerations"] = [m.GPU_TAINT.toleration()]
    with pytest.raises(ValidationError) as err:
        check_job_manifest(job)
    # THEN the exact message names the taint and the toleration to add
    assert str(err.value) == (
        "Job 'train-example' targets spot nodes (spotkit.io/lifecycle=spot) but has no toleration for the spot "
        "taint spot=true:NoSchedule: add the toleration {key: spot, operator: Equal, value: \"true\", effect: "
        "NoSchedule} or stop targeting spot")


def test_job_config_without_spot_toleration_is_refused_before_rendering():
    config = EksGpuConfig(job=dataclasses.replace(m.TrainingJobSpec(), tolerate_spot=False))
    with pytest.raises(ValidationError, match=r"^Job 'train-example' targets spot nodes"):
        build_manifests(config)


def test_job_not_targeting_spot_needs_no_toleration_and_exists_toleration_counts():
    job = m.training_job(dataclasses.replace(m.TrainingJobSpec(), target="any", tolerate_spot=False),
                         m.CheckpointStorageSpec())
    check_job_manifest(job)  # no spot preference: nothing to tolerate
    job = m.training_job(m.TrainingJobSpec(), m.CheckpointStorageSpec())
    job["spec"]["template"]["spec"]["tolerations"] = [{"key": "spot", "operator": "Exists"}]
    check_job_manifest(job)


def test_required_capacity_type_spot_counts_as_targeting_spot():
    job = m.training_job(dataclasses.replace(m.TrainingJobSpec(), target="any", tolerate_spot=False),
                         m.CheckpointStorageSpec())
    job["spec"]["template"]["spec"]["nodeSelector"] = {"karpenter.sh/capacity-type": "spot"}
    with pytest.raises(ValidationError, match=r"^Job 'train-example' targets spot nodes"):
        check_job_manifest(job)


def test_checkpoint_dir_outside_the_claim_is_refused():
    config = EksGpuConfig(job=dataclasses.replace(m.TrainingJobSpec(), checkpoint_dir="/tmp/ckpt"))
    with pytest.raises(ValidationError) as err:
        validate_config(config)
    assert str(err.value) == (
        "job.checkpoint_dir '/tmp/ckpt' is not under job.mount_path '/checkpoints', where the checkpoint claim is "
        "mounted: checkpoints written there would die with the node; put checkpoint_dir under mount_path")


def test_spot_nodepool_with_one_family_or_without_spot_taint_is_refused():
    with pytest.raises(ValidationError) as err:
        check_node_pool(m.NodePoolSpec(instance_families=("g5",)))
    assert str(err.value) == ("node pool 'gpu-spot': a spot pool needs at least 2 instance families or GPU names "
                              "(got g5): losing one spot pool would take all its capacity")
    with pytest.raises(ValidationError) as err:
        check_node_pool(m.NodePoolSpec(taints=()))
    assert str(err.value) == ("node pool 'gpu-spot': a spot pool must carry the spot taint spot=true:NoSchedule so "
                              "only pods that tolerate interruption land on it")


def test_karpenter_without_spot_pool_is_refused():
    config = EksGpuConfig(node_provisioning="karpenter",
                          karpenter=KarpenterSettings(pools=(KarpenterSettings().pools[1],)))
    with pytest.raises(ValidationError) as err:
        validate_config(config)
    assert str(err.value) == "karpenter.pools has no spot pool: add one with capacity_type=spot"


# --- CLI --------------------------------------------------------------------------------------------


def test_cli_render_writes_files_and_unknown_stack_fails(tmp_path):
    from spotkit.cli.main import cli

    runner = CliRunner()
    # WHEN rendered through the CLI with JSON output
    res = runner.invoke(cli, ["--output", "json", "k8s", "render", "eks_gpu", "--out", str(tmp_path),
                              "--file-system-id", "fs-1", "--access-point-id", "fsap-2"])
    assert res.exit_code == 0, res.output
    assert '"stack": "eks_gpu"' in res.output
    pv = yaml.safe_load((tmp_path / "01-persistentvolume-spotkit-checkpoints.yaml").read_text())
    assert pv["spec"]["csi"]["volumeHandle"] == "fs-1::fsap-2"
    # AND a stack without manifests is a user error with a next step
    with pytest.raises(ToolkitError) as err:
        render("training", tmp_path / "x")
    assert (err.value.message, err.value.hint) == ("stack 'training' has no Kubernetes manifests",
                                                   "stacks with manifests: eks_gpu")


def test_cli_render_config_error_names_the_key(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("eks_gpu:\n  job:\n    termination_grace_period_seconds: 150\n")
    with pytest.raises(ValidationError, match=r"^job.termination_grace_period_seconds is 150 s"):
        from spotkit.config import read_config_file

        render("eks_gpu", tmp_path / "out", read_config_file(config))


def test_job_grace_period_must_fit_the_pool_termination_grace_period():
    pools = (dataclasses.replace(m.NodePoolSpec(), termination_grace_period="1m"),)
    config = EksGpuConfig(node_provisioning="karpenter", karpenter=KarpenterSettings(pools=pools))
    with pytest.raises(ValidationError) as err:
        validate_config(config)
    assert str(err.value) == (
        "job.termination_grace_period_seconds (90) is longer than node pool 'gpu-spot' termination_grace_period "
        "(1m): the node would be terminated before the checkpoint finishes; raise the pool's "
        "termination_grace_period or lower the job's")
    with pytest.raises(ValidationError) as err:
        check_node_pool(dataclasses.replace(m.NodePoolSpec(), termination_grace_period="two minutes"))
    assert str(err.value) == ("node pool 'gpu-spot': termination_grace_period 'two minutes' is not a duration such "
                              "as 2m, 90s or 1h")


def test_cli_check_hand_written_jobs(tmp_path, capsys):
    from spotkit.cli.main import main

    # GIVEN a rendered Job (valid) and a copy without the spot toleration, in one multi-document file
    good = m.training_job(m.TrainingJobSpec(), m.CheckpointStorageSpec())
    bad = m.training_job(dataclasses.replace(m.TrainingJobSpec(), name="no-toleration"), m.CheckpointStorageSpec())
    bad["spec"]["template"]["spec"]["tolerations"] = []
    ok_file, bad_file = tmp_path / "ok.yaml", tmp_path / "bad.yaml"
    ok_file.write_text(yaml.safe_dump_all([{"kind": "ConfigMap", "metadata": {"name": "x"}}, good]))
    bad_file.write_text(yaml.safe_dump_all([good, bad]))

    def run(args):
        with pytest.raises(SystemExit) as exit_:
            main(args)
        out = capsys.readouterr()
        return exit_.value.code, out.out, out.err

    # WHEN checked through the CLI entry point
    code, out, _ = run(["k8s", "check", str(ok_file)])
    assert (code, out.strip()) == (0, "ok: 1 Job(s) checked (Job/train-example)")
    code, _, err = run(["k8s", "check", str(bad_file)])
    # THEN the bad Job fails with exit 1, the file name and the exact message, no traceback
    assert code == 1
    assert err.splitlines()[0] == (
        f"Error: {bad_file}: Job 'no-toleration' targets spot nodes (spotkit.io/lifecycle=spot) but has no "
        "toleration for the spot taint spot=true:NoSchedule: add the toleration {key: spot, operator: Equal, "
        "value: \"true\", effect: NoSchedule} or stop targeting spot")
    assert "Traceback" not in err


def test_job_and_claim_must_share_a_namespace():
    config = EksGpuConfig(job=dataclasses.replace(m.TrainingJobSpec(), namespace="ml"))
    with pytest.raises(ValidationError) as err:
        validate_config(config)
    assert str(err.value) == ("job.namespace 'ml' differs from checkpoints.namespace 'default': a pod can only mount "
                              "a claim in its own namespace; set both to the same")
    both = EksGpuConfig(job=dataclasses.replace(m.TrainingJobSpec(), namespace="ml"),
                        checkpoints=dataclasses.replace(EksGpuConfig().checkpoints, namespace="ml"))
    docs = build_manifests(both)
    assert (docs["job-train-example"]["metadata"]["namespace"], docs["pvc-checkpoints"]["metadata"]["namespace"]) == (
        "ml", "ml")
