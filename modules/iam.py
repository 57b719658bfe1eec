"""IAM documents the constructs write, in one place: the trust policy of a role a service assumes."""

from __future__ import annotations

import json
from typing import Mapping, Optional


def assume_role_policy(service: str, *, tag_session: bool = False, condition: Optional[Mapping] = None) -> str:
    """The trust policy letting ``service`` (e.g. ``ec2.amazonaws.com``) assume the role; ``tag_session``
    also allows sts:TagSession (EKS pod identity, Auto Mode); ``condition`` narrows it (e.g. aws:SourceAccount)."""
    actions = ["sts:AssumeRole", "sts:TagSession"] if tag_session else "sts:AssumeRole"
    statement = {"Effect": "Allow", "Principal": {"Service": service}, "Action": actions}
    if condition is not None:
        statement["Condition"] = dict(condition)
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})
