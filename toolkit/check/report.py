"""Findings, the report, and how a run of the check decides its exit code."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from spotkit.errors import ToolkitError

SEVERITY_RANK = {"error": 3, "warning": 2, "info": 1}
CATEGORIES = ("spot", "general")
CATEGORY_TITLES = {"spot": "Spot risks", "general": "General findings (security and configuration, not spot-specific)"}
FAIL_ON = ("error", "warning", "info", "never")


class CheckFailed(ToolkitError):
    """Unsuppressed findings at or above the --fail-on severity: exit 1."""


def fail_if_needed(report: "CheckReport", fail_on: str = "error") -> None:
    failing = report.failing(fail_on)
    if failing:
        ids = ", ".join(sorted({f.rule_id for f in failing}))
        first = failing[0]
        raise CheckFailed(f"check found {len(failing)} finding(s) at or above {fail_on}: {ids}",
                          hint=f"spotkit check --help   # how to suppress a finding with a reason; or fix each as it "
                               f"says (first: {first.rule_id} on {first.resource})")


@dataclass
class Finding:
    rule_id: str
    severity: str
    title: str
    message: str
    fix: str
    resource: str
    file: str
    source: str = "spotkit"  # or "checkov"
    help_uri: str | None = None
    line: int | None = None
    suppressed: bool = False
    suppression_reason: str | None = None
    suppression_kind: str | None = None  # "inSource" (tag / // comment) or "external" (config file)
    category: str = "spot"  # "spot" (a spot risk) or "general" (security and the rest: checkov's ground)
    decided: bool = True  # False: the rule could not decide (a value unknown before apply); never fails a run
    root: str = ""  # the configuration the resource belongs to: the root module's directory (HCL) or the JSON file


@dataclass
class CheckReport:
    files: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    checkov_status: str = "disabled"
    checkov_detail: str = ""
    rules_run: list[str] = field(default_factory=list)
    not_inspected: list = field(default_factory=list)  # hcl.NotInspected: modules whose source was not read
    general_left_to_checkov: int = 0  # spotkit's general findings dropped because checkov ran
    roots: list[str] = field(default_factory=list)  # the configurations checked (root module directories, JSON files)
    spot_capacity: list[str] = field(default_factory=list)  # addresses of what launches spot (groups, fleets, pools...)
    maybe_spot_capacity: list[str] = field(default_factory=list)  # ...and of what may, when a value is not known before apply

    @property
    def no_spot_capacity(self) -> bool:
        """True when nothing checked launches (or may launch) spot: the spot rules had nothing to judge,
        which is not the same as passing them."""
        return not self.spot_capacity and not self.maybe_spot_capacity

    def no_spot_line(self) -> str:
        return ("no spot capacity recognised: nothing in these files launches spot (an Auto Scaling group with a spot share, "
                "a spot fleet, an EC2 fleet, a spot instance request, a spot EKS node group or a Karpenter NodePool), "
                "so the spot rules had nothing to check")

    @property
    def active(self) -> list[Finding]:
        return [f for f in self.findings if not f.suppressed and f.decided]

    @property
    def undecided(self) -> list[Finding]:
        return [f for f in self.findings if not f.suppressed and not f.decided]

    @property
    def suppressed(self) -> list[Finding]:
        return [f for f in self.findings if f.suppressed]

    def counts(self) -> dict[str, int]:
        c = Counter(f.severity for f in self.active)
        return {s: c.get(s, 0) for s in SEVERITY_RANK}

    def failing(self, fail_on: str = "error") -> list[Finding]:
        """Unsuppressed findings at or above ``fail_on`` (``never``: none)."""
        if fail_on == "never":
            return []
        floor = SEVERITY_RANK[fail_on]
        return [f for f in self.active if SEVERITY_RANK.get(f.severity, 0) >= floor]

    @property
    def errors(self) -> list[Finding]:
        return self.failing("error")

    def summary_line(self) -> str:
        c = self.counts()
        return (f"check: {len(self.files)} file(s): {c['error']} error(s), {c['warning']} warning(s), "
                f"{c['info']} info, {len(self.suppressed)} suppressed")

    def to_dict(self) -> dict:
        from spotkit.output import to_jsonable

        return {
            "files": self.files,
            "summary": {**self.counts(), "suppressed": len(self.suppressed), "undecided": len(self.undecided),
                        "by_category": self.by_category()},
            "checkov": {"status": self.checkov_status, "detail": self.checkov_detail,
                        "general_left_to_checkov": self.general_left_to_checkov},
            "not_inspected": [m.to_dict() for m in self.not_inspected],
            "roots": self.roots,
            "spot_capacity": {"found": len(self.spot_capacity), "maybe": len(self.maybe_spot_capacity),
                              "resources": self.spot_capacity, "maybe_resources": self.maybe_spot_capacity},
            "no_spot_capacity": self.no_spot_capacity,
            "findings": [to_jsonable(f) for f in self.findings],
        }

    def by_category(self) -> dict[str, int]:
        c = Counter(f.category for f in self.active)
        return {k: c.get(k, 0) for k in CATEGORIES}


def render_text(report: CheckReport, show_suppressed: bool = False) -> str:
    lines: list[str] = []
    order = sorted(report.findings, key=lambda f: (not f.decided, -SEVERITY_RANK.get(f.severity, 0), f.file, f.rule_id, f.resource))
    for category in CATEGORIES:
        shown = [f for f in order if f.category == category and (show_suppressed or not f.suppressed)]
        if not shown:
            continue
        if lines:
            lines.append("")
        lines.append(CATEGORY_TITLES[category])
        for f in shown:
            tag = "suppressed" if f.suppressed else (f.severity.upper() if f.decided else "UNDECIDED")
            where = f"{f.file}:{f.line}" if f.line else f.file
            root = f"  [root {f.root}]" if len(report.roots) > 1 and f.root else ""
            lines.append(f"{tag:8s} {f.rule_id}  {f.resource}  ({where}){root}")
            lines.append(f"         {f.message if f.decided else 'could not decide: ' + f.message}")
            if f.suppressed:
                lines.append(f"         reason: {f.suppression_reason}")
            elif f.fix and f.decided:
                lines.append(f"         fix: {f.fix}")
            if f.help_uri and f.source == "spotkit" and not f.suppressed:
                lines.append(f"         docs: {f.help_uri}")
    if report.not_inspected:
        if lines:
            lines.append("")
        lines.append("Not inspected (module sources that are not local directories; pass a plan from 'terraform show -json' to check them)")
        for m in report.not_inspected:
            version = f" {m.version}" if m.version else ""
            lines.append(f"         {m.module}  source {m.source}{version}  ({m.file})")
    c = report.counts()
    if lines:
        lines.append("")
    undecided = f", {len(report.undecided)} undecided" if report.undecided else ""
    lines.append(f"{len(report.files)} file(s) checked: {c['error']} error(s), {c['warning']} warning(s), "
                 f"{c['info']} info, {len(report.suppressed)} suppressed{undecided}")
    if report.no_spot_capacity:
        lines.append(report.no_spot_line())
    if report.general_left_to_checkov:
        lines.append(f"{report.general_left_to_checkov} general finding(s) of spotkit left out: checkov ran and covers them")
    lines.append(report.checkov_detail)
    return "\n".join(line for line in lines if line is not None)
