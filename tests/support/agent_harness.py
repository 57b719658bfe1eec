"""What the agent's tests share (test_agent*.py, test_notice_policy.py): a stand-in workload, an IMDSv2
emulator fixture, the agent's log read by event name, a bounded wait, and an Auto Scaling group with the
drain hook on the AWS emulator.

``emu`` is a fixture: a test module takes it with ``from tests.support.agent_harness import emu  # noqa: F401``.
"""

from __future__ import annotations

import io
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import pytest

from spotkit.runtime.agent import JsonLogger
from spotkit.rehearsal.imds.emulator import EmulatorSettings, ImdsEmulator


@pytest.fixture()
def emu():
    """An IMDS emulator that requires IMDSv2 tokens, as spotkit's launch templates do."""
    with ImdsEmulator(EmulatorSettings(imdsv2_required=True)) as e:
        yield e


def start_workload(sigterm_marker: Optional[Path] = None, *, checkpoint_seconds: float = 0.0,
                   ignore_sigterm: bool = False) -> subprocess.Popen:
    """A stand-in training workload: a Python process in its own process group (the agent signals the
    group), returned once it said it is ready (its SIGTERM handling in place). On SIGTERM it

    - with ``sigterm_marker``: takes ``checkpoint_seconds`` (a final checkpoint), writes the time it got the
      signal (``repr(time.time())``) to the marker, exits 0;
    - with ``ignore_sigterm``: keeps running (the agent must give up on it, never SIGKILL it);
    - else: dies of the signal (a non-zero return code).

    ``proc.marker`` is ``sigterm_marker``. Stop it with :func:`stop_workload`."""
    if sigterm_marker is not None and ignore_sigterm:
        raise ValueError("a workload that ignores SIGTERM writes no marker")
    code = "import signal, sys, time\n"
    if ignore_sigterm:
        code += "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    elif sigterm_marker is not None:
        code += ("def stop(*_):\n"
                 "    got = time.time()\n"
                 f"    time.sleep({checkpoint_seconds!r})\n"
                 f"    open({str(sigterm_marker)!r}, 'w').write(repr(got))\n"
                 "    sys.exit(0)\n"
                 "signal.signal(signal.SIGTERM, stop)\n")
    code += "print('ready', flush=True)\ntime.sleep(120)\n"
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True, stdout=subprocess.PIPE)
    proc.marker = sigterm_marker  # type: ignore[attr-defined]
    try:
        assert proc.stdout.readline().strip() == b"ready"
    except BaseException:
        stop_workload(proc)
        raise
    return proc


def stop_workload(proc: subprocess.Popen) -> None:
    """Kill the workload if it still runs, and reap it."""
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def events(log: JsonLogger, name: str) -> list[dict]:
    """The agent's log lines of event ``name``, in order."""
    return [e for e in log.events if e["event"] == name]


def quiet_log() -> JsonLogger:
    """An agent log kept in memory (read back with :func:`events`)."""
    return JsonLogger(io.StringIO())


def wait_for(condition: Callable[[], object], what: str, timeout: float = 30.0):
    """``condition()``'s first true value, polled every 20 ms; fails naming ``what`` after ``timeout`` s
    (a generous bound, not a measurement)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def group_with_drain_hook(aws, name: str):
    """An Auto Scaling group ``name`` on the AWS emulator with spotkit's drain hook; its autoscaling client."""
    ec2, asg = aws.client("ec2"), aws.client("autoscaling")
    lt = ec2.create_launch_template(LaunchTemplateName=f"{name}-lt",
                                    LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "m6i.large"})
    asg.create_auto_scaling_group(AutoScalingGroupName=name, MinSize=0, MaxSize=1, DesiredCapacity=0,
                                  AvailabilityZones=["us-east-1a"],
                                  LaunchTemplate={"LaunchTemplateId": lt["LaunchTemplate"]["LaunchTemplateId"]})
    asg.put_lifecycle_hook(LifecycleHookName="spotkit-drain", AutoScalingGroupName=name,
                           LifecycleTransition="autoscaling:EC2_INSTANCE_TERMINATING", HeartbeatTimeout=300,
                           DefaultResult="CONTINUE")
    return asg
