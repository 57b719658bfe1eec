"""Apply/destroy under faults: Terraform survives spotkit's death, signals are passed on once, a Terraform
still running is detected, and the failures a killed apply leaves behind are explained with their fix.

The process tests run real Terraform (a ``terraform_data`` resource whose local-exec provisioner waits for
a file the test creates, so nothing depends on timing) through spotkit's runner in a child process.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spotkit.deploy.explain import already_existing, explain, stale_lock
from spotkit.deploy.runner import (PID_FILE, RUN_DIR, SignalRelay, TerraformStillRunning, ensure_not_running,
                                   running_terraform)
from spotkit.processes import pid_alive

TREE = Path(__file__).resolve().parents[1]
TERRAFORM = shutil.which("terraform") or shutil.which("tofu")

EFS_EXISTS = """
Error: creating EFS File System (spotkit-data): operation error EFS: CreateFileSystem, https response error StatusCode: 409, RequestID: 5b6f, FileSystemAlreadyExists: File system 'fs-0a1b2c3d' already exists with creation token 'spotkit-data'

  with aws_efs_file_system.storage_efs_1A2B3C,
  on cdk.tf.json line 52, in resource.aws_efs_file_system.storage_efs_1A2B3C:
  52:       }

"""

ROLE_AND_SG_EXIST = """
Error: creating IAM Role (spotkit-training-node): operation error IAM: CreateRole, https response error StatusCode: 409, RequestID: 1, EntityAlreadyExists: Role with name spotkit-training-node already exists.

  with aws_iam_role.group_role_ABCD,
  on cdk.tf.json line 10, in resource.aws_iam_role.group_role_ABCD:
  10:       }


Error: creating Security Group (spotkit-training): operation error EC2: CreateSecurityGroup, https response error StatusCode: 400, RequestID: 2, api error InvalidGroup.Duplicate: The security group 'spotkit-training' already exists for VPC 'vpc-1'

  with aws_security_group.group_sg_EF01,
  on cdk.tf.json line 20, in resource.aws_security_group.group_sg_EF01:
  20:       }
"""

LOCKED = """
Error: Error acquiring the state lock

Error message: ConditionalCheckFailedException: The conditional request failed
Lock Info:
  ID:        0f6c3b0e-2d7c-3f0e-8e8b-6a9a1e2b3c4d
  Path:      my-tf-state/spotkit/training.tfstate
  Operation: OperationTypeApply
  Who:       alice@laptop
  Version:   1.9.8
  Created:   2026-11-29 19:02:11.123456789 +0000 UTC
  Info:

