"""The policies of each principal of a synthesized stack, with Terraform's references resolved to what the
emulator's account holds, and the bridge to the evaluator (``evaluate.mjs``: @cloud-copilot/iam-simulate).

References are resolved from the synthesized document itself (a queue's ARN from its name, the account,
region and partition of the emulator); one that cannot be resolved raises ``Unresolved`` naming it, so a
policy is never evaluated with a hole in it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.support.iam.recorder import ACCOUNT, PARTITION, IamRequest

HERE = Path(__file__).resolve().parent
REGION = "us-east-1"
_REF = re.compile(r"\$\{([a-z0-9_]+(?:\.[A-Za-z0-9_-]+)+)\}")


class Unresolved(AssertionError):
    pass


def principal_arn(principal: str) -> str:
    return f"arn:{PARTITION}:sts::{ACCOUNT}:assumed-role/spotkit-{principal}/session"


def _name(body: dict, fallback: str) -> str:
    return body.get("name") or (body.get("name_prefix", "") + "0001") or fallback


def _resolve_ref(doc: dict, ref: str) -> str:
    parts = ref.split(".")
    if parts[0] == "data":
        kind, attr = parts[1], parts[-1]
        return {("aws_partition", "partition"): PARTITION, ("aws_region", "name"): REGION,
                ("aws_region", "region"): REGION, ("aws_caller_identity", "account_id"): ACCOUNT}.get(
            (kind, attr)) or _fail(ref)
    kind, key, attr = parts[0], parts[1], parts[-1]
    body = ((doc.get("resource") or {}).get(kind) or {}).get(key)
    if body is None:
        _fail(ref)
    name = _name(body, key)
    arns = {
        "aws_sqs_queue": f"arn:{PARTITION}:sqs:{REGION}:{ACCOUNT}:{name}",
        "aws_dynamodb_table": f"arn:{PARTITION}:dynamodb:{REGION}:{ACCOUNT}:table/{name}",
        "aws_cloudwatch_log_group": f"arn:{PARTITION}:logs:{REGION}:{ACCOUNT}:log-group:{name}",
        "aws_s3_bucket": f"arn:{PARTITION}:s3:::{body.get('bucket') or body.get('bucket_prefix', 'bucket-') + '0001'}",
        "aws_efs_file_system": f"arn:{PARTITION}:elasticfilesystem:{REGION}:{ACCOUNT}:file-system/fs-00000001",
        "aws_efs_access_point": f"arn:{PARTITION}:elasticfilesystem:{REGION}:{ACCOUNT}:access-point/fsap-00000001",
        "aws_iam_role": f"arn:{PARTITION}:iam::{ACCOUNT}:role/{name}",
        "aws_sqs_queue_url": f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{name}",
    }
    if attr == "arn" and kind in arns:
        return arns[kind]
    if attr in ("name", "id") and kind in ("aws_dynamodb_table", "aws_sqs_queue", "aws_iam_role",
                                           "aws_cloudwatch_log_group"):
        return name
    if attr == "url" and kind == "aws_sqs_queue":
        return arns["aws_sqs_queue_url"]
    return _fail(ref)


def _fail(ref: str):
    raise Unresolved(f"cannot resolve ${{{ref}}} to a value of the emulator's account: add it to "
                     "tests/support/iam/policies.py")


def resolve(doc: dict, text: str) -> str:
    return _REF.sub(lambda m: _resolve_ref(doc, m.group(1)), text)


def inline_policies(doc: dict, policy_name: str) -> list[dict]:
    """Every ``aws_iam_role_policy`` named ``policy_name``, resolved: [{name, policy}]."""
    out = []
    for key, body in ((doc.get("resource") or {}).get("aws_iam_role_policy") or {}).items():
        if body.get("name") == policy_name:
            out.append({"name": f"{policy_name} ({key})", "policy": json.loads(resolve(doc, body["policy"]))})
    if not out:
        raise AssertionError(f"no aws_iam_role_policy named {policy_name!r} in the synthesized stack")
    return out


def every_policy(doc: dict) -> list[dict]:
    """Every inline and customer-managed policy the stack synthesizes, resolved."""
    res = doc.get("resource") or {}
    out = []
    for kind in ("aws_iam_role_policy", "aws_iam_policy"):
        for key, body in (res.get(kind) or {}).items():
            out.append({"name": f"{kind}.{key}", "policy": json.loads(resolve(doc, body["policy"]))})
    return out


# --- the evaluator ------------------------------------------------------------------------------

@dataclass
class Decision:
    request: IamRequest
    decision: str
    detail: dict

    @property
    def allowed(self) -> bool:
        return self.decision == "Allowed"

    def explain(self, policies: list[dict]) -> str:
        """The denial, and the statement that should have allowed it (the one matching the action)."""
        lines = [f"DENIED ({self.decision}) {self.request.describe()}",
                 f"  context: {json.dumps(self.request.context, sort_keys=True)}"]
        if self.detail.get("errors"):
            lines.append(f"  evaluator errors: {json.dumps(self.detail['errors'])[:800]}")
        candidates = [e for e in self.detail.get("explains") or [] if e.get("actionMatch")]
        for e in candidates:
            sid = e.get("identifier")
            statement = next((s for p in policies for s in p["policy"]["Statement"] if s.get("Sid") == sid), None)
            why = [k for k in ("resourceMatch", "conditionMatch") if e.get(k) is False]
            lines.append(f"  statement {sid} should allow it but does not match on {', '.join(why) or 'principal'}: "
                         f"{json.dumps(statement)}")
        if not candidates:
            lines.append("  no statement of the principal's policies names this action")
        return "\n".join(lines)


def node_bridge(payload: dict) -> dict:
    node = shutil.which("node")
    if node is None or not (HERE / "node_modules" / "@cloud-copilot" / "iam-simulate").is_dir():
        raise AssertionError("the IAM evaluator is not installed: run 'npm ci --prefix tests/support/iam' "
                             "(Node.js 20; make iam does it)")
    result = subprocess.run([node, str(HERE / "evaluate.mjs")], input=json.dumps(payload), capture_output=True,
                            text=True, timeout=300, cwd=HERE)
    if result.returncode != 0:
        raise AssertionError(f"evaluate.mjs failed: {result.stderr[-2000:]}")
    return json.loads(result.stdout)


def evaluate(requests: list[tuple[IamRequest, list[dict]]]) -> list[Decision]:
    """Each (request, the policies of its principal) through iam-simulate; one Node process for all."""
    payload = {"mode": "simulate", "requests": [
        {"id": i, "principal": principal_arn(r.call.principal), "account": ACCOUNT, "action": r.action,
         "resource": r.resource, "context": r.context, "policies": policies,
         "untyped": bool(re.fullmatch(r"arn:[^:]+:ssm:[^:]+::document/AWS-[A-Za-z0-9_.-]+", r.resource))}
        for i, (r, policies) in enumerate(requests)]}
    results = node_bridge(payload)["results"] if requests else []
    return [Decision(requests[res["id"]][0], res["decision"], res) for res in results]


def record_proven(decisions: list[Decision]) -> None:
    """Append each allowed (principal, action) pair to ``$SPOTKIT_IAM_PROVEN`` when set (``make iam`` counts them)."""
    import os

    path = os.environ.get("SPOTKIT_IAM_PROVEN")
    if not path:
        return
    with open(path, "a") as f:
        for d in decisions:
            if d.allowed:
                f.write(f"{d.request.call.principal}\t{d.request.action}\n")


def lint(policies: list[dict]) -> list[dict]:
    return node_bridge({"mode": "lint", "policies": policies})["findings"]
