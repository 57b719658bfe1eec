"""Findings, the report, and how a run of the check decides its exit code."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from toolkit.errors import ToolkitError

SEVERITY_RANK = {"error": 3, "warning": 2, "info": 1}
FAIL_ON = ("error", "warning", "info", "never")


class CheckFailed(ToolkitError):
    """Unsuppressed findings at or above the --fail-on severity: exit 1."""


def fail_if_needed(report: "CheckReport", fail_on: str = "error") -> None:
    failing = report.failing(fail_on)
    if failing:
        ids = ", ".join(sorted({f.rule_id for f in failing}))
        raise CheckFailed(f"check found {len(failing)} finding(s) at or above {fail_on}: {ids}",
                          hint="fix them (each finding says how), or suppress one with a reason (see 'spotkit check --help')")


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


@dataclass
class CheckReport:
    files: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    checkov_status: str = "disabled"
    checkov_detail: str = ""
    rules_run: list[str] = field(default_factory=list)

    @property
    def active(self) -> list[Finding]:
        return [f for f in self.findings if not f.suppressed]

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
        from toolkit.output import to_jsonable

        return {
            "files": self.files,
            "summary": {**self.counts(), "suppressed": len(self.suppressed)},
            "checkov": {"status": self.checkov_status, "detail": self.checkov_detail},
            "findings": [to_jsonable(f) for f in self.findings],
        }


def render_text(report: CheckReport, show_suppressed: bool = False) -> str:
    lines: list[str] = []
    order = sorted(report.findings, key=lambda f: (-SEVERITY_RANK.get(f.severity, 0), f.file, f.rule_id, f.resource))
    for f in order:
        if f.suppressed and not show_suppressed:
            continue
        tag = "suppressed" if f.suppressed else f.severity.upper()
        lines.append(f"{tag:8s} {f.rule_id}  {f.resource}  ({f.file})")
        lines.append(f"         {f.message}")
        if f.suppressed:
            lines.append(f"         reason: {f.suppression_reason}")
        elif f.fix:
            lines.append(f"         fix: {f.fix}")
    c = report.counts()
    if lines:
        lines.append("")
    lines.append(f"{len(report.files)} file(s) checked: {c['error']} error(s), {c['warning']} warning(s), "
                 f"{c['info']} info, {len(report.suppressed)} suppressed")
    lines.append(report.checkov_detail)
    return "\n".join(line for line in lines if line is not None)