Terraform acquires a state lock to protect the state from being written
by multiple users at the same time. Please resolve the issue above and try
again.
"""


def test_already_exists_is_explained_with_the_import_command_that_adopts_it(tmp_path):
    workdir = tmp_path / "aws" / "storage"
    explained = explain(EFS_EXISTS, workdir)
    assert explained.message == (
        "1 resource(s) this stack declares already exist in the account but are not in its Terraform state (an "
        "earlier apply was probably killed before it wrote its state): aws_efs_file_system.storage_efs_1A2B3C "
        "(fs-0a1b2c3d)")
    assert explained.hint == (f"adopt them into the state, then run the same command again: cd {workdir} && "
                              "terraform import aws_efs_file_system.storage_efs_1A2B3C fs-0a1b2c3d")


def test_several_already_exist_each_get_an_import_and_an_unknown_id_says_where_to_find_it(tmp_path):
    found = already_existing(ROLE_AND_SG_EXIST)
    assert [(e.address, e.resource_id) for e in found] == [
        ("aws_iam_role.group_role_ABCD", "spotkit-training-node"), ("aws_security_group.group_sg_EF01", None)]
    explained = explain(ROLE_AND_SG_EXIST, tmp_path, flavor="tofu")
    assert explained.hint == (
        f"adopt them into the state, then run the same command again: cd {tmp_path} && "
        "tofu import aws_iam_role.group_role_ABCD spotkit-training-node && "
        "tofu import aws_security_group.group_sg_EF01 <ID> (replace <ID> with the id of the existing "
        "aws_security_group: see the error above or the AWS console)")


def test_a_stale_state_lock_is_explained_with_force_unlock_and_its_id(tmp_path):
    assert stale_lock(LOCKED)["ID"] == "0f6c3b0e-2d7c-3f0e-8e8b-6a9a1e2b3c4d"
    explained = explain(LOCKED, tmp_path)
    assert explained.message.startswith(f"the Terraform state in {tmp_path} is locked (lock ID "
                                        "0f6c3b0e-2d7c-3f0e-8e8b-6a9a1e2b3c4d, who alice@laptop, operation "
                                        "OperationTypeApply, created 2026-11-29 19:02:11.123456789 +0000 UTC)")
    assert explained.hint.endswith(f"cd {tmp_path} && terraform force-unlock -force "
                                   "0f6c3b0e-2d7c-3f0e-8e8b-6a9a1e2b3c4d")


def test_other_errors_are_not_explained(tmp_path):
    assert explain("Error: Invalid reference\n\n  with aws_instance.x,\n", tmp_path) is None
    assert explain("", tmp_path) is None


RECORDER = ("import signal, sys, time\n"
            "signal.signal(signal.SIGINT, lambda *a: print('INT', flush=True))\n"
            "print('ready', flush=True)\n"
            "sys.stdin.readline()\n")


def test_the_first_interrupt_is_passed_on_to_the_process_group_once_and_the_second_says_what_happens():
    # GIVEN a process in its own session that records the SIGINTs it gets
    proc = subprocess.Popen([sys.executable, "-c", RECORDER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, start_new_session=True)
    assert proc.stdout.readline() == "ready\n"
    notices: list[str] = []
    relay = SignalRelay(proc.pid, "terraform (pid 1)", "/w/.spotkit-terraform/apply.log", notices.append)
    # WHEN spotkit gets SIGTERM and then SIGINT
    relay(signal.SIGTERM)
    assert proc.stdout.readline() == "INT\n"
    relay(signal.SIGINT)
    proc.stdin.write("\n")
    proc.stdin.close()
    rest = proc.stdout.read()
    proc.wait(timeout=60)
    # THEN the process got exactly one SIGINT, and each signal said what it did
    assert rest == ""
    assert relay.forwarded is True
    assert notices == [
        "spotkit: SIGTERM passed on to terraform (pid 1) as a graceful stop; it finishes the calls in flight and "
        "writes its state (log: /w/.spotkit-terraform/apply.log)",
        f"spotkit: terraform (pid 1) is still stopping gracefully and writing its state; spotkit waits for it (an "
        f"interrupt sent to Terraform itself, kill -INT {proc.pid}, would stop it at once and could lose state)"]


def test_a_pid_file_of_a_gone_or_reused_pid_is_not_a_running_terraform(tmp_path):
    run_dir = tmp_path / RUN_DIR
    run_dir.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (run_dir / PID_FILE).write_text(json.dumps({"pid": dead.pid, "command": "terraform apply"}))
    assert running_terraform(tmp_path) is None
    # a live pid that is not Terraform (the pid was reused by another program): not a running Terraform either
    (run_dir / PID_FILE).write_text(json.dumps({"pid": os.getpid(), "command": "terraform apply"}))
    assert running_terraform(tmp_path) is None
    ensure_not_running(tmp_path)
    (run_dir / PID_FILE).write_text("{torn")
    assert running_terraform(tmp_path) is None


# --- real Terraform, no provider needed -------------------------------------------------------------------

GATED = """
resource "terraform_data" "slow" {
  provisioner "local-exec" {
    command = "while [ ! -f go ]; do sleep 0.1; done"
  }
}
"""


@pytest.fixture()
def gated_workdir(tmp_path):
    if TERRAFORM is None:
        pytest.skip("terraform/tofu not on PATH")
    (tmp_path / "main.tf").write_text(GATED)
    init = subprocess.run([TERRAFORM, "init", "-input=false", "-no-color"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "CHECKPOINT_DISABLE": "1"})
    assert init.returncode == 0, init.stdout + init.stderr
    return tmp_path


def start_child(workdir: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(TREE)}
    return subprocess.Popen([sys.executable, "-m", "tests.support.terraform_child", str(workdir)], cwd=TREE, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_until_creating(child: subprocess.Popen) -> None:
    for line in child.stdout:
        if "terraform_data.slow: Creating..." in line:
            return
    raise AssertionError(f"Terraform never started creating: {child.stderr.read()}")


def wait_for(condition, what: str, bound: float = 300.0) -> None:
    deadline = time.monotonic() + bound
    while not condition():
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(0.1)


def state_resources(workdir: Path) -> list[str]:
    state = json.loads((workdir / "terraform.tfstate").read_text())
    return [f"{r['type']}.{r['name']}" for r in state["resources"]]


@pytest.mark.terraform
def test_killed_spotkit_leaves_terraform_to_finish_and_the_next_run_says_it_still_runs(gated_workdir):
    # GIVEN spotkit's runner applying, Terraform in the middle of creating a resource
    child = start_child(gated_workdir)
    wait_until_creating(child)
    # WHEN spotkit is killed
    child.kill()
    child.wait(timeout=60)
    # THEN Terraform goes on, and the next run stops with who runs, where, and what to do
    running = running_terraform(gated_workdir)
    assert running is not None and pid_alive(running.pid)
    with pytest.raises(TerraformStillRunning) as err:
        ensure_not_running(gated_workdir)
    assert err.value.message.startswith(f"Terraform is still running in {gated_workdir}: pid {running.pid}, "
                                        "'terraform apply' started at ")
    assert err.value.hint == (f"wait for it to end (follow it: tail -f {gated_workdir / RUN_DIR / 'apply.log'}), then "
                              f"run the same command again; to stop it gracefully instead: kill -INT {running.pid}")
    # WHEN the resource can finish THEN Terraform ends by itself, with its state written and no lock left
    (gated_workdir / "go").touch()
    wait_for(lambda: not pid_alive(running.pid), "Terraform to end")
    assert running_terraform(gated_workdir) is None
    assert state_resources(gated_workdir) == ["terraform_data.slow"]
    assert not (gated_workdir / ".terraform.tfstate.lock.info").exists()
    log = (gated_workdir / RUN_DIR / "apply.log").read_text()
    assert "Apply complete! Resources: 1 added" in log


@pytest.mark.terraform
def test_an_interrupt_to_spotkit_stops_terraform_gracefully_and_says_so(gated_workdir):
    # GIVEN spotkit's runner applying, Terraform in the middle of creating a resource
    child = start_child(gated_workdir)
    wait_until_creating(child)
    tf_pid = json.loads((gated_workdir / RUN_DIR / PID_FILE).read_text())["pid"]
    # WHEN spotkit gets SIGINT (Ctrl-C)
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=300)
    # THEN Terraform was told to stop gracefully, it stopped, and spotkit ended with a clear error, no traceback
    assert child.returncode == 1, err
    assert "Traceback" not in err
    assert f"spotkit: SIGINT passed on to terraform (pid {tf_pid}) as a graceful stop" in err
    assert "error: interrupted: 'terraform apply' stopped gracefully in " in err
    assert "next: run the same command again to finish the rest" in err
    assert "Gracefully shutting down..." in (gated_workdir / RUN_DIR / "apply.log").read_text()
    assert not pid_alive(tf_pid) and running_terraform(gated_workdir) is None
    # AND the next run is not blocked: it finishes the rest
    (gated_workdir / "go").touch()
    again = start_child(gated_workdir)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert state_resources(gated_workdir) == ["terraform_data.slow"]


# --- a killed `spotkit apply` of a real stack on the local target ---------------------------------------------

@pytest.fixture()
def local_project(tmp_path, monkeypatch):
    """A project directory with its own running emulator (as in test_deploy_terraform.py); stopped afterwards."""
    from spotkit.deploy import mirror
    from spotkit.rehearsal.local import emulator
    from tests.support.network import free_port

    if TERRAFORM is None or mirror.discover() is None:
        pytest.skip("needs terraform and a hashicorp/aws provider mirror")
    project = tmp_path / ".spotkit"
    state, started = emulator.start(project, port=free_port())
    assert started is True
    yield project, state
    try:
        os.kill(state.pid, signal.SIGCONT)
    except ProcessLookupError:
        pass
    emulator.stop(project)


def spotkit_env(project: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(TREE), "SPOTKIT_PROJECT_DIR": str(project),
            "SPOTKIT_PROVIDER_MIRROR": "auto", "SPOTKIT_TERRAFORM_TIMEOUT": "900",
            "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"}


def spotkit_cli(project: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "spotkit.cli.main", *args], cwd=TREE, env=spotkit_env(project),
                          capture_output=True, text=True, timeout=1200)


@pytest.mark.terraform
def test_killed_spotkit_apply_then_plan_says_terraform_runs_and_a_clean_apply_converges(local_project):
    import boto3

    project, state = local_project
    workdir = project / "local" / "training"
    # GIVEN `spotkit apply training --target local --yes`, Terraform creating resources
    apply = subprocess.Popen([sys.executable, "-m", "spotkit.cli.main", "apply", "training", "--target", "local",
                              "--yes"], cwd=TREE, env=spotkit_env(project), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    seen = []
    for line in apply.stderr:
        seen.append(line)
        if "Creating..." in line:
            break
    assert any("Creating..." in line for line in seen), "".join(seen) + apply.stdout.read()
    # (the emulator is paused, so Terraform is certainly still in the middle of its calls when spotkit dies)
    os.kill(state.pid, signal.SIGSTOP)
    # WHEN spotkit is killed (SIGKILL: no cleanup at all)
    apply.kill()
    apply.wait(timeout=60)
    tf_pid = json.loads((workdir / RUN_DIR / PID_FILE).read_text())["pid"]
    assert pid_alive(tf_pid)
    # THEN the next plan says Terraform is still running there, and what to do, without touching its files
    cdk_before = (workdir / "cdk.tf.json").read_text()
    planned = spotkit_cli(project, "plan", "training", "--target", "local")
    assert planned.returncode == 1, planned.stdout + planned.stderr
    assert "Traceback" not in planned.stderr
    assert f"Error: Terraform is still running in {workdir}: pid {tf_pid}, 'terraform apply' started at" in planned.stderr
    assert f"next: wait for it to end (follow it: tail -f {workdir / RUN_DIR / 'apply.log'})" in planned.stderr
    assert (workdir / "cdk.tf.json").read_text() == cdk_before
    # WHEN the emulator answers again THEN the orphaned Terraform finishes by itself and writes its state
    os.kill(state.pid, signal.SIGCONT)
    wait_for(lambda: not pid_alive(tf_pid), "the orphaned Terraform to finish", bound=900)
    assert "Apply complete!" in (workdir / RUN_DIR / "apply.log").read_text()
    # AND a clean apply converges: nothing "already exists", nothing is created twice
    applied = spotkit_cli(project, "apply", "training", "--target", "local", "--yes")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "already exist" not in applied.stdout + applied.stderr
    assert "Creating..." not in applied.stderr  # everything was created by the orphaned run
    again = spotkit_cli(project, "plan", "training", "--target", "local")
    assert again.returncode == 0, again.stderr
    import re

    assert re.search(r"^training: (no changes|0 to add, \d+ to change, 0 to destroy)", again.stdout, re.M), again.stdout
    asg = boto3.client("autoscaling", endpoint_url=state.url, region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    assert [g["AutoScalingGroupName"] for g in asg.describe_auto_scaling_groups()["AutoScalingGroups"]] == [
        "spotkit-training"]


@pytest.mark.terraform
def test_a_state_locked_by_a_terraform_spotkit_did_not_start_is_explained_with_its_lock_id(gated_workdir):
    from spotkit.deploy.binary import find_terraform
    from spotkit.deploy.runner import IsFlagged, TerraformCommandFailed, TerraformRunner

    # GIVEN a Terraform started by hand in the working directory, holding the state lock
    by_hand = subprocess.Popen([TERRAFORM, "apply", "-auto-approve", "-input=false", "-no-color"], cwd=gated_workdir,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               env={**os.environ, "CHECKPOINT_DISABLE": "1"})
    try:
        for line in by_hand.stdout:
            if "terraform_data.slow: Creating..." in line:
                break
        # WHEN spotkit plans there
        runner = TerraformRunner(gated_workdir, find_terraform())
        with pytest.raises(TerraformCommandFailed) as err:
            runner.run("plan", input=False, no_color=IsFlagged)
        # THEN the error names the lock (Terraform's own lock ID) and says how to release it once that run is gone
        import re

        lock_id = re.search(r"^\s*ID:\s+([0-9a-f-]{36})$", err.value.message, re.M).group(1)
        assert f"is locked (lock ID {lock_id}, who " in err.value.message
        assert "operation OperationTypeApply" in err.value.message
        assert err.value.hint.endswith(f"cd {gated_workdir} && terraform force-unlock -force {lock_id}")
    finally:
        (gated_workdir / "go").touch()
        by_hand.communicate(timeout=300)


@pytest.mark.terraform
def test_the_providers_own_already_exists_error_is_explained_with_the_import_that_adopts_it(aws, tmp_path):
    """Real Terraform and the real hashicorp/aws provider against the emulator: an EFS that exists outside the
    state (as a killed apply leaves it) makes the provider fail; spotkit names the address, the id, the import."""
    from spotkit.deploy import mirror
    from spotkit.deploy.binary import find_terraform
    from spotkit.deploy.runner import IsFlagged, TerraformCommandFailed, TerraformRunner

    found = mirror.discover()
    if TERRAFORM is None or found is None:
        pytest.skip("needs terraform and a hashicorp/aws provider mirror")
    # GIVEN an EFS made by an apply whose state was lost, and a configuration that declares it
    fs_id = aws.client("efs").create_file_system(CreationToken="spotkit-data")["FileSystemId"]
    (tmp_path / "main.tf.json").write_text(json.dumps({
        "provider": {"aws": {"region": "us-east-1", "access_key": "testing", "secret_key": "testing",
                             "skip_credentials_validation": True, "skip_requesting_account_id": True,
                             "skip_metadata_api_check": True, "endpoints": [{"efs": aws.url, "sts": aws.url}]}},
        "resource": {"aws_efs_file_system": {"data": {"creation_token": "spotkit-data"}}}}))
    rc = tmp_path / "terraformrc"
    rc.write_text(mirror.render_cli_config(found))
    runner = TerraformRunner(tmp_path, find_terraform(), {"TF_CLI_CONFIG_FILE": str(rc)})
    runner.run("init", input=False, no_color=IsFlagged)
    # WHEN it is applied
    with pytest.raises(TerraformCommandFailed) as err:
        runner.run("apply", input=False, no_color=IsFlagged, auto_approve=IsFlagged)
    # THEN the error says what exists and gives the command that adopts it (the emulator's error names the
    # creation token, not the id, so the command looks the id up)
    assert "FileSystemAlreadyExists" in err.value.message
    assert err.value.message.endswith("already exist in the account but are not in its Terraform state (an earlier "
                                      "apply was probably killed before it wrote its state): aws_efs_file_system.data "
                                      "(id not in the error)")
    lookup = "aws efs describe-file-systems --creation-token spotkit-data --query 'FileSystems[0].FileSystemId' --output text"
    command = f'cd {tmp_path} && terraform import aws_efs_file_system.data "$({lookup})"'
    assert err.value.hint == (f"adopt them into the state, then run the same command again: {command} (the id is "
                              "looked up with the AWS CLI; add --endpoint-url for an emulator)")
    # AND that command works when pasted into a shell (the AWS CLI pointed at the emulator): after it, the apply
    # adopts the file system and creates none
    if shutil.which("aws") is None:
        pytest.skip("no AWS CLI to run the pasted command with")
    env = {**os.environ, "TF_CLI_CONFIG_FILE": str(rc), "AWS_ENDPOINT_URL": aws.url, "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    pasted = subprocess.run(["bash", "-c", command], env=env, capture_output=True, text=True, timeout=600)
    assert pasted.returncode == 0, pasted.stdout + pasted.stderr
    assert "Import successful!" in pasted.stdout
    runner.run("apply", input=False, no_color=IsFlagged, auto_approve=IsFlagged)
    assert [fs["FileSystemId"] for fs in aws.client("efs").describe_file_systems()["FileSystems"]] == [fs_id]
