"""Run a synthesized user-data part for real: bash + the AWS CLI against moto, IMDS from the emulator.

Only what cannot run on a test machine is swapped, and visibly: the functions that mount a block device
and write /etc (``spotkit_mount_data_volume``, ``spotkit_set_data_dir``) are redefined right after the
part's function block (``FUNCTIONS_END``) as recorders that append to ``calls.log``. Everything else,
the IMDSv2 token flow, every AWS call, the choice of volume, runs as deployed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from spotkit.constructs.data_volume_boot import FUNCTIONS_END
from spotkit.rehearsal.imds.emulator import EmulatorSettings, ImdsEmulator

AWS_CLI = Path(sys.executable).with_name("aws")

RECORDERS = """
spotkit_mount_data_volume() { echo "mount $1 $2 $3" >> "$SPOTKIT_TEST_CALLS"; }
spotkit_set_data_dir() { echo "data-dir $1" >> "$SPOTKIT_TEST_CALLS"; }
"""


def require_aws_cli() -> None:
    if not AWS_CLI.exists():
        pytest.skip(f"the AWS CLI is not installed beside {sys.executable}: pip install -e '.[dev]' installs awscli")


def user_data_part(script: str, name: str) -> str:
    """The text of one named part of a rendered user-data script (Terraform's ``$${`` escapes undone)."""
    script = script.replace("$${", "${").replace("%%{", "%{")
    found = re.search(rf"^# --- part: {re.escape(name)} ---\n(.*?)(?=^# --- part: |\Z)", script, re.S | re.M)
    assert found, f"no user-data part named {name!r}"
    return found.group(1)


@dataclass
class BootRun:
    returncode: int
    output: str
    calls_file: Path

    @property
    def calls(self) -> list[str]:
        return self.calls_file.read_text().splitlines() if self.calls_file.exists() else []

    def wait_for_call(self, prefix: str, timeout: float = 40.0) -> str:
        """Wait for a recorded call made by a background waiter."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.calls:
                if line.startswith(prefix):
                    return line
            time.sleep(0.5)
        raise AssertionError(f"no call starting with {prefix!r} within {timeout}s; calls: {self.calls}")


def run_boot_part(part: str, *, endpoint: str, instance: dict, workdir: Path, timeout: float = 120,
                  credentials: dict | None = None) -> BootRun:
    """Run ``part`` as the boot of ``instance`` (a DescribeInstances entry) against the AWS at ``endpoint``.
    ``credentials``: AWS_* variables signing its calls (default the harness's ``testing`` key)."""
    require_aws_cli()
    assert FUNCTIONS_END in part, "the part has no function block marker"
    head, tail = part.split(FUNCTIONS_END, 1)
    script = head + FUNCTIONS_END + "\n" + RECORDERS + tail
    workdir.mkdir(parents=True, exist_ok=True)
    calls = workdir / "calls.log"
    az = instance["Placement"]["AvailabilityZone"]
    settings = EmulatorSettings(instance_id=instance["InstanceId"], availability_zone=az, region=az[:-1],
                                imdsv2_required=True)
    env = {
        "PATH": f"{AWS_CLI.parent}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(workdir),
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_CONFIG_FILE": str(workdir / "no-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(workdir / "no-credentials"),
        "SPOTKIT_LOG": str(workdir / "background.log"),
        "SPOTKIT_TEST_CALLS": str(calls),
        **(credentials or {}),
    }
    with ImdsEmulator(settings) as imds:
        env["SPOTKIT_IMDS_URL"] = imds.url
        done = subprocess.run(["bash", "-c", "set -uo pipefail\n" + script], env=env, capture_output=True,
                              text=True, timeout=timeout)
    return BootRun(done.returncode, done.stdout + done.stderr, calls)
