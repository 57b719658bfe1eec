"""``spotkit check``: spot rules (SPOT001...) plus checkov over Terraform HCL and JSON, plan JSON and Karpenter NodePools."""

from pathlib import Path
from typing import Any, Iterable, Mapping

from spotkit.check.engine import run_check_on_paths
from spotkit.check.report import CheckFailed, CheckReport, Finding, fail_if_needed
from spotkit.check.rules import RULES, Rule

__all__ = ["run_check_on_paths", "check_before_plan", "CheckFailed", "CheckReport", "Finding", "RULES", "Rule"]


def check_before_plan(paths: Iterable[str | Path], config: Mapping[str, Any] | None = None) -> CheckReport:
    """What ``spotkit plan`` runs first: the spotkit rules (checkov off, it is slow and optional);
    raises ``CheckFailed`` (exit 1) on any unsuppressed error, else returns the report."""
    report = run_check_on_paths([str(p) for p in paths], config=config, checkov="off")
    fail_if_needed(report, "error")
    return report
