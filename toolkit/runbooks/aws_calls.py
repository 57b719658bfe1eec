"""AWS call helpers shared by the runbooks: pagination, server-side filters, waiters, call counting.

Every read goes through a paginator with server-side ``Filters``, so the number of calls grows with
pages of results, never with the number of instances or volumes. Throttling is retried with backoff
by the clients themselves (``spotkit.aws.RETRY_CONFIG``, standard retry mode); waiters take a delay and
a maximum number of attempts so nothing waits forever.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

from botocore.exceptions import ClientError, WaiterError

from spotkit.runtime import notice
from spotkit.errors import AwsCallError
from spotkit.runtime.notice import ASG_NAME_TAG  # noqa: F401  (the tag contract lives in toolkit/runtime/notice.py)
from spotkit.runtime.notice import TAG_DEVICE as DEVICE_TAG
from spotkit.runtime.notice import TAG_GROUP as GROUP_TAG
from spotkit.runtime.notice import TAG_RETAIN as RETAIN_TAG
ORIGIN_VOLUME_TAG = notice.TAG_ORIGIN_VOLUME
ORIGIN_SNAPSHOT_TAG = notice.TAG_ORIGIN_SNAPSHOT
TARGET_AZ_TAG = notice.TAG_TARGET_AZ
RESTORED_FOR_TAG = notice.TAG_RESTORED_FOR
FALLBACK_BASE_TAG = notice.TAG_FALLBACK_BASE
FALLBACK_SINCE_TAG = notice.TAG_FALLBACK_SINCE
SUPERSEDED_BY_TAG = notice.TAG_SUPERSEDED_BY
RETAIN_SUPERSEDED = notice.RETAIN_SUPERSEDED

# EC2 filter values per call are capped at 200 by AWS; ids in a filter are chunked at that size.
MAX_FILTER_VALUES = 200
# Ids given as ``VolumeIds`` (not a filter) to one waiter poll: up to DescribeVolumes' largest page (500), so
# a wait for 500 attachments is one call per attempt, as a plain script's would be.
MAX_IDS_PER_WAIT = 500


def tag_filter(key: str, *values: str) -> dict:
    return {"Name": f"tag:{key}", "Values": list(values)}


def tags_of(resource: dict) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", []) or []}


def paginate(client, operation: str, result_key: str, **kwargs) -> Iterator[dict]:
    """Yield every item of ``result_key`` over all pages of ``operation``."""
    paginator = client.get_paginator(operation)
    for page in paginator.paginate(**kwargs):
        yield from page.get(result_key, [])


def chunks(items: list, size: int = MAX_FILTER_VALUES) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def group_instances(ec2, group: str | None = None, states: Iterable[str] = ("running",)) -> list[dict]:
    """Instances tagged with a spotkit group (or every spotkit group), in the given states: one paginated call."""
    filters = [{"Name": "instance-state-name", "Values": list(states)}]
    filters.append(tag_filter(GROUP_TAG, group) if group else {"Name": "tag-key", "Values": [GROUP_TAG]})
    out = []
    for reservation in paginate(ec2, "describe_instances", "Reservations", Filters=filters):
        out.extend(reservation.get("Instances", []))
    return out


def group_volumes(ec2, group: str | None = None, *, retained_only: bool = True,
                  status: Iterable[str] | None = None) -> list[dict]:
    """spotkit data volumes of a group (or every group): one paginated call with server-side filters."""
    filters = [tag_filter(GROUP_TAG, group) if group else {"Name": "tag-key", "Values": [GROUP_TAG]}]
    if retained_only:
        filters.append(tag_filter(RETAIN_TAG, "true"))
    if status:
        filters.append({"Name": "status", "Values": list(status)})
    return list(paginate(ec2, "describe_volumes", "Volumes", Filters=filters))


def volumes_with_tag(ec2, key: str, values: list[str]) -> list[dict]:
    out: list[dict] = []
    for part in chunks(values):
        out.extend(paginate(ec2, "describe_volumes", "Volumes", Filters=[tag_filter(key, *part)]))
    return out


def snapshots_with_tags(ec2, filters: list[dict]) -> list[dict]:
    return list(paginate(ec2, "describe_snapshots", "Snapshots", OwnerIds=["self"], Filters=filters))


def describe_groups(autoscaling, names: list[str] | None = None) -> list[dict]:
    """Auto Scaling groups by name, or every group tagged ``spotkit:group``."""
    if names:
        out: list[dict] = []
        for part in chunks(names, 50):  # the API takes at most 50 names per call... per page
            out.extend(paginate(autoscaling, "describe_auto_scaling_groups", "AutoScalingGroups",
                                AutoScalingGroupNames=part))
        return out
    return list(paginate(autoscaling, "describe_auto_scaling_groups", "AutoScalingGroups",
                         Filters=[{"Name": "tag-key", "Values": [GROUP_TAG]}]))


def wait(client, waiter_name: str, *, delay: float, max_attempts: int, what: str, **kwargs) -> None:
    """Run a boto3 waiter with a bounded time; a timeout is an error that says what to do."""
    try:
        client.get_waiter(waiter_name).wait(WaiterConfig={"Delay": delay, "MaxAttempts": max_attempts}, **kwargs)
    except WaiterError as exc:
        raise AwsCallError(
            f"timed out after {delay * max_attempts:.0f}s waiting for {what}: {exc}",
            hint="run the same command again: it resumes where it stopped and creates nothing twice",
        ) from exc


def is_permission_error(exc: ClientError) -> bool:
    code = exc.response.get("Error", {}).get("Code", "")
    return code in ("UnauthorizedOperation", "AccessDenied", "AccessDeniedException")


@dataclass
class CallCounter:
    """Counts AWS API calls made by clients, via botocore's ``before-call`` event (one per call, retries excluded),
    and the wall time from there to ``after-call`` (request, the wire, the server, parsing the answer).

    ``counter.attach(client)`` for each client; ``counter.total``, ``counter.by_operation`` and
    ``counter.seconds`` afterwards.
    """

    by_operation: Counter = field(default_factory=Counter)
    seconds: Counter = field(default_factory=Counter)  # wall time inside each operation's calls (over the wire)
    _started: list = field(default_factory=list)

    def attach(self, client) -> Any:
        client.meta.events.register("before-call.*.*", self._count)
        client.meta.events.register("after-call.*.*", self._done)
        client.meta.events.register("after-call-error.*.*", self._failed)  # no answer (connection lost)
        return client

    def _count(self, model, **_kwargs) -> None:
        self.by_operation[f"{model.service_model.service_name}:{model.name}"] += 1
        self._started.append(time.perf_counter())

    def _done(self, model, **_kwargs) -> None:
        if self._started:
            self.seconds[f"{model.service_model.service_name}:{model.name}"] += time.perf_counter() - self._started.pop()

    def _failed(self, **_kwargs) -> None:
        if self._started:
            self._started.pop()

    @property
    def total_seconds(self) -> float:
        return sum(self.seconds.values())

    @property
    def total(self) -> int:
        return sum(self.by_operation.values())

    def matching(self, *names: str) -> int:
        return sum(n for op, n in self.by_operation.items() if op.split(":", 1)[1] in names)


def copyable_tags(tags: dict[str, str]) -> dict[str, str]:
    """A resource's tags that a copy of it may carry (AWS reserves ``aws:`` keys)."""
    return {k: v for k, v in tags.items() if not k.startswith("aws:")}


def tag_spec(resource_type: str, tags: dict[str, str]) -> list[dict]:
    """``TagSpecifications`` for a create call: the tags on the resource as it is made, sorted."""
    return [{"ResourceType": resource_type, "Tags": [{"Key": k, "Value": v} for k, v in sorted(tags.items())]}]
