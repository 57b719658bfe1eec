"""AWS call helpers shared by the runbooks: pagination, server-side filters, waiters, call counting.

Every read goes through a paginator with server-side ``Filters``, so the number of calls grows with
pages of results, never with the number of instances or volumes. Throttling is retried with backoff
by the clients themselves (``toolkit.aws.RETRY_CONFIG``, standard retry mode); waiters take a delay and
a maximum number of attempts so nothing waits forever.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

from botocore.exceptions import ClientError, WaiterError

from toolkit import notice
from toolkit.errors import AwsCallError
from toolkit.notice import ASG_NAME_TAG  # noqa: F401  (the tag contract lives in toolkit/notice.py)
from toolkit.notice import TAG_DEVICE as DEVICE_TAG
from toolkit.notice import TAG_GROUP as GROUP_TAG
from toolkit.notice import TAG_RETAIN as RETAIN_TAG
ORIGIN_VOLUME_TAG = "spotkit:origin-volume"
ORIGIN_SNAPSHOT_TAG = "spotkit:origin-snapshot"
TARGET_AZ_TAG = "spotkit:target-az"
RESTORED_FOR_TAG = "spotkit:restored-for"
FALLBACK_BASE_TAG = notice.TAG_FALLBACK_BASE
FALLBACK_SINCE_TAG = notice.TAG_FALLBACK_SINCE
SUPERSEDED_BY_TAG = notice.TAG_SUPERSEDED_BY
RETAIN_SUPERSEDED = notice.RETAIN_SUPERSEDED

# EC2 filter values per call are capped at 200 by AWS; ids are chunked at that size.
MAX_FILTER_VALUES = 200


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


def group_volume_filters(group: str | None = None, *, retained_only: bool = True,
                         status: Iterable[str] | None = None) -> list[dict]:
    """The server-side filters of :func:`group_volumes`."""
    filters = [tag_filter(GROUP_TAG, group) if group else {"Name": "tag-key", "Values": [GROUP_TAG]}]
    if retained_only:
        filters.append(tag_filter(RETAIN_TAG, "true"))
    if status:
        filters.append({"Name": "status", "Values": list(status)})
    return filters


def group_volumes(ec2, group: str | None = None, *, retained_only: bool = True,
                  status: Iterable[str] | None = None) -> list[dict]:
    """spotkit data volumes of a group (or every group): one paginated call with server-side filters."""
    filters = group_volume_filters(group, retained_only=retained_only, status=status)
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


def wait_volumes_in_use(ec2, volume_ids: list[str], filters: list[dict], *, delay: float, max_attempts: int,
                        what: str) -> None:
    """Wait until every volume of ``volume_ids`` is in use, in as few calls per attempt as possible.

    Up to ``MAX_FILTER_VALUES`` ids: boto3's ``volume_in_use`` waiter on the ids (one call per attempt).
    More: one paginated read per attempt with ``filters`` (the caller's filtered read that lists these
    volumes, e.g. the group's retained volumes) instead of one call per 200 ids; the same acceptors as the
    waiter (success when all are ``in-use``, failure when one is ``deleted``), bounded the same way.
    """
    if len(volume_ids) <= MAX_FILTER_VALUES:
        wait(ec2, "volume_in_use", VolumeIds=list(volume_ids), delay=delay, max_attempts=max_attempts, what=what)
        return
    pending = set(volume_ids)
    for attempt in range(1, max_attempts + 1):
        states = {v["VolumeId"]: v["State"] for v in paginate(ec2, "describe_volumes", "Volumes", Filters=filters)}
        gone = sorted(v for v in pending if states.get(v) in (None, "deleted", "deleting"))
        if gone:
            raise AwsCallError(f"waiting for {what}: {len(gone)} volume(s) are gone ({', '.join(gone[:5])})",
                               hint="run the same command again: it plans afresh from what is there")
        pending = {v for v in pending if states[v] != "in-use"}
        if not pending:
            return
        if attempt < max_attempts:
            time.sleep(delay)
    raise AwsCallError(
        f"timed out after {delay * max_attempts:.0f}s waiting for {what}: {len(pending)} not in use yet "
        f"({', '.join(sorted(pending)[:5])})",
        hint="run the same command again: it resumes where it stopped and creates nothing twice",
    )


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
        return client

    def _count(self, model, **_kwargs) -> None:
        self.by_operation[f"{model.service_model.service_name}:{model.name}"] += 1
        self._started.append(time.perf_counter())

    def _done(self, model, **_kwargs) -> None:
        if self._started:
            self.seconds[f"{model.service_model.service_name}:{model.name}"] += time.perf_counter() - self._started.pop()

    @property
    def total_seconds(self) -> float:
        return sum(self.seconds.values())

    @property
    def total(self) -> int:
        return sum(self.by_operation.values())

    def matching(self, *names: str) -> int:
        return sum(n for op, n in self.by_operation.items() if op.split(":", 1)[1] in names)
