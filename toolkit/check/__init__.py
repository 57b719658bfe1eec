"""``spotkit check``: spot-safety rules (SPOT001...) plus checkov over Terraform JSON and plan JSON."""

from toolkit.check.engine import run_check_on_paths
from toolkit.check.report import CheckReport, Finding
from toolkit.check.rules import RULES, Rule

__all__ = ["run_check_on_paths", "CheckReport", "Finding", "RULES", "Rule"]
