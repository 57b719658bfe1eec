"""SARIF 2.1.0 output (GitHub code scanning and other viewers read it).

One run per tool: spotkit's rules, and checkov's findings when it ran. Suppressed findings stay in
the log with a ``suppressions`` entry carrying the reason, as SARIF intends.
"""

from __future__ import annotations

from pathlib import Path

from spotkit import __version__
from spotkit.check.report import CheckReport, Finding
from spotkit.check.rules import INVALID_SUPPRESSION, RULES

SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"
LEVEL = {"error": "error", "warning": "warning", "info": "note"}


def _uri(path: str) -> str:
    p = Path(path)
    return p.as_posix() if not p.is_absolute() else p.as_uri()


def _result(f: Finding, rule_index: dict[str, int]) -> dict:
    logical = [{"fullyQualifiedName": f.resource, "kind": "resource"}]
    if f.root and f.root != f.file:
        # the root module it was reached from: one module file read by two roots gives two results, told apart here
        logical.append({"fullyQualifiedName": f.root, "kind": "module"})
    location: dict = {"physicalLocation": {"artifactLocation": {"uri": _uri(f.file)}}, "logicalLocations": logical}
    if f.line:
        location["physicalLocation"]["region"] = {"startLine": int(f.line)}
    if not f.decided:
        text = f"Could not decide: {f.message}"
    else:
        text = f.message if f.source == "checkov" or not f.fix else f"{f.message}. Fix: {f.fix}"
    out: dict = {"ruleId": f.rule_id, "level": LEVEL.get(f.severity, "warning") if f.decided else "note",
                 "message": {"text": text}, "locations": [location],
                 "properties": {"category": f.category, "decided": f.decided, **({"root": f.root} if f.root else {})}}
    if f.rule_id in rule_index:
        out["ruleIndex"] = rule_index[f.rule_id]
    if f.suppressed:
        out["suppressions"] = [{"kind": f.suppression_kind or "external", "status": "accepted",
                                "justification": f.suppression_reason or ""}]
    return out


def _spotkit_run(report: CheckReport) -> dict:
    rules = [*RULES, INVALID_SUPPRESSION]
    descriptors = []
    for r in rules:
        d = {"id": r.id, "name": r.title.title().replace(" ", "").replace("-", ""),
             "shortDescription": {"text": r.title}, "help": {"text": r.fix},
             **({"fullDescription": {"text": r.description}} if r.description else {}),
             "defaultConfiguration": {"level": LEVEL[r.severity]},
             # SPOT007 is a spot risk where spot capacity launches, a general one elsewhere
             "properties": {"tags": ["spot", "general", "security"] if r.id == "SPOT007" else [r.category]}}
        if r.help_uri:
            d["helpUri"] = r.help_uri
        descriptors.append(d)
    index = {r.id: i for i, r in enumerate(rules)}
    findings = [f for f in report.findings if f.source == "spotkit"]
    run: dict = {"tool": {"driver": {"name": "spotkit", "version": __version__, "rules": descriptors}},
                 "results": [_result(f, index) for f in findings]}
    notes = [{"level": "note", "message": {"text": f"{m.module} (source {m.source}{' ' + m.version if m.version else ''}) was not "
                                                   "inspected: it is not a local module; pass a plan from 'terraform show -json' to check it"},
              "locations": [{"physicalLocation": {"artifactLocation": {"uri": _uri(m.file)}}}]} for m in report.not_inspected]
    if report.no_spot_capacity:
        notes.append({"level": "note", "message": {"text": report.no_spot_line()}})
    run["invocations"] = [{"executionSuccessful": True, "toolExecutionNotifications": notes}]
    return run


def _checkov_run(report: CheckReport) -> dict:
    findings = [f for f in report.findings if f.source == "checkov"]
    seen: dict[str, int] = {}
    descriptors = []
    for f in findings:
        if f.rule_id not in seen:
            seen[f.rule_id] = len(descriptors)
            d = {"id": f.rule_id, "shortDescription": {"text": f.title or f.rule_id}, "properties": {"tags": ["general"]}}
            if f.help_uri:
                d["helpUri"] = f.help_uri
            descriptors.append(d)
    return {"tool": {"driver": {"name": "checkov", "informationUri": "https://www.checkov.io", "rules": descriptors}},
            "results": [_result(f, seen) for f in findings]}


def to_sarif(report: CheckReport) -> dict:
    runs = [_spotkit_run(report)]
    if report.checkov_status == "ran":
        runs.append(_checkov_run(report))
    return {"$schema": SCHEMA_URI, "version": "2.1.0", "runs": runs}
