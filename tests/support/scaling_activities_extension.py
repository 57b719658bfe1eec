"""moto gap: Auto Scaling ``DescribeScalingActivities`` always answers an empty list.

moto 5.2 never records scaling activities, and it never fails to launch for lack of capacity, so the
spot capacity failures that ``spotkit recover replace`` reacts to (``InsufficientInstanceCapacity``,
``capacity-not-available``) cannot happen there. This extension keeps a per-region list of activities
on moto's Auto Scaling backend (so ``moto_server.reset()`` clears it), lets a test add activities with
``inject_scaling_activity(...)`` (what AWS would have recorded), and answers
``DescribeScalingActivities`` from it over HTTP, newest first, paged by ``MaxRecords`` / ``NextToken``
like AWS. The code under test reads it exactly as it reads AWS.
"""

from __future__ import annotations

import datetime as _dt
import uuid

from moto.autoscaling.models import autoscaling_backends
from moto.autoscaling.responses import AutoScalingResponse
from moto.core import DEFAULT_ACCOUNT_ID
from moto.core.responses import ActionResult

_ATTR = "spotkit_scaling_activities"


def _activities(backend) -> list[dict]:
    if not hasattr(backend, _ATTR):
        setattr(backend, _ATTR, [])
    return getattr(backend, _ATTR)


def describe_scaling_activities(self: AutoScalingResponse) -> ActionResult:
    group = self._get_param("AutoScalingGroupName")
    max_records = int(self._get_param("MaxRecords") or 100)
    start = int(self._get_param("NextToken") or 0)
    acts = [a for a in _activities(self.autoscaling_backend) if not group or a["AutoScalingGroupName"] == group]
    acts.sort(key=lambda a: a["StartTime"], reverse=True)
    page = acts[start:start + max_records]
    result: dict = {"Activities": page}
    if start + max_records < len(acts):
        result["NextToken"] = str(start + max_records)
    return ActionResult(result)


def install() -> None:
    AutoScalingResponse.describe_scaling_activities = describe_scaling_activities


def inject_scaling_activity(group: str, *, status_code: str = "Failed", message: str = "",
                            description: str = "Launching a new EC2 instance.  Status Reason: ",
                            minutes_ago: float = 1.0, region: str = "us-east-1",
                            account: str = DEFAULT_ACCOUNT_ID) -> dict:
    """Record an activity as AWS would have (e.g. a spot launch that failed for lack of capacity)."""
    start = _dt.datetime.now(_dt.timezone.utc) - _dt.timedelta(minutes=minutes_ago)
    act = {"ActivityId": str(uuid.uuid4()), "AutoScalingGroupName": group,
           "Description": description + message, "Cause": "At an instance was started in response to a "
           "difference between desired and actual capacity.", "StartTime": start, "EndTime": start,
           "StatusCode": status_code, "StatusMessage": message, "Progress": 100}
    _activities(autoscaling_backends[account][region]).append(act)
    return act
