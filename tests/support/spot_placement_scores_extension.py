"""moto gap: EC2 ``GetSpotPlacementScores`` is not implemented (moto 5.2 answers HTTP 500).

The scheduled return-to-spot check reads spot placement scores where the account allows it. This
extension answers ``GetSpotPlacementScores`` over HTTP from scores a test sets with
``set_spot_placement_scores(region, score)`` (kept on moto's EC2 backend, so ``moto_server.reset()``
clears them), in EC2's XML shape: one ``spotPlacementScoreSet`` item per requested region. With no score
set it refuses as EC2 does for an account without the permission (``UnauthorizedOperation``), which the
code under test must treat as "no score" (the module doc of toolkit/runtime/interruption/fallback.py).

Reuse: ``install()`` (done by tests/support/moto_server.py at import).
"""

from __future__ import annotations

from moto.core import DEFAULT_ACCOUNT_ID
from moto.ec2.exceptions import EC2ClientError
from moto.ec2.models import ec2_backends
from moto.ec2.responses import EC2Response

_ATTR = "spotkit_spot_placement_scores"
REQUESTS_ATTR = "spotkit_spot_placement_score_requests"


def _scores(backend) -> dict:
    if not hasattr(backend, _ATTR):
        setattr(backend, _ATTR, {})
    return getattr(backend, _ATTR)


def requests(region: str = "us-east-1", account: str = DEFAULT_ACCOUNT_ID) -> list[dict]:
    """What the code under test asked for (instance types, target capacity, regions), oldest first."""
    backend = ec2_backends[account][region]
    if not hasattr(backend, REQUESTS_ATTR):
        setattr(backend, REQUESTS_ATTR, [])
    return getattr(backend, REQUESTS_ATTR)


def get_spot_placement_scores(self: EC2Response) -> str:
    types = list(self._get_param("InstanceTypes") or [])
    capacity = int(self._get_param("TargetCapacity") or 0)
    regions = list(self._get_param("RegionNames") or [self.region])
    if not types or capacity < 1:
        raise EC2ClientError("InvalidParameterValue", "InstanceTypes and a TargetCapacity of 1 or more are required")
    requests(self.region, self.current_account).append({"types": types, "capacity": capacity, "regions": regions})
    scores = _scores(self.ec2_backend)
    if not scores:
        raise EC2ClientError("UnauthorizedOperation", "You are not authorized to perform: ec2:GetSpotPlacementScores")
    items = "".join(f"<item><region>{r}</region><score>{int(scores.get(r, 1))}</score></item>" for r in regions)
    return ('<GetSpotPlacementScoresResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">'
            f"<requestId>spotkit-scores</requestId><spotPlacementScoreSet>{items}</spotPlacementScoreSet>"
            "</GetSpotPlacementScoresResponse>")


def set_spot_placement_scores(region: str, score: int, account: str = DEFAULT_ACCOUNT_ID) -> None:
    """The score (1-10) AWS would give the region for any request from now on."""
    _scores(ec2_backends[account][region])[region] = score


def install() -> None:
    EC2Response.get_spot_placement_scores = get_spot_placement_scores
