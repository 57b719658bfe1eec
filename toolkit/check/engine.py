"""Run the check: load files, apply the rules, merge checkov, apply suppressions.

Suppressions need a reason, and one without a reason (or naming no known rule) is itself an error
(SPOT000), so a suppression can never silently hide a finding:

- inline, on the resource: a tag ``spotkit:skip-check = "SPOT003: one AZ on purpose; SPOT004: ..."``
  (in ``tags``, ``tags_all``, an ASG ``tag`` block or GCP-style ``labels``), or in Terraform JSON the
  comment field ``"//": {"spotkit:skip-check": "SPOT003: reason"}`` (a string or a list of them), or in
  HCL a comment ``# spotkit:skip-check SPOT003: reason`` inside the resource block or on the line above it;
- in the config file (``--config``): ``check: {suppress: [{id: SPOT003, resource: "aws_autoscaling_group.*",
  reason: "..."}]}``; ``resource`` is an address or a glob, default every resource.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any, Iterable, Mapping

from spotkit.check.checkov import run_checkov
from spotkit.check.graph import Resource, ResourceGraph, blocks
from spotkit.check.loader import load_graph
from spotkit.check.report import CheckReport, Finding
from spotkit.check.rules import GENERAL, INVALID_SUPPRESSION, RULES, Undecided, is_rule_id, maybe_spot_capacity, spot_capacity
from spotkit.errors import ConfigError
from spotkit.runtime.notice import TAG_SKIP_CHECK

SKIP_TAG = TAG_SKIP_CHECK


@dataclass(frozen=True)
class Suppression:
    rule_id: str
    resource: str  # address or glob
    reason: str
    kind: str  # "inSource" or "external"
    origin: str  # where it was written, for messages


def _inline_texts(res: Resource) -> list[str]:
    texts: list[Any] = []
    for key in ("tags", "tags_all", "labels"):
        value = res.values.get(key)
        if isinstance(value, dict) and SKIP_TAG in value:
            texts.append(value[SKIP_TAG])
    for tag in blocks(res.values, "tag"):
        if tag.get("key") == SKIP_TAG:
            texts.append(tag.get("value"))
    if isinstance(res.comment, dict) and SKIP_TAG in res.comment:
        value = res.comment[SKIP_TAG]
        texts.extend(value if isinstance(value, list) else [value])
    return [str(t) for t in texts if t is not None]


def parse_inline(text: str) -> list[tuple[str, str]]:
    """``"SPOT003: reason; SPOT004: other"`` -> [(id, reason), ...]; a missing reason gives ""."""
    out = []
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        rule_id, _, reason = part.partition(":")
        out.append((rule_id.strip(), reason.strip()))
    return out


def collect_suppressions(graph: ResourceGraph, config: Mapping[str, Any] | None) -> tuple[list[tuple[Resource | None, Suppression]], list[Finding]]:
    """(resource-bound or config suppressions, SPOT000 findings for invalid ones)."""
    found: list[tuple[Resource | None, Suppression]] = []
    invalid: list[Finding] = []

    def bad(message: str, resource: str, file: str) -> None:
        invalid.append(Finding(INVALID_SUPPRESSION.id, "error", INVALID_SUPPRESSION.title, message,
                               INVALID_SUPPRESSION.fix, resource, file, help_uri=INVALID_SUPPRESSION.help_uri))

    for res in graph.resources:
        for text in _inline_texts(res):
            for rule_id, reason in parse_inline(text):
                if not is_rule_id(rule_id):
                    bad(f"{SKIP_TAG} on {res.address} names {rule_id!r}, not a rule id (SPOT001..., CKV_AWS_...)", res.address, res.file)
                elif not reason:
                    bad(f"{SKIP_TAG} on {res.address} suppresses {rule_id} without a reason", res.address, res.file)
                else:
                    found.append((res, Suppression(rule_id, res.address, reason, "inSource", f"{SKIP_TAG} on {res.address}")))
    section = (config or {}).get("check") or {}
    if not isinstance(section, Mapping):
        raise ConfigError(f"check: expected a mapping with 'suppress', got {section!r}")
    entries = section.get("suppress") or []
    if not isinstance(entries, list):
        raise ConfigError(f"check.suppress: expected a list of {{id, resource, reason}}, got {entries!r}")
    for i, entry in enumerate(entries):
        key = f"check.suppress[{i}]"
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{key}: expected a mapping with id, resource and reason, got {entry!r}")
        unknown = sorted(set(entry) - {"id", "resource", "reason"})
        if unknown:
            raise ConfigError(f"{key}.{unknown[0]}: unknown setting", hint="a suppression has: id, resource, reason")
        rule_id = str(entry.get("id") or "").strip()
        reason = str(entry.get("reason") or "").strip()
        resource = str(entry.get("resource") or "*")
        if not is_rule_id(rule_id):
            bad(f"{key} names {rule_id!r}, not a rule id (SPOT001..., CKV_AWS_...)", resource, "config")
        elif not reason:
            bad(f"{key} suppresses {rule_id} on {resource} without a reason", resource, "config")
        else:
            found.append((None, Suppression(rule_id, resource, reason, "external", key)))
    return found, invalid


def address_matches(address: str, pattern: str) -> bool:
    """Glob match where only ``*`` and ``?`` are wildcards: brackets are literal, as in Terraform
    addresses (``aws_autoscaling_group.workers[*]`` matches every instance, ``module.x["blue"].*``
    everything in one instance)."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, address) is not None


