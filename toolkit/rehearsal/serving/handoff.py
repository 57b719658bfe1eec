"""The agent's hook on a serving replica: the hand-off the ``gpu_inference`` stack configures on AWS.

Run by the agent (``on_notice``; ``on_rebalance`` with ``--replace-only``) with ``SPOTKIT_DEADLINE_EPOCH``
in its environment (the notice time minus the agent's margin):

1. ask for the replacement at once (``POST /replace`` on the control plane: what ECS does when the
   container instance goes DRAINING, or capacity rebalancing on the recommendation); idempotent;
2. wait until the replacement is healthy in the balancer, or until only ``--drain-seconds`` are left
   before the deadline, whichever comes first;
3. take this replica out of the balancer gracefully (``state drain``: no new request, in-flight ones go
   on; the ALB's deregistration), and wait until it has no session left (at most the deadline);
4. ``state maint`` and exit 0: the agent then sends SIGTERM, the replica exits before the reclaim.

Each step is reported to the control plane (``POST /event``) and printed as a JSON line. Standard library
only (it runs on every notice). When the control plane is gone (the drill ended) the hook exits 1.

    python -m spotkit.rehearsal.serving.handoff --control URL --replica r2 --socket haproxy.sock --slot s2 --drain-seconds 2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional

from spotkit.runtime.notice import SPOT_NOTICE_SECONDS


def _call(url: str, body: Optional[dict] = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST" if body is not None else "GET",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=2) as resp:
        return json.loads(resp.read() or b"{}")


def _say(control: str, replica: str, event: str, **detail) -> None:
    print(json.dumps({"t": time.time(), "replica": replica, "event": event, **detail}), flush=True)
    try:
        _call(f"{control}/event", {"replica": replica, "event": event, "t": time.time(), **detail})
    except (OSError, ValueError):
        pass


def handoff(control: str, replica: str, socket_path: Path, slot: str, drain_seconds: float, deadline: float,
            replace_only: bool = False, poll: float = 0.05) -> int:
    from spotkit.rehearsal.serving.balancer import server_stats, set_server_state

    answer = _call(f"{control}/replace", {"replica": replica})
    _say(control, replica, "replacement-requested", replacement=answer.get("replacement"))
    if replace_only:
        return 0
    latest_drain = deadline - drain_seconds
    reason = "drain-time-left"
    while time.time() < latest_drain:
        if _call(f"{control}/replacement?replica={replica}").get("ready"):
            reason = "replacement-healthy"
            break
        time.sleep(poll)
    set_server_state(socket_path, slot, "drain")
    _say(control, replica, "drain-started", reason=reason, seconds_to_deadline=round(deadline - time.time(), 3))
    left = None
    while time.time() < deadline:
        left = server_stats(socket_path).get(slot, {}).get("scur", 0)
        if left == 0:
            break
        time.sleep(poll)
    set_server_state(socket_path, slot, "maint")
    _say(control, replica, "out-of-balancer", in_flight_left=left or 0,
         seconds_to_deadline=round(deadline - time.time(), 3))
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m spotkit.rehearsal.serving.handoff", description=__doc__.splitlines()[0])
    p.add_argument("--control", required=True)
    p.add_argument("--replica", required=True)
    p.add_argument("--socket", required=True)
    p.add_argument("--slot", required=True)
    p.add_argument("--drain-seconds", type=float, required=True)
    p.add_argument("--replace-only", action="store_true", help="only ask for the replacement (rebalance)")
    a = p.parse_args(argv)
    deadline = float(os.environ.get("SPOTKIT_DEADLINE_EPOCH") or time.time() + SPOT_NOTICE_SECONDS)
    try:
        return handoff(a.control, a.replica, Path(a.socket), a.slot, a.drain_seconds, deadline, a.replace_only)
    except (OSError, urllib.error.URLError) as exc:
        print(json.dumps({"event": "handoff-failed", "replica": a.replica, "error": str(exc)}), flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
