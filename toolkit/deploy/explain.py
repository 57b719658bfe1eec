"""Terraform failures spotkit can explain with the command that fixes them.

- **A stale state lock** (``Error acquiring the state lock``): the lock's ID, who took it, and
  ``cd WORKDIR && terraform force-unlock ID`` for when no Terraform runs on that state any more.
- **"already exists"** for a resource the stack declares: it exists in the account but not in the
  state (an apply was killed before Terraform wrote its state). The provider's error gives the
  resource address (``with ADDRESS,``) and, for most types, the id Terraform imports it by; the
  explanation is ``cd WORKDIR && terraform import 'ADDRESS' 'ID'``, which adopts it.

``explain(text, workdir, flavor)`` returns an ``Explanation`` (what happened, what to run) or None.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Explanation:
    message: str
    hint: str


@dataclass(frozen=True)
class Existing:
    """One resource that already exists: its address in the stack and the id to import it by (None: unknown)."""

    address: str
    resource_id: str | None
    lookup: str | None = None  # a shell command that prints the id, when the error names the resource but not its id


# Where the provider's error names the id of the existing resource (the import id of its type).
_ID_PATTERNS = (
    re.compile(r"File system '(fs-[0-9a-f]+)' already exists"),
    re.compile(r'FileSystemId:\s*"(fs-[0-9a-f]+)"'),
    re.compile(r"Role with name ([\w+=,.@-]+?)\.? already exists"),
    re.compile(r"Instance Profile ([\w+=,.@-]+?)\.? already exists", re.I),
    re.compile(r"Table already exists: ([\w.-]+)"),
    re.compile(r"Function already exist(?:s)?: ([\w-]+)"),
)
# Errors that name the resource but not its import id: (pattern, shell command that prints the id).
_LOOKUPS = (
    (re.compile(r"File system with (\S+?)\.? already exists"),
     "aws efs describe-file-systems --creation-token {0} --query 'FileSystems[0].FileSystemId' --output text"),
    (re.compile(r"creation token '([^']+)'"),
     "aws efs describe-file-systems --creation-token {0} --query 'FileSystems[0].FileSystemId' --output text"),
)
# Provider v5 names the resource it was creating: "creating EFS File System (spotkit-data): ..."
_CREATING = re.compile(r"creating [A-Za-z0-9 ]+? \(([^()\s]+)\)")
# Types whose import id is the name the provider puts in "creating X (NAME)".
_IMPORT_BY_NAME = {"aws_iam_role", "aws_iam_instance_profile", "aws_dynamodb_table", "aws_lambda_function",
                   "aws_cloudwatch_log_group", "aws_s3_bucket", "aws_autoscaling_group", "aws_efs_file_system",
                   "aws_cloudwatch_event_rule", "aws_ssm_parameter", "aws_ecs_cluster", "aws_iam_policy"}
_ALREADY = re.compile(r"already exist|AlreadyExists|AlreadyOwnedByYou|\.Duplicate", re.I)
_WITH = re.compile(r"^\s*with ([A-Za-z0-9_.\[\]\"-]+),\s*$", re.M)


def _diagnostics(text: str) -> list[str]:
    """Terraform's error blocks, each from its ``Error:`` line to the next."""
    parts = re.split(r"^(?=(?:\u2502 )?Error: )", text, flags=re.M)
    return [p for p in parts if p.lstrip("\u2502 ").startswith("Error: ")]


def already_existing(text: str) -> list[Existing]:
    """Every "already exists" error in Terraform's output, with its address and, where the error says, its id."""
    found: list[Existing] = []
    for block in _diagnostics(text):
        if not _ALREADY.search(block):
            continue
        with_line = _WITH.search(block)
        if not with_line:
            continue
        address = with_line.group(1)
        rtype = address.split(".")[-2] if "." in address else address
        rid = None
        for pattern in _ID_PATTERNS:
            m = pattern.search(block)
            if m:
                rid = m.group(1)
                break
        if rid is None and rtype in _IMPORT_BY_NAME:
            m = _CREATING.search(block)
            rid = m.group(1) if m else None
        lookup = None
        if rid is None:
            for pattern, command in _LOOKUPS:
                m = pattern.search(block)
                if m:
                    lookup = command.format(shlex.quote(m.group(1)))
                    break
        if all(e.address != address for e in found):
            found.append(Existing(address, rid, lookup))
    return found


def stale_lock(text: str) -> dict[str, str] | None:
    """The ``Lock Info`` of an ``Error acquiring the state lock`` (ID, Path, Operation, Who, Created...)."""
    if "Error acquiring the state lock" not in text:
        return None
    info = {}
    for key in ("ID", "Path", "Operation", "Who", "Version", "Created", "Info"):
        m = re.search(rf"^\s*(?:\u2502\s*)?{key}:\s*(.*?)\s*$", text, re.M)
        if m:
            info[key] = m.group(1)
    return info


def explain(text: str, workdir: str | Path, flavor: str = "terraform") -> Explanation | None:
    workdir = str(workdir)
    cd = f"cd {shlex.quote(workdir)}"
    lock = stale_lock(text)
    if lock is not None:
        lock_id = lock.get("ID", "<ID from the error above>")
        who = ", ".join(f"{k.lower()} {lock[k]}" for k in ("Who", "Operation", "Created") if lock.get(k))
        return Explanation(
            f"the Terraform state in {workdir} is locked (lock ID {lock_id}{', ' + who if who else ''}); "
            "either another Terraform run is working on it, or a run was killed and left its lock",
            f"if that run is still going, wait for it and run the same command again; if it is gone (killed, its "
            f"machine down), release the lock and run again: {cd} && {flavor} force-unlock -force {lock_id}")
    existing = already_existing(text)
    if existing:
        listed = ", ".join(f"{e.address} ({e.resource_id or 'id not in the error'})" for e in existing)
        commands = " && ".join(f"{flavor} import {shlex.quote(e.address)} {_id_argument(e)}" for e in existing)
        unknown = [e.address for e in existing if not e.resource_id and not e.lookup]
        looked_up = [e for e in existing if not e.resource_id and e.lookup]
        extra = (" (the id is looked up with the AWS CLI; add --endpoint-url for an emulator)" if looked_up else "")
        extra += (f" (replace <ID> with the id of the existing {', '.join(a.split('.')[-2] for a in unknown)}: "
                 "see the error above or the AWS console)") if unknown else ""
        return Explanation(
            f"{len(existing)} resource(s) this stack declares already exist in the account but are not in its "
            f"Terraform state (an earlier apply was probably killed before it wrote its state): {listed}",
            f"adopt them into the state, then run the same command again: {cd} && {commands}{extra}")
    return None


def _id_argument(e: Existing) -> str:
    if e.resource_id:
        return shlex.quote(e.resource_id)
    if e.lookup:
        return f'"$({e.lookup})"'
    return "<ID>"
