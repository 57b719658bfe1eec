"""The local emulator's control path: state only a rehearsal sets, and what the emulator recorded.

None of this is an AWS API. AWS decides by itself when a spot launch fails for lack of capacity or what
placement score a region gets; moto never does, so a rehearsal states it here, and the AWS calls then
answer it as AWS would (``DescribeScalingActivities``, ``GetSpotPlacementScores``; the patches in
``spotkit.rehearsal.local.patches``). What the emulator recorded of the lifecycle actions and placement
score requests it answered is read here too. Everything is kept on moto's backends, so
``POST /moto-api/reset`` clears it with the rest of the state.

In the emulator's process (the tests' moto server is a thread of the test process) call the functions.
Over HTTP, the emulator ``spotkit local start`` runs serves them under ``/spotkit/`` (``wrap``), beside
moto's own ``/moto-api/``:

- ``POST /spotkit/scaling-activities`` ``{"group": ..., "status_code": "Failed", "message": ...,
  "minutes_ago": 1.0, "region": "us-east-1"}`` -> the activity recorded (``inject_scaling_activity``);
- ``PUT /spotkit/spot-placement-scores`` ``{"region": ..., "score": 1-10}`` (``set_spot_placement_scores``);
- ``GET /spotkit/spot-placement-score-requests?region=...`` (``spot_placement_score_requests``);
- ``GET /spotkit/lifecycle-actions?region=...`` -> the CompleteLifecycleAction and
  RecordLifecycleActionHeartbeat calls answered, oldest first (``lifecycle_calls``).
"""

from __future__ import annotations

import datetime as _dt
import json
import uuid

from moto.autoscaling.models import autoscaling_backends
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ec2.models import ec2_backends

from spotkit.rehearsal.local.patches import autoscaling, ec2

REGION = "us-east-1"
PREFIX = "/spotkit/"


def inject_scaling_activity(group: str, *, status_code: str = "Failed", message: str = "",
                            description: str = "Launching a new EC2 instance.  Status Reason: ",
                            minutes_ago: float = 1.0, region: str = REGION, account: str = DEFAULT_ACCOUNT_ID) -> dict:
    """Record an activity as AWS would have (e.g. a spot launch that failed for lack of capacity)."""
    start = _dt.datetime.now(_dt.timezone.utc) - _dt.timedelta(minutes=minutes_ago)
    act = {"ActivityId": str(uuid.uuid4()), "AutoScalingGroupName": group,
           "Description": description + message, "Cause": "At an instance was started in response to a "
           "difference between desired and actual capacity.", "StartTime": start, "EndTime": start,
           "StatusCode": status_code, "StatusMessage": message, "Progress": 100}
    autoscaling.scaling_activities(autoscaling_backends[account][region]).append(act)
    return act


def set_spot_placement_scores(region: str, score: int, account: str = DEFAULT_ACCOUNT_ID) -> None:
    """The score (1-10) AWS would give the region for any request from now on."""
    ec2.backend_scores(ec2_backends[account][region])[region] = score


def spot_placement_score_requests(region: str = REGION, account: str = DEFAULT_ACCOUNT_ID) -> list[dict]:
    """What the code under test asked GetSpotPlacementScores (types, target capacity, regions), oldest first."""
    return ec2.backend_score_requests(ec2_backends[account][region])


def lifecycle_calls(region: str = REGION, account: str = DEFAULT_ACCOUNT_ID) -> list[dict]:
    """The lifecycle action calls the emulator answered since the last reset, oldest first."""
    return list(autoscaling.lifecycle_calls(autoscaling_backends[account][region]))


def completed_lifecycle_actions(region: str = REGION, account: str = DEFAULT_ACCOUNT_ID) -> list[dict]:
    """CompleteLifecycleAction calls the emulator answered since the last reset, oldest first."""
    return [c for c in lifecycle_calls(region, account) if c["action"] == "CompleteLifecycleAction"]


def lifecycle_heartbeats(region: str = REGION, account: str = DEFAULT_ACCOUNT_ID) -> list[dict]:
    """RecordLifecycleActionHeartbeat calls the emulator answered since the last reset, oldest first."""
    return [c for c in lifecycle_calls(region, account) if c["action"] == "RecordLifecycleActionHeartbeat"]


def _injected(body: dict) -> dict:
    act = inject_scaling_activity(body["group"], **{k: body[k] for k in (
        "status_code", "message", "description", "minutes_ago", "region") if k in body})
    return {**act, "StartTime": act["StartTime"].isoformat(), "EndTime": act["EndTime"].isoformat()}


def _scores_set(body: dict) -> dict:
    set_spot_placement_scores(body["region"], int(body["score"]))
    return {"region": body["region"], "score": int(body["score"])}


ROUTES = {  # (method, path) -> handler of (JSON body, query) -> JSON answer
    ("POST", "/spotkit/scaling-activities"): lambda body, query: _injected(body),
    ("PUT", "/spotkit/spot-placement-scores"): lambda body, query: _scores_set(body),
    ("GET", "/spotkit/spot-placement-score-requests"):
        lambda body, query: spot_placement_score_requests(query.get("region", REGION)),
    ("GET", "/spotkit/lifecycle-actions"): lambda body, query: lifecycle_calls(query.get("region", REGION)),
}


def wrap(app):
    """The WSGI app ``app`` with the control path served under ``/spotkit/`` (everything else goes to ``app``)."""
    from werkzeug.wrappers import Request, Response

    def control(environ, start_response):
        if not environ.get("PATH_INFO", "").startswith(PREFIX):
            return app(environ, start_response)
        request = Request(environ)
        handler = ROUTES.get((request.method, request.path))
        if handler is None:
            answer = Response(json.dumps({"error": f"no control route {request.method} {request.path}",
                                          "routes": [f"{m} {p}" for m, p in ROUTES]}), 404,
                              content_type="application/json")
            return answer(environ, start_response)
        try:
            out, status = handler(request.get_json(silent=True) or {}, request.args), 200
        except (KeyError, TypeError, ValueError) as exc:
            out, status = {"error": f"bad request: {exc!r}"}, 400
        return Response(json.dumps(out, default=str), status, content_type="application/json")(environ, start_response)

    return control
