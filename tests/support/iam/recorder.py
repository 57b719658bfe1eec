"""One recorder of every AWS call the product makes against the embedded emulator (docs/iam.md).

It is a WSGI middleware around the moto server's app (``tests/support/moto_server.py`` installs it with
``start_moto_server(recorder=...)``), so calls from subprocesses (the Lambda package in its own runtime, the
agent, the AWS CLI of the boot part) are seen like the test process's own.

Who calls: the access key id of the request's SigV4 credential. Each principal of a synthesized stack gets
its own key (``PRINCIPAL_KEYS``); set it as ``AWS_ACCESS_KEY_ID`` for the process that plays that principal.
Calls signed with the harness key (``testing``: the tests building their world) are recorded as harness
calls and not evaluated.

What a call is to IAM: ``iam_requests(call)`` turns one recorded call into the authorization requests AWS
evaluates for it: the action as IAM names it, each resource ARN (one request per resource IAM checks: an
``ssm:SendCommand`` is checked on the document and on every instance; ``RunInstances`` on the image, the
subnet, the launch template, ... and ``ec2:CreateTags`` with ``ec2:CreateAction`` for its tag
specifications), and the context its conditions read (``aws:RequestedRegion``, ``aws:ResourceTag/*`` read
from the emulator when the call was made, ``aws:RequestTag/*``, ``aws:TagKeys``, ``ec2:CreateAction``...).
An operation with no mapping here raises ``Unmapped`` naming it: never skipped.
"""

from __future__ import annotations

import io
import json
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import parse_qs, urlparse

ACCOUNT = "123456789012"  # moto's account for every access key the tests use
PARTITION = "aws"
HARNESS_KEY = "testing"

# One access key id per principal of the synthesized stacks (the tests' stand-in for the role's session).
PRINCIPAL_KEYS = {
    "lambda-handler": "AKIASPOTKITLAMBDA001",
    "instance-role": "AKIASPOTKITINSTANCE1",
    "karpenter-controller": "AKIASPOTKITKARPENTR1",
    "operator": "AKIASPOTKITOPERATOR1",
}
PRINCIPAL_BY_KEY = {v: k for k, v in PRINCIPAL_KEYS.items()}

_CREDENTIAL = re.compile(r"Credential=([^/]+)/\d{8}/([^/]+)/([^/]+)/aws4_request")


class Unmapped(AssertionError):
    """A recorded operation the recorder cannot express as IAM requests (a test failure, with its name)."""


@dataclass
class Call:
    principal: str          # a PRINCIPAL_KEYS name, "harness", or "unknown:<key>"
    service: str            # the SigV4 signing name
    operation: str          # the API operation (e.g. "TerminateInstances")
    region: str
    params: dict
    tags: dict = field(default_factory=dict)   # resource id/arn -> its tags, read from the emulator when called
    status: int = 0
    source_instance: str = ""   # the instance whose role credentials signed the call (instance-role only)


@dataclass
class Recorder:
    calls: list[Call] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def wrap(self, app: Callable) -> Callable:
        def middleware(environ, start_response):
            call = _parse(environ)
            if call is None:
                return app(environ, start_response)

            def recording_start(status, headers, *rest):
                call.status = int(status.split()[0])
                return start_response(status, headers, *rest)

            try:
                call.tags = _resource_tags(call)
            except Exception as exc:  # noqa: BLE001 - an unreadable world is a failure of the proof, said later
                call.tags = {"__error__": repr(exc)}
            with self._lock:
                self.calls.append(call)
            return app(environ, recording_start)
        return middleware

    def product_calls(self) -> list[Call]:
        """Every call not made by the harness; a call signed with a key of no known principal fails (its
        policy would be unknown, so it could not be proven)."""
        with self._lock:
            calls = [c for c in self.calls if c.principal != "harness"]
        strangers = sorted({f"{c.principal}: {c.service} {c.operation}" for c in calls if c.principal.startswith("unknown:")})
        if strangers:
            raise AssertionError("calls signed by no known principal (tests/support/iam/recorder.py PRINCIPAL_KEYS): "
                                 + "; ".join(strangers))
        return calls

    def clear(self) -> None:
        with self._lock:
            self.calls.clear()


