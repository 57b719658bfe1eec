"""Run checkov (the optional ``check`` extra) on the same files and turn its findings into ours.

checkov is found as ``$SPOTKIT_CHECKOV`` or ``checkov`` on PATH, else as the importable module
(``python -m checkov.main``). It is heavy (~200 packages), so it is not part of the dev extra: when it
is absent the check says so and runs the spotkit rules alone.

checkov 3.3's ``terraform_json`` parser raises "this method receives only dicts" on the
``terraform`` block of any Terraform JSON that sets ``required_version`` (a string), which every
cdktn synth does; checkov then reports a parsing error and no findings. We scan a copy of each file
without the ``terraform`` block's non-block attributes (the settings no checkov rule reads) and
report findings against the original path.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from spotkit.check.hcl import display_path
from spotkit.check.loader import is_plan_json

INSTALL_HINT = ("install it on its own (pipx install checkov, or a separate venv) and point SPOTKIT_CHECKOV at it; in spotkit's own dev venv it would downgrade boto3")
SEVERITY_MAP = {"CRITICAL": "error", "HIGH": "error", "MEDIUM": "warning", "LOW": "info", "INFO": "info"}
DEFAULT_SEVERITY = "warning"  # checkov's open-source checks carry no severity without a platform key


@dataclass
class CheckovFinding:
    check_id: str
    title: str
    file: str
    resource: str
    severity: str
    guideline: str | None = None
    line: int | None = None


@dataclass
class CheckovRun:
    status: str  # "ran", "absent", "disabled", "failed"
    detail: str = ""
    findings: list[CheckovFinding] = field(default_factory=list)
    parsing_errors: list[str] = field(default_factory=list)


def find_checkov() -> list[str] | None:
    """The command line that starts checkov, or None when it is not installed."""
    explicit = os.environ.get("SPOTKIT_CHECKOV")
    if explicit:
        return [explicit]
    on_path = shutil.which("checkov")
    if on_path:
        return [on_path]
    if importlib.util.find_spec("checkov") is not None:
        return [sys.executable, "-m", "checkov.main"]
    return None


def _sanitized_copy(src: Path, dest_dir: Path, index: int) -> tuple[Path, str]:
    doc = json.loads(src.read_text(encoding="utf-8"))
    if is_plan_json(doc):
        dest = dest_dir / f"{index}.plan.json"
        dest.write_text(json.dumps(doc), encoding="utf-8")
        return dest, "terraform_plan"
    tf = doc.get("terraform")
    if isinstance(tf, dict):
        doc["terraform"] = {k: v for k, v in tf.items() if isinstance(v, dict)}
    dest = dest_dir / str(index) / src.name
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(doc), encoding="utf-8")
    return dest, "terraform_json"


def _repair_address(resource: str, names: dict[str, list[tuple[str, set[str]]]], evaluated: list[str]) -> str:
    """checkov's terraform_json runner names resources ``resource.<name>`` without the type; find the
    address: the only resource of that name, else the one holding the attributes checkov evaluated."""
    candidates = names.get(resource.split(".", 1)[1], [])
    if len(candidates) == 1:
        return candidates[0][0]
    wanted = {str(k).split("/")[0] for k in evaluated}
    matching = [address for address, keys in candidates if wanted and wanted <= keys]
    return matching[0] if len(matching) == 1 else resource


def parse_output(text: str, path_map: dict[str, str], names: dict[str, dict[str, list[tuple[str, set[str]]]]] | None = None) -> tuple[list[CheckovFinding], list[str]]:
    """Parse ``checkov -o json`` output (one report object or a list of them).

    ``path_map`` maps scanned paths back to the user's paths; ``names`` maps a file to
    {resource name: [(address, top-level attribute names)]}, to repair checkov's ``resource.<name>`` ids.
    """
    text = text.strip()
    if not text:
        return [], []
    data: Any = json.loads(text)
    reports = data if isinstance(data, list) else [data]
    findings: list[CheckovFinding] = []
    parsing_errors: list[str] = []
    for report in reports:
        results = report.get("results") if isinstance(report, dict) else None
        if not results:
            continue  # a bare summary: nothing was scanned
        for p in results.get("parsing_errors") or []:
            parsing_errors.append(path_map.get(str(p), str(p)))
        for f in results.get("failed_checks") or []:
            scanned = str(f.get("file_abs_path") or f.get("file_path") or "")
            file = path_map.get(scanned, scanned)
            resource = str(f.get("resource") or "")
            if resource.startswith("resource.") and names:
                resource = _repair_address(resource, names.get(file, {}), (f.get("check_result") or {}).get("evaluated_keys") or [])
            lines = f.get("file_line_range") or [None]
            sev = SEVERITY_MAP.get(str(f.get("severity") or "").upper(), DEFAULT_SEVERITY)
            findings.append(CheckovFinding(check_id=str(f.get("check_id")), title=str(f.get("check_name") or ""),
                                           file=file, resource=resource, severity=sev,
                                           guideline=f.get("guideline"), line=lines[0] if lines and lines[0] else None))
    return findings, parsing_errors


def run_checkov(files: Sequence[str], names: dict[str, dict[str, list[tuple[str, set[str]]]]] | None = None,
                mode: str = "auto", timeout: float = 600, directories: Sequence[str] = ()) -> CheckovRun:
    """Run checkov on ``files`` (Terraform JSON / plan JSON) and ``directories`` (HCL root modules, with
    checkov's own ``terraform`` framework, which follows local modules itself).
    ``mode``: auto (run when installed), on (must run), off."""
    if mode == "off":
        return CheckovRun("disabled", "checkov skipped (--no-checkov)")
    cmd = find_checkov()
    if cmd is None:
        return CheckovRun("absent", f"checkov is not installed, so general security checks were skipped; {INSTALL_HINT}")
    with tempfile.TemporaryDirectory(prefix="spotkit-checkov-") as tmp:
        tmpdir = Path(tmp)
        path_map: dict[str, str] = {}
        by_framework: dict[str, list[str]] = {}
        for i, f in enumerate(files):
            copy, framework = _sanitized_copy(Path(f), tmpdir, i)
            path_map[str(copy)] = str(f)
            path_map[str(copy.resolve())] = str(f)
            by_framework.setdefault(framework, []).append(str(copy))
        findings: list[CheckovFinding] = []
        parsing_errors: list[str] = []
        runs = [(framework, [a for p in paths for a in ("-f", p)]) for framework, paths in by_framework.items()]
        for d in directories:
            for tf in Path(d).rglob("*.tf"):
                path_map[str(tf.resolve())] = str(display_path(tf))
            runs.append(("terraform", ["-d", str(d)]))
        for framework, targets in runs:
            args = [*cmd, "-o", "json", "--skip-download", "--framework", framework, "--compact", *targets]
            try:
                proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                                      env={**os.environ, "BC_SKIP_MAPPING": "TRUE"})
            except subprocess.TimeoutExpired:
                return CheckovRun("failed", f"checkov did not finish in {timeout:.0f} s")
            try:
                got, errors = parse_output(proc.stdout, path_map, names)
            except json.JSONDecodeError:
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
                return CheckovRun("failed", f"checkov exited {proc.returncode} without JSON output: {tail[0]}")
            findings += got
            parsing_errors += errors
    parts = ([f"{len(files)} file(s)"] if files or not directories else []) + \
        ([f"{len(directories)} HCL director{'y' if len(directories) == 1 else 'ies'}"] if directories else [])
    what = " and ".join(parts)
    detail = f"checkov ran on {what}: {len(findings)} failed check(s)"
    if parsing_errors:
        detail += f"; it could not parse {', '.join(parsing_errors)}"
    return CheckovRun("ran", detail, findings, parsing_errors)
