"""Read a plan's JSON (``terraform show -json PLAN``): what it adds, changes, replaces and destroys, and
whether it would destroy data that must outlive the stack.

Retained data (``DATA_RESOURCES``): EBS volumes tagged ``spotkit:retain``, EFS file systems, EBS
snapshots. A plan that deletes (or replaces) any of them is refused by ``guard_data_loss`` unless the
user says ``--allow-data-loss``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from spotkit.errors import ToolkitError
from spotkit.runtime.notice import TAG_RETAIN as RETAIN_TAG


def _tags(values: dict[str, Any] | None) -> dict[str, Any]:
    values = values or {}
    return {**(values.get("tags_all") or {}), **(values.get("tags") or {})}


def _retained_volume(values: dict[str, Any] | None) -> bool:
    return str(_tags(values).get(RETAIN_TAG, "")).lower() not in ("", "false", "0", "no")


# Resource type -> (kind of data, predicate on the resource's values before the change).
DATA_RESOURCES: dict[str, tuple[str, Callable[[dict[str, Any] | None], bool]]] = {
    "aws_ebs_volume": (f"EBS volume tagged {RETAIN_TAG}", _retained_volume),
    "aws_efs_file_system": ("EFS file system", lambda _v: True),
    "aws_ebs_snapshot": ("EBS snapshot", lambda _v: True),
    "aws_ebs_snapshot_copy": ("EBS snapshot", lambda _v: True),
}


# Types whose data-loss predicate reads the resource's values (tags): a plan that deletes or replaces one
# needs the full plan JSON (``terraform show -json``); the others are decided from the streamed plan.
VALUE_DEPENDENT = frozenset({"aws_ebs_volume"})

# ``terraform plan -json`` planned_change actions -> the action lists of the plan JSON.
_STREAM_ACTIONS = {"create": ["create"], "update": ["update"], "delete": ["delete"], "replace": ["delete", "create"],
                   "read": ["read"], "noop": ["no-op"]}


class DataLossError(ToolkitError):
    """The plan would destroy retained data and --allow-data-loss was not given."""


@dataclass
class Change:
    address: str
    type: str
    actions: list[str]

    @property
    def kind(self) -> str:
        a = self.actions
        if a == ["create"]:
            return "add"
        if a == ["update"]:
            return "change"
        if a == ["delete"]:
            return "destroy"
        if "create" in a and "delete" in a:
            return "replace"
        return "no-op" if a in (["no-op"], ["read"]) else "+".join(a)


@dataclass
class PlanSummary:
    adds: list[Change] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    replacements: list[Change] = field(default_factory=list)
    destroys: list[Change] = field(default_factory=list)
    data_loss: list[tuple[Change, str]] = field(default_factory=list)
    output_changes: list[str] = field(default_factory=list)

    @property
    def has_changes(self) -> bool:
        return bool(self.adds or self.changes or self.replacements or self.destroys or self.output_changes)

    @property
    def counts(self) -> dict[str, int]:
        # Terraform counts a replacement as one add and one destroy; so do we.
        return {"add": len(self.adds) + len(self.replacements), "change": len(self.changes),
                "destroy": len(self.destroys) + len(self.replacements)}


def summarize_plan(plan: dict[str, Any]) -> PlanSummary:
    summary = PlanSummary()
    for rc in plan.get("resource_changes") or []:
        if rc.get("mode") == "data":
            continue
        change = Change(address=rc["address"], type=rc["type"], actions=list(rc["change"]["actions"]))
        kind = change.kind
        if kind == "add":
            summary.adds.append(change)
        elif kind == "change":
            summary.changes.append(change)
        elif kind == "replace":
            summary.replacements.append(change)
        elif kind == "destroy":
            summary.destroys.append(change)
        if kind in ("replace", "destroy") and change.type in DATA_RESOURCES:
            what, predicate = DATA_RESOURCES[change.type]
            if predicate(rc["change"].get("before")):
                summary.data_loss.append((change, what))
    for name, oc in (plan.get("output_changes") or {}).items():
        if oc.get("actions") not in (["no-op"], None):
            summary.output_changes.append(name)
    return summary


@dataclass
class StreamedPlan:
    """What ``terraform plan -json`` printed: the summary, the error diagnostics, and whether the full
    plan JSON is still needed to decide about data loss (``needs_values``)."""

    summary: PlanSummary
    errors: list[str] = field(default_factory=list)
    needs_values: bool = False


def summarize_plan_stream(lines: str) -> StreamedPlan:
    """Read the machine-readable UI of ``terraform plan -json`` (one JSON object a line)."""
    import json

    summary = PlanSummary()
    errors: list[str] = []
    needs_values = False
    for line in lines.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        kind = msg.get("type")
        if kind == "planned_change":
            change = msg.get("change") or {}
            resource = change.get("resource") or {}
            actions = _STREAM_ACTIONS.get(change.get("action", ""))
            if actions is None or str(resource.get("addr", "")).startswith("data.") or ".data." in str(resource.get("addr", "")):
                continue
            item = Change(address=str(resource.get("addr")), type=str(resource.get("resource_type", "")), actions=actions)
            bucket = {"add": summary.adds, "change": summary.changes, "replace": summary.replacements,
                      "destroy": summary.destroys}.get(item.kind)
            if bucket is None:
                continue
            bucket.append(item)
            if item.kind in ("replace", "destroy") and item.type in DATA_RESOURCES:
                if item.type in VALUE_DEPENDENT:
                    needs_values = True
                else:
                    summary.data_loss.append((item, DATA_RESOURCES[item.type][0]))
        elif kind == "outputs":
            for name, out in (msg.get("outputs") or {}).items():
                if isinstance(out, dict) and out.get("action") not in (None, "noop"):
                    summary.output_changes.append(name)
        elif kind == "diagnostic" and msg.get("@level") == "error":
            diag = msg.get("diagnostic") or {}
            text = str(diag.get("summary") or msg.get("@message") or "")
            if diag.get("detail"):
                text += f": {diag['detail']}"
            rng = diag.get("range") or {}
            if rng.get("filename"):
                text += f" ({rng['filename']}:{(rng.get('start') or {}).get('line', '?')})"
            errors.append(text)
    for items in (summary.adds, summary.changes, summary.replacements, summary.destroys):
        items.sort(key=lambda c: c.address)  # the stream comes in completion order; the plan JSON is sorted
    summary.data_loss.sort(key=lambda item: item[0].address)
    summary.output_changes.sort()
    return StreamedPlan(summary=summary, errors=errors, needs_values=needs_values)


def render_plan_summary(stack: str, summary: PlanSummary) -> str:
    c = summary.counts
    lines = [f"{stack}: {c['add']} to add, {c['change']} to change, {c['destroy']} to destroy"]
    if not summary.has_changes:
        lines[0] = f"{stack}: no changes; the infrastructure matches the configuration"
    for title, items in (("replace (destroy, then create)", summary.replacements), ("destroy", summary.destroys)):
        for ch in items:
            lines.append(f"  {title}: {ch.address}")
    if summary.adds:
        by_type: dict[str, int] = {}
        for ch in summary.adds:
            by_type[ch.type] = by_type.get(ch.type, 0) + 1
        lines.append("  add: " + ", ".join(f"{n} {t}" for t, n in sorted(by_type.items())))
    for ch in summary.changes:
        lines.append(f"  change in place: {ch.address}")
    for ch, what in summary.data_loss:
        lines.append(f"  DATA LOSS: {ch.address} ({what}) would be destroyed")
    return "\n".join(lines)


def guard_data_loss(summary: PlanSummary, allow_data_loss: bool) -> None:
    """Refuse a plan that destroys retained data unless ``allow_data_loss``."""
    if not summary.data_loss or allow_data_loss:
        return
    items = ", ".join(f"{ch.address} ({what})" for ch, what in summary.data_loss)
    raise DataLossError(
        f"refusing to apply: the plan destroys retained data: {items}",
        hint="keep the data (change the configuration so the plan does not replace or destroy it), "
             "or, if losing it is intended, run again with --allow-data-loss",
    )
