"""The agent's boot part run for real: bash + the AWS CLI against moto's S3, IMDS from the emulator.

Only what cannot run on a test machine is swapped, and visibly: files go under ``SPOTKIT_ROOT`` (a temp
folder instead of /), and ``systemctl`` is a recorder on PATH. The download, the sha256 check, the
install and the unit are the deployed script's own.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from spotkit.constructs.agent_artifact import AgentArtifactRef, build_agent_pyz
from spotkit.constructs.agent_user_data import AgentSettings, agent_user_data_part
from tests.support.boot_part import AWS_CLI, require_aws_cli
from tests.test_agent_artifact import python39
from spotkit.rehearsal.imds.emulator import EmulatorSettings, ImdsEmulator

BUCKET = "spotkit-agent-test"

SYSTEMCTL = """#!/bin/sh
echo "systemctl $*" >> "$SPOTKIT_TEST_CALLS"
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build_agent_pyz(tmp_path_factory.mktemp("build"))


def _upload(aws, data: bytes) -> AgentArtifactRef:
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    sha = build_agent_pyz().sha256
    key = f"agent/{sha}/spotkit-agent.pyz"
    s3.put_object(Bucket=BUCKET, Key=key, Body=data)
    return AgentArtifactRef(f"s3://{BUCKET}/{key}", sha)


def _boot(aws, ref: AgentArtifactRef, tmp_path: Path) -> tuple[subprocess.CompletedProcess, Path, list[str]]:
    return run_agent_part(aws.url, agent_user_data_part(AgentSettings(), artifact=ref).script, tmp_path)


def run_agent_part(endpoint: str, part: str, tmp_path: Path) -> tuple[subprocess.CompletedProcess, Path, list[str]]:
    """Run the agent part as an instance's boot: files under ``SPOTKIT_ROOT``, ``systemctl`` recorded."""
    require_aws_cli()
    root, bin_dir, calls = tmp_path / "root", tmp_path / "bin", tmp_path / "calls.log"
    root.mkdir(parents=True)
    bin_dir.mkdir(parents=True)
    (bin_dir / "systemctl").write_text(SYSTEMCTL)
    (bin_dir / "systemctl").chmod(0o755)
    script = "set -uo pipefail\n" + part + '\necho "rest of the boot ran" >> "$SPOTKIT_TEST_CALLS"\n'
    env = {"PATH": f"{bin_dir}{os.pathsep}{AWS_CLI.parent}{os.pathsep}/usr/bin:/bin", "HOME": str(tmp_path),
           "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
           "SPOTKIT_ROOT": str(root), "SPOTKIT_TEST_CALLS": str(calls)}
    with ImdsEmulator(EmulatorSettings(imdsv2_required=True)) as imds:
        env["SPOTKIT_IMDS_URL"] = imds.url
        done = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=180)
    return done, root, calls.read_text().splitlines() if calls.exists() else []


def test_boot_downloads_verifies_installs_and_starts_the_agent(aws, built, tmp_path):
    # GIVEN the stack's artifact in S3 and its sha256 in the user data
    ref = _upload(aws, built.path.read_bytes())
    # WHEN the boot part runs
    done, root, calls = _boot(aws, ref, tmp_path)
    # THEN the verified artifact is installed, the unit written and started, and the boot went on
    installed = root / "opt/spotkit/spotkit-agent.pyz"
    assert installed.read_bytes() == built.path.read_bytes(), done.stdout + done.stderr
    assert oct(installed.stat().st_mode & 0o777) == "0o644"
    assert calls == ["systemctl daemon-reload", "systemctl enable --now spotkit-agent.service", "rest of the boot ran"]
    assert f"installed {ref.s3_uri} (sha256 {ref.sha256})" in done.stdout
    assert [p.name for p in (root / "opt/spotkit").iterdir()] == ["spotkit-agent.pyz"]  # no temp file left
    hook = root / "etc/spotkit/on-notice"
    assert hook.stat().st_mode & 0o111
    unit = (root / "etc/systemd/system/spotkit-agent.service").read_text()
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    argv = shlex.split(exec_start[len("ExecStart="):])
    assert argv[:4] == ["/usr/bin/python3", "-I", "-S", "/opt/spotkit/spotkit-agent.pyz"]

    # AND the unit's command starts the installed agent under Python 3.9 (paths mapped under SPOTKIT_ROOT):
    # it runs the placeholder hook on a spot notice
    exe = python39()
    mapped = [exe] + [a.replace("/opt/spotkit", str(root / "opt/spotkit")).replace("/etc/spotkit", str(root / "etc/spotkit"))
                      for a in argv[1:]]
    with ImdsEmulator(EmulatorSettings(imdsv2_required=True)) as imds:
        imds.interrupt("spot", lead_seconds=120)
        run = subprocess.run(mapped + ["--metadata-url", imds.url, "--state-file", str(tmp_path / "state.json"),
                                       "--once", "--interval", "0.1", "--no-complete-lifecycle"],
                             capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr
    assert "spotkit notice: kind=spot-interruption" in run.stdout  # the placeholder hook's line, in the log tail


def test_tampered_artifact_is_refused_and_the_rest_of_the_boot_goes_on(aws, built, tmp_path):
    # GIVEN an object at the key whose bytes are not the ones the stack built
    ref = _upload(aws, built.path.read_bytes() + b"\n# tampered")
    # WHEN the boot part runs
    done, root, calls = _boot(aws, ref, tmp_path)
    # THEN it refuses it with a clear line, installs and starts nothing, leaves no temp file, and the boot goes on
    assert f"spotkit-agent: REFUSED {ref.s3_uri}: its sha256 is " in done.stderr
    assert f"the stack shipped {ref.sha256}; the agent is not installed" in done.stderr
    assert not (root / "opt/spotkit/spotkit-agent.pyz").exists()
    assert list((root / "opt/spotkit").iterdir()) == []
    assert calls == ["rest of the boot ran"]
    assert done.returncode == 0


def test_missing_artifact_is_logged_and_the_rest_of_the_boot_goes_on(aws, built, tmp_path):
    aws.client("s3").create_bucket(Bucket=BUCKET)
    ref = AgentArtifactRef(f"s3://{BUCKET}/agent/{built.sha256}/spotkit-agent.pyz", built.sha256)
    done, root, calls = _boot(aws, ref, tmp_path)
    assert f"spotkit-agent: downloading {ref.s3_uri} failed" in done.stderr
    assert calls == ["rest of the boot ran"] and list((root / "opt/spotkit").iterdir()) == []