def _parse(environ) -> Call | None:
    auth = environ.get("HTTP_AUTHORIZATION", "")
    m = _CREDENTIAL.search(auth)
    if not m:
        return None  # moto's own API (/moto-api/reset), unsigned
    key, region, service = m.groups()
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    target = environ.get("HTTP_X_AMZ_TARGET")
    params: dict = {}
    if target:
        operation = target.split(".")[-1]
        params = json.loads(body or b"{}")
    else:
        query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()} \
            if "x-www-form-urlencoded" in environ.get("CONTENT_TYPE", "") else {}
        params = {**query, **form}
        operation = params.pop("Action", None)
        if operation is None:  # REST protocols
            operation, params = _rest_operation(service, environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""), body)
    principal = "harness" if key == HARNESS_KEY else PRINCIPAL_BY_KEY.get(key, f"unknown:{key}")
    # An instance role's credentials come from the instance's metadata: AWS adds ec2:SourceInstanceARN to
    # every call they sign. The tests give the instance's id in the session token ("instance:i-...").
    token = environ.get("HTTP_X_AMZ_SECURITY_TOKEN", "")
    source = token.split(":", 1)[1] if token.startswith("instance:") else ""
    return Call(principal=principal, service=service, operation=operation, region=region, params=params,
                source_instance=source)


def _rest_operation(service: str, method: str, path: str, body: bytes) -> tuple[str, dict]:
    parts = [p for p in path.split("/") if p]
    if service == "fis":
        rest = {("POST", "experiments", 1): "StartExperiment", ("GET", "experiments", 2): "GetExperiment",
                ("GET", "experiments", 1): "ListExperiments",
                ("GET", "experimentTemplates", 1): "ListExperimentTemplates",
                ("POST", "experimentTemplates", 1): "CreateExperimentTemplate",
                ("GET", "experimentTemplates", 2): "GetExperimentTemplate",
                ("DELETE", "experimentTemplates", 2): "DeleteExperimentTemplate",
                ("GET", "experiments", 3): "ListExperimentResolvedTargets"}
        name = rest.get((method, parts[0] if parts else "", len(parts)))
        if name:
            params = json.loads(body or b"{}") if body else {}
            if len(parts) >= 2:
                params["id"] = parts[1]
            return name, params
    if service == "s3" and method == "GET" and len(parts) >= 2:
        return "GetObject", {"Bucket": parts[0], "Key": "/".join(parts[1:])}
    return f"{method} {path}", {}


# --- the emulator's state that conditions read ----------------------------------------------------

def _ids(params: dict, prefix: str) -> list[str]:
    """Query-protocol list members: InstanceId.1, InstanceId.2 ... (or a JSON list under the prefix)."""
    if isinstance(params.get(prefix), list):
        return list(params[prefix])
    return [v for k, v in sorted(params.items()) if re.fullmatch(rf"{re.escape(prefix)}(\.member)?\.\d+", k)]


def _resource_tags(call: Call) -> dict:
    from moto.autoscaling.models import autoscaling_backends
    from moto.ec2.models import ec2_backends

    tags: dict = {}
    ec2 = ec2_backends[ACCOUNT][call.region]
    ids = set()
    for key in ("InstanceId", "VolumeId", "ResourceId", "InstanceIds", "SnapshotId"):
        if key in call.params and isinstance(call.params[key], str):
            ids.add(call.params[key])
        ids.update(_ids(call.params, key))
    for target in call.params.get("Targets", []) if isinstance(call.params.get("Targets"), list) else []:
        ids.update(target.get("Values", []))
    ids.update(call.params.get("InstanceIds", []) if isinstance(call.params.get("InstanceIds"), list) else [])
    for rid in ids:
        if isinstance(rid, str) and rid.startswith(("i-", "vol-", "snap-")):
            tags[rid] = dict(ec2.tags.get(rid, {}))
    lt_id = call.params.get("MixedInstancesPolicy.LaunchTemplate.LaunchTemplateSpecification.LaunchTemplateId") \
        or call.params.get("LaunchTemplate.LaunchTemplateId")
    if lt_id and lt_id in ec2.launch_templates:
        data = ec2.launch_templates[lt_id].latest_version().data
        profile = (data.get("IamInstanceProfile") or {})
        role = ""
        if profile:
            from moto.iam.models import iam_backends

            name = profile.get("Name") or (profile.get("Arn") or "").rsplit("/", 1)[-1]
            found = iam_backends[ACCOUNT]["global"].instance_profiles.get(name)
            role = found.roles[0].arn if found and found.roles else f"unknown-role-of-profile:{name}"
        tags[f"launch-template:{lt_id}"] = {"image": data.get("ImageId", ""), "role": role}
    group = call.params.get("AutoScalingGroupName")
    if group:
        asg = autoscaling_backends[ACCOUNT][call.region].autoscaling_groups.get(group)
        tags[f"asg:{group}"] = {t["Key"]: t["Value"] for t in (asg.tags if asg else [])}
    if call.service == "fis":
        from moto.fis.models import fis_backends

        fis = fis_backends[ACCOUNT][call.region]
        for tid in filter(None, (call.params.get("id"), call.params.get("experimentTemplateId"))):
            template = fis.experiment_templates.get(tid)
            if template is not None:
                tags[f"fis-template:{tid}"] = dict(fis.tagger.get_tag_dict_for_resource(template.arn))
    if call.service == "elasticloadbalancing" and call.params.get("TargetGroupArn"):
        from moto.elbv2.models import elbv2_backends

        arn = call.params["TargetGroupArn"]
        tags[arn] = dict(elbv2_backends[ACCOUNT][call.region].tagging_service.get_tag_dict_for_resource(arn))
    return tags