def apply_suppressions(findings: Iterable[Finding], suppressions: list[tuple[Resource | None, Suppression]]) -> None:
    for f in findings:
        for res, s in suppressions:
            if s.rule_id != f.rule_id:
                continue
            if res is not None:
                hit = res.address == f.resource and res.file == f.file
            else:
                hit = address_matches(f.resource, s.resource)
            if hit:
                f.suppressed, f.suppression_reason, f.suppression_kind = True, s.reason, s.kind
                break


def hits(rule, graph: ResourceGraph) -> list[tuple[Resource, str, str, bool, str]]:
    """(resource, message, category, decided, fix) of one rule's run; a hit may carry its own
    category and fix (``(resource, message, category, fix)``), else the rule's apply."""
    out = []
    for hit in rule.check(graph):
        if isinstance(hit, Undecided):
            out.append((hit.resource, hit.message, rule.category, False, rule.fix))
        else:
            res, message, *rest = hit
            category = rest[0] if rest and rest[0] else rule.category
            fix = rest[1] if len(rest) > 1 and rest[1] else rule.fix
            out.append((res, message, category, True, fix))
    return out


def run_rules(graph: ResourceGraph) -> list[Finding]:
    """Every rule over the graph. Groups whose spot share is unknown before apply (``spot_share`` is
    None) are then assumed spot in a second pass: what fires only then is reported as undecided."""
    findings: list[Finding] = []
    seen: set[tuple[str, str, str, str]] = set()
    maybe_spot = {g.address: g for g in maybe_spot_capacity(graph)}
    assumed = replace(graph, assume_spot=frozenset(maybe_spot)) if maybe_spot else None

    def add(rule, res, message, category, decided, fix):
        # one finding per rule and resource instance of one root module: the same module file read by
        # two roots (or two instances of a for_each) gives distinct findings, each with its root
        key = (rule.id, res.config, res.file, res.address)
        if key in seen:
            return
        seen.add(key)
        findings.append(Finding(rule.id, rule.severity, rule.title, message, fix, res.address, res.file,
                                help_uri=rule.help_uri, line=res.line, category=category, decided=decided,
                                root=res.config))

    for rule in RULES:
        for res, message, category, decided, fix in hits(rule, graph):
            add(rule, res, message, category, decided, fix)
        if assumed is not None:
            for res, message, category, decided, fix in hits(rule, assumed):
                groups = [a for a, g in maybe_spot.items() if g.config == res.config and (a == res.address or a in message)]
                if groups:
                    add(rule, res, f"if {groups[0]} runs spot (whether it does is not known before apply): {message}",
                        category, False, fix)
    return findings


def run_check_on_paths(paths: Iterable[str], config: Mapping[str, Any] | None = None,
                       checkov: str = "auto") -> CheckReport:
    """Check Terraform JSON files, directories of them, or plan JSON; ``checkov``: auto | on | off.

    ``config`` is the parsed --config mapping (its ``check`` section holds suppressions).
    """
    from spotkit.errors import MissingDependencyError

    graph = load_graph(paths)
    # a module file read by several roots counts once
    report = CheckReport(files=list(dict.fromkeys(graph.files)), rules_run=[r.id for r in RULES],
                         not_inspected=list(graph.not_inspected),
                         roots=sorted({r.config for r in graph.resources}),
                         spot_capacity=[r.address for r in spot_capacity(graph)],
                         maybe_spot_capacity=[r.address for r in maybe_spot_capacity(graph)])
    report.findings = run_rules(graph)
    names: dict[str, dict[str, list[tuple[str, set[str]]]]] = {}
    for r in graph.resources:
        names.setdefault(r.file, {}).setdefault(r.name, []).append((r.address, set(r.values)))
    json_files = [f for f in graph.files if f not in graph.hcl_files and f not in graph.yaml_files]
    run = run_checkov(json_files, names, mode=checkov, directories=graph.hcl_roots)
    if run.status == "absent" and checkov == "on":
        raise MissingDependencyError("checkov was asked for (--checkov) but is not installed",
                                     hint="pipx install checkov (or SPOTKIT_CHECKOV=/path/to/checkov), or drop --checkov to run the spotkit rules alone")
    report.checkov_status, report.checkov_detail = run.status, run.detail
    if run.status == "ran":
        # general findings (IMDSv1 outside spot...) are checkov's ground: keep one report of them
        general = [f for f in report.findings if f.category == GENERAL and f.source == "spotkit"]
        report.findings = [f for f in report.findings if not (f.category == GENERAL and f.source == "spotkit")]
        report.general_left_to_checkov = len(general)
    for c in run.findings:
        report.findings.append(Finding(c.check_id, c.severity, c.title, c.title, "", c.resource, c.file,
                                       source="checkov", help_uri=c.guideline, line=c.line, category=GENERAL))
    suppressions, invalid = collect_suppressions(graph, config)
    apply_suppressions(report.findings, suppressions)
    report.findings.extend(invalid)
    return report
