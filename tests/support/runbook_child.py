"""Run ``recover volumes`` in a child process and SIGKILL it right after its k-th mutating AWS call.

``python -m tests.support.runbook_child ENDPOINT JOURNAL_DIR GROUP KILL_AFTER [kill|pause|step]``

The kill is real (``SIGKILL`` to this process, no cleanup, no journal write after the call): botocore's
``after-call`` event fires once the emulator has answered a mutating call (the change is made), and
the process dies before the runbook can record it. ``KILL_AFTER`` 0 runs to the end. The child prints
each mutating call it makes (``call N Operation``) on stdout as it goes. With ``pause`` it does not
die after the k-th call but waits for a line on stdin (the test stops the endpoint meanwhile); a
``ToolkitError`` ends it with exit 1 and ``error: MESSAGE`` / ``next: HINT`` on stderr. With ``step`` it dies
at the ``KILL_AFTER``-th step of the runbook instead (``RunContext.hook``, called right after the journal
record of a step is written and fsynced), printing ``step N NAME`` for each step.
"""

from __future__ import annotations

import os
import signal
import sys

import boto3
from botocore.config import Config

MUTATING = {"CreateSnapshot", "CreateVolume", "AttachVolume", "CreateTags", "CreateOrUpdateTags", "DeleteTags"}


def main(endpoint: str, journal_dir: str, group: str, kill_after: int, mode: str = "kill") -> int:
    from spotkit.errors import ToolkitError
    from spotkit.runbooks.base import RunContext
    from spotkit.runbooks.volumes import recover_volumes

    def client(service):
        return boto3.client(service, region_name="us-east-1", endpoint_url=endpoint,
                            aws_access_key_id="testing", aws_secret_access_key="testing",
                            config=Config(retries={"max_attempts": 2, "mode": "standard"}))

    calls = [0]

    def after_call(model, **_):
        if model.name not in MUTATING:
            return
        calls[0] += 1
        print(f"call {calls[0]} {model.name}", flush=True)
        if calls[0] == kill_after and mode == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if calls[0] == kill_after and mode == "pause":
            sys.stdin.readline()

    ec2, asg = client("ec2"), client("autoscaling")
    for c in (ec2, asg):
        c.meta.events.register("after-call.*.*", after_call)
    steps = [0]

    def hook(name):
        steps[0] += 1
        print(f"step {steps[0]} {name}", flush=True)
        if steps[0] == kill_after and mode == "step":
            os.kill(os.getpid(), signal.SIGKILL)

    ctx = RunContext(journal_dir=journal_dir, wait_delay=0.05, wait_attempts=100, lock_settle=0.05, hook=hook)
    try:
        result = recover_volumes(ec2, group, ctx, autoscaling=asg)
    except ToolkitError as exc:
        print(f"error: {exc.message}\nnext: {exc.hint}", file=sys.stderr, flush=True)
        return 1
    print("done " + " ".join(f"{p.volume_id}:{p.status}" for p in result.placements), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), *sys.argv[5:6]))