# --- IAM's view of a call -----------------------------------------------------------------------

@dataclass
class IamRequest:
    call: Call
    action: str
    resource: str
    context: dict[str, Any]

    def describe(self) -> str:
        return f"{self.call.principal}: {self.call.service} {self.call.operation} -> {self.action} on {self.resource}"


def _arn(service: str, resource: str, region: str, account: str = ACCOUNT) -> str:
    return f"arn:{PARTITION}:{service}:{region}:{account}:{resource}"


def _tag_context(tags: dict[str, str], prefix: str = "aws:ResourceTag/") -> dict:
    return {f"{prefix}{k}": v for k, v in tags.items()}


def _asg_arn(call: Call, name: str) -> str:
    # AWS evaluates group-level actions on autoScalingGroup:<uuid>:autoScalingGroupName/<name>
    return _arn("autoscaling", f"autoScalingGroup:00000000-0000-0000-0000-000000000000:autoScalingGroupName/{name}",
                call.region)


def _queue_arn(call: Call) -> str:
    url = call.params.get("QueueUrl", "")
    parts = urlparse(url).path.strip("/").split("/")
    account, name = (parts[0], parts[1]) if len(parts) >= 2 else (ACCOUNT, parts[-1])
    return _arn("sqs", name, call.region, account)


def _instance_requests(call: Call, action: str, ids: list[str]) -> list[tuple[str, str, dict]]:
    return [(action, _arn("ec2", f"instance/{i}", call.region), _tag_context(call.tags.get(i, {}))) for i in ids]


def _tag_specifications(params: dict, resource_type: str) -> dict[str, str]:
    """TagSpecification.N.ResourceType / .Tag.M.Key / .Value of a query-protocol request, for one type."""
    tags = {}
    for k, v in params.items():
        m = re.fullmatch(r"TagSpecification\.(\d+)\.ResourceType", k)
        if m and v == resource_type:
            n = m.group(1)
            for kk, key in params.items():
                mm = re.fullmatch(rf"TagSpecification\.{n}\.Tag\.(\d+)\.Key", kk)
                if mm:
                    tags[key] = params.get(f"TagSpecification.{n}.Tag.{mm.group(1)}.Value", "")
    return tags


def _launch_template_use(call: Call) -> list[tuple[str, str, dict]]:
    """A group created or updated with a launch template is checked against the caller's right to use it
    (EC2 Auto Scaling's launch template permissions): ec2:RunInstances through that template (modelled on
    the template, the instance and the template's image, each with ``ec2:LaunchTemplate`` and
    ``ec2:IsLaunchTemplateResource``) and iam:PassRole of the template's instance role to EC2."""
    p, region = call.params, call.region
    lt_id = p.get("MixedInstancesPolicy.LaunchTemplate.LaunchTemplateSpecification.LaunchTemplateId") \
        or p.get("LaunchTemplate.LaunchTemplateId")
    if not lt_id:
        if any(k.startswith(("MixedInstancesPolicy.LaunchTemplate.LaunchTemplateSpecification", "LaunchTemplate."))
               for k in p):
            raise Unmapped(f"autoscaling {call.operation} names its launch template by name: map it to its id")
        return []
    facts = call.tags.get(f"launch-template:{lt_id}")
    if facts is None:
        raise Unmapped(f"autoscaling {call.operation}: launch template {lt_id} was not found in the emulator")
    template = _arn("ec2", f"launch-template/{lt_id}", region)
    through = {"ec2:LaunchTemplate": template, "ec2:IsLaunchTemplateResource": "true"}
    out = [("ec2:RunInstances", template, through), ("ec2:RunInstances", _arn("ec2", "instance/*", region), through)]
    if facts["image"]:
        out.append(("ec2:RunInstances", _arn("ec2", f"image/{facts['image']}", region, ""), through))
    if facts["role"]:
        out.append(("iam:PassRole", facts["role"], {"iam:PassedToService": "ec2.amazonaws.com"}))
    return out


def _requests_for(call: Call) -> list[tuple[str, str, dict]]:
    p, op, svc, region = call.params, call.operation, call.service, call.region
    wildcard = lambda: [(f"{_prefix(svc)}:{op}", "*", {})]  # noqa: E731 - actions AWS does not scope
    if svc == "ec2":
        if op in ("DescribeInstances", "DescribeVolumes", "DescribeTags", "DescribeLaunchTemplates",
                  "DescribeLaunchTemplateVersions", "DescribeSubnets", "DescribeInstanceTypes",
                  "GetSpotPlacementScores", "DescribeSpotPriceHistory", "DescribeImages", "DescribeSnapshots"):
            return wildcard()
        if op in ("TerminateInstances", "StopInstances", "StartInstances", "RebootInstances"):
            return _instance_requests(call, f"ec2:{op}", _ids(p, "InstanceId"))
        if op == "CreateTags":
            out = []
            keys = sorted({v for k, v in p.items() if re.fullmatch(r"Tag\.\d+\.Key", k)})
            req = {f"aws:RequestTag/{p[k]}": p.get(k.replace('.Key', '.Value'), '') for k in p
                   if re.fullmatch(r"Tag\.\d+\.Key", k)}
            for rid in _ids(p, "ResourceId"):
                kind = {"i": "instance", "vol": "volume", "snap": "snapshot"}.get(rid.split("-")[0])
                if kind is None:
                    raise Unmapped(f"ec2 CreateTags on {rid}: no ARN shape for this resource id")
                arn = _arn("ec2", f"{kind}/{rid}", region, "" if kind == "snapshot" else ACCOUNT)
                out.append(("ec2:CreateTags", arn, {**_tag_context(call.tags.get(rid, {})), **req, "aws:TagKeys": keys}))
            return out
        if op in ("CreateVolume", "CreateSnapshot"):
            kind = {"CreateVolume": "volume", "CreateSnapshot": "snapshot"}[op]
            new = _arn("ec2", f"{kind}/*", region, "" if kind == "snapshot" else ACCOUNT)
            tags = _tag_specifications(p, kind)
            request = {**{f"aws:RequestTag/{k}": v for k, v in tags.items()}, "aws:TagKeys": sorted(tags)}
            out = [(f"ec2:{op}", new, request)]
            source = p.get("SnapshotId") if op == "CreateVolume" else p.get("VolumeId")
            if source:
                src_kind = "snapshot" if op == "CreateVolume" else "volume"
                out.append((f"ec2:{op}", _arn("ec2", f"{src_kind}/{source}", region, "" if src_kind == "snapshot" else ACCOUNT),
                            _tag_context(call.tags.get(source, {}))))
            if tags:  # tags given at creation are authorized as ec2:CreateTags with ec2:CreateAction
                out.append(("ec2:CreateTags", new, {**request, "ec2:CreateAction": op}))
            return out
        if op in ("AttachVolume", "DetachVolume"):
            vol, inst = p.get("VolumeId"), p.get("InstanceId")
            out = [(f"ec2:{op}", _arn("ec2", f"volume/{vol}", region), _tag_context(call.tags.get(vol, {})))]
            if inst:
                out.append((f"ec2:{op}", _arn("ec2", f"instance/{inst}", region), _tag_context(call.tags.get(inst, {}))))
            return out
    if svc == "autoscaling":
        if op in ("DescribeAutoScalingGroups", "DescribeScalingActivities", "DescribeLifecycleHooks",
                  "DescribeAutoScalingInstances", "DescribeTags"):
            return wildcard()
        if op in ("CompleteLifecycleAction", "RecordLifecycleActionHeartbeat", "SetDesiredCapacity",
                  "UpdateAutoScalingGroup", "SetInstanceProtection", "TerminateInstanceInAutoScalingGroup",
                  "SetInstanceHealth"):
            group = p.get("AutoScalingGroupName")
            if not group:
                raise Unmapped(f"autoscaling {op} without AutoScalingGroupName: the group ARN is unknown")
            out = [(f"autoscaling:{op}", _asg_arn(call, group), _tag_context(call.tags.get(f"asg:{group}", {})))]
            return out + _launch_template_use(call)
        if op in ("CreateOrUpdateTags", "DeleteTags"):
            out = []
            for k in p:
                m = re.fullmatch(r"Tags\.member\.(\d+)\.ResourceId", k)
                if m:
                    group = p[k]
                    out.append((f"autoscaling:{op}", _asg_arn(call, group),
                                {**_tag_context(call.tags.get(f"asg:{group}", {})),
                                 "aws:TagKeys": [p[f"Tags.member.{m.group(1)}.Key"]]}))
            return out
    if svc == "sqs":
        return [(f"sqs:{op}", _queue_arn(call), {})]
    if svc == "dynamodb":
        if op in ("BatchWriteItem", "BatchGetItem"):
            return [(f"dynamodb:{op}", _arn("dynamodb", f"table/{t}", region), {}) for t in p.get("RequestItems", {})]
        table = p.get("TableName")
        if not table:
            raise Unmapped(f"dynamodb {op} without TableName")
        return [(f"dynamodb:{op}", _arn("dynamodb", f"table/{table}", region), {})]
    if svc == "ssm":
        if op in ("ListCommands", "GetCommandInvocation", "ListCommandInvocations"):
            return wildcard()
        if op == "SendCommand":
            doc = p["DocumentName"]
            out = [("ssm:SendCommand", _arn("ssm", f"document/{doc}", region, "") if doc.startswith("AWS-")
                    else _arn("ssm", f"document/{doc}", region), {})]
            return out + _instance_requests(call, "ssm:SendCommand", list(p.get("InstanceIds", [])))
    if svc == "elasticloadbalancing":
        if op.startswith("Describe"):
            return wildcard()
        if op in ("DeregisterTargets", "RegisterTargets"):
            arn = p["TargetGroupArn"]
            return [(f"elasticloadbalancing:{op}", arn, _tag_context(call.tags.get(arn, {})))]
    if svc == "ecs":
        if op == "ListClusters":
            return wildcard()
        cluster = p.get("cluster", "default")
        name = cluster.split("/")[-1]
        if op == "ListContainerInstances":
            return [("ecs:ListContainerInstances", _arn("ecs", f"cluster/{name}", region), {})]
        if op in ("DescribeContainerInstances", "UpdateContainerInstancesState"):
            return [(f"ecs:{op}", ci if ci.startswith("arn:") else _arn("ecs", f"container-instance/{name}/{ci}", region), {})
                    for ci in p.get("containerInstances", [])]
    if svc == "fis":
        template = lambda tid: _arn("fis", f"experiment-template/{tid}", region)  # noqa: E731
        if op == "ListExperimentTemplates":
            return wildcard()
        if op in ("GetExperimentTemplate", "DeleteExperimentTemplate"):
            return [(f"fis:{op}", template(p["id"]), _tag_context(call.tags.get(f"fis-template:{p['id']}", {})))]
        if op in ("GetExperiment", "ListExperimentResolvedTargets"):
            return [(f"fis:{op}", _arn("fis", f"experiment/{p['id']}", region), {})]
        if op == "CreateExperimentTemplate":
            tags = p.get("tags") or {}
            request = {**{f"aws:RequestTag/{k}": v for k, v in tags.items()}, "aws:TagKeys": sorted(tags)}
            out = [("fis:CreateExperimentTemplate", template("*"), request)]
            out += [("fis:CreateExperimentTemplate", _arn("fis", f"action/{a['actionId']}", region), {})
                    for a in (p.get("actions") or {}).values()]
            # the template's role is passed to FIS
            out.append(("iam:PassRole", p["roleArn"], {"iam:PassedToService": "fis.amazonaws.com"}))
            return out
        if op == "StartExperiment":
            tid = p["experimentTemplateId"]
            tags = p.get("tags") or {}
            return [("fis:StartExperiment", template(tid), _tag_context(call.tags.get(f"fis-template:{tid}", {}))),
                    ("fis:StartExperiment", _arn("fis", "experiment/*", region),
                     {**{f"aws:RequestTag/{k}": v for k, v in tags.items()}, "aws:TagKeys": sorted(tags)})]
    if svc == "sts" and op == "GetCallerIdentity":
        return [("sts:GetCallerIdentity", "*", {})]
    raise Unmapped(f"{svc} {op}: no IAM mapping in tests/support/iam/recorder.py (add the action, its resource ARNs "
                   "and the context its conditions read)")


def _prefix(signing_name: str) -> str:
    return {"monitoring": "cloudwatch", "events": "events"}.get(signing_name, signing_name)


def iam_requests(call: Call) -> list[IamRequest]:
    if "__error__" in call.tags:
        raise Unmapped(f"{call.service} {call.operation}: the resource tags could not be read: {call.tags['__error__']}")
    base = {"aws:RequestedRegion": call.region, "aws:SecureTransport": "true"}
    if call.source_instance:
        base["ec2:SourceInstanceARN"] = _arn("ec2", f"instance/{call.source_instance}", call.region)
    return [IamRequest(call, action, resource, {**base, **context}) for action, resource, context in _requests_for(call)]
