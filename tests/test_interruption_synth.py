"""Synthesis of the interruption event routing (modules/interruption_events/) and its wiring into the
training stack: the six rules' patterns, the encrypted queue with its DLQ and policy, the Lambda packaged
from toolkit/ at synthesis, IAM without wildcard actions, and the FIS template."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import pytest

from spotkit.constructs.interruption_events import InterruptionEvents, InterruptionEventsSettings, build_lambda_source
from spotkit.stacks.training import TrainingConfig, TrainingStack
from tests.support.synth import build_stack, one, resources, synth_construct
from tests.support.tf_validate import needs_terraform, terraform_validate
from spotkit.errors import ValidationError


@pytest.fixture(scope="module")
def training():
    """GIVEN the training stack with default settings (one synthesis shared by the module)."""
    doc, stack = build_stack(TrainingStack, TrainingConfig())
    return doc, stack


@pytest.fixture(scope="module")
def custom():
    """GIVEN the construct with a KMS key, early replacements and two groups."""
    settings = InterruptionEventsSettings(kms_key_arn="arn:aws:kms:us-east-1:123456789012:key/abc",
                                          start_replacement_on_rebalance=True, ecs_clusters=("gpu",),
                                          fis_selection_mode="PERCENT(25)", fis_duration_before_interruption="PT5M")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return synth_construct(lambda st: InterruptionEvents(st, "ie", name="llm", groups=["llm-a", "llm-b"],
                                                             settings=settings))


def _patterns(doc) -> dict[str, dict]:
    return {r["name"]: json.loads(r["event_pattern"]) for r in resources(doc, "aws_cloudwatch_event_rule").values()}


def _ref(doc, rtype: str, prefix: str, attr: str = "arn", kind: str = "resource") -> str:
    """``${rtype.<logical id>.attr}`` for the one block of ``rtype`` whose logical id starts with ``prefix``."""
    [key] = [k for k in (doc.get(kind) or {}).get(rtype, {}) if k.startswith(prefix)]
    return f"${{{'data.' if kind == 'data' else ''}{rtype}.{key}.{attr}}}"


def _policies(doc) -> list[dict]:
    out = [json.loads(p["policy"]) for p in resources(doc, "aws_iam_role_policy").values()]
    return out


def test_six_rules_with_their_patterns_scoped_to_the_group(training):
    doc, _ = training
    # THEN each of the six warnings has a rule with the exact pattern
    assert _patterns(doc) == {
        "spotkit-training-spot-interruption": {"source": ["aws.ec2"], "detail-type": ["EC2 Spot Instance Interruption Warning"]},
        "spotkit-training-rebalance": {"source": ["aws.ec2"], "detail-type": ["EC2 Instance Rebalance Recommendation"]},
        "spotkit-training-state-change": {"source": ["aws.ec2"], "detail-type": ["EC2 Instance State-change Notification"],
                                          "detail": {"state": ["stopping", "shutting-down", "stopped", "terminated"]}},
        "spotkit-training-scheduled-change": {"source": ["aws.health"], "detail-type": ["AWS Health Event"],
                                              "detail": {"service": ["EC2"], "eventTypeCategory": ["scheduledChange"]}},
        "spotkit-training-asg-terminate": {"source": ["aws.autoscaling"],
                                           "detail-type": ["EC2 Instance-terminate Lifecycle Action"],
                                           "detail": {"AutoScalingGroupName": ["spotkit-training"],
                                                      "LifecycleTransition": ["autoscaling:EC2_INSTANCE_TERMINATING"]}},
        "spotkit-training-capacity-reservation": {"source": ["aws.ec2"],
                                                  "detail-type": ["EC2 Capacity Reservation Instance Interruption Warning"]},
    }
    # AND every rule targets the queue
    targets = resources(doc, "aws_cloudwatch_event_target").values()
    assert len(targets) == 6
    assert {t["arn"] for t in targets} == {_ref(doc, "aws_sqs_queue", "interruptions_queue_")}


def test_queue_is_encrypted_with_a_dlq_and_redrive(training):
    doc, _ = training
    queues = {q["name"]: q for q in resources(doc, "aws_sqs_queue").values()}
    main, dlq = queues["spotkit-training-interruptions"], queues["spotkit-training-interruptions-dlq"]
    assert main["sqs_managed_sse_enabled"] is True and dlq["sqs_managed_sse_enabled"] is True
    assert main["message_retention_seconds"] == 86400
    assert dlq["message_retention_seconds"] == 1209600
    # the visibility timeout is 6x the Lambda's timeout, as AWS advises for an SQS event source
    assert main["visibility_timeout_seconds"] == 2160
    assert one(doc, "aws_lambda_function")["timeout"] == 360
    assert json.loads(main["redrive_policy"]) == {"deadLetterTargetArn": _ref(doc, "aws_sqs_queue", "interruptions_dlq_"),
                                                  "maxReceiveCount": 5}
    allow = json.loads(one(doc, "aws_sqs_queue_redrive_allow_policy")["redrive_allow_policy"])
    assert allow == {"redrivePermission": "byQueue", "sourceQueueArns": [_ref(doc, "aws_sqs_queue", "interruptions_queue_")]}


def test_queue_policy_admits_only_the_eventbridge_rules(training):
    doc, _ = training
    policy = json.loads(one(doc, "aws_sqs_queue_policy")["policy"])
    allow, deny = policy["Statement"]
    assert allow["Principal"] == {"Service": "events.amazonaws.com"}
    assert (allow["Effect"], allow["Action"]) == ("Allow", "sqs:SendMessage")
    rule_arns = sorted(f"${{aws_cloudwatch_event_rule.{k}.arn}}" for k in resources(doc, "aws_cloudwatch_event_rule"))
    assert sorted(allow["Condition"]["ArnEquals"]["aws:SourceArn"]) == rule_arns
    assert (deny["Effect"], deny["Principal"], deny["Action"]) == ("Deny", "*", "sqs:SendMessage")
    assert sorted(deny["Condition"]["ArnNotEquals"]["aws:SourceArn"]) == rule_arns


def test_lambda_is_packaged_from_toolkit_and_consumes_the_queue(training):
    doc, _ = training
    fn = one(doc, "aws_lambda_function")
    assert (fn["runtime"], fn["handler"]) == ("python3.12", "spotkit.runtime.interruption.lambda_entry.handler")
    assert fn["filename"].startswith("assets/interruptions_handler-code_") and fn["filename"].endswith("/archive.zip")
    assert fn["environment"]["variables"]["SPOTKIT_GROUPS"] == "spotkit-training"
    assert fn["environment"]["variables"]["SPOTKIT_DRY_RUN"] == "false"
    mapping = one(doc, "aws_lambda_event_source_mapping")
    assert mapping["function_response_types"] == ["ReportBatchItemFailures"]
    assert mapping["event_source_arn"] == _ref(doc, "aws_sqs_queue", "interruptions_queue_")
    assert not list(Path(__file__).resolve().parents[1].rglob("toolkit/**/*.zip"))  # no hand-built zip


def test_staged_lambda_code_imports_on_its_own(tmp_path):
    # GIVEN the directory the asset zips
    staged = build_lambda_source()
    assert sorted(p.relative_to(staged).as_posix() for p in staged.rglob("*.py")) == sorted(
        ["spotkit/__init__.py", "spotkit/runtime/__init__.py", "spotkit/runtime/notice.py"]
        + [f"spotkit/runtime/interruption/{p.name}"
           for p in (Path(__file__).resolve().parents[1] / "toolkit" / "runtime" / "interruption").glob("*.py")])
    # WHEN a fresh interpreter with only that directory (and boto3) imports the entry point
    code = "import spotkit.runtime.interruption.lambda_entry as m; print(m.handler.__name__)"
    # (-B: no __pycache__ written into the staged package, which would make the next build rebuild it)
    result = subprocess.run([sys.executable, "-I", "-B", "-c", f"import sys; sys.path.insert(0, {str(staged)!r}); {code}"],
                            capture_output=True, text=True, timeout=60)
    # THEN it loads (nothing outside the package is needed)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "handler"


def test_iam_has_no_wildcard_actions(training, custom):
    for doc in (training[0], custom[0]):
        for policy in _policies(doc):
            for statement in policy["Statement"]:
                actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                assert not [a for a in actions if "*" in a], statement


def test_handler_policy_scopes_mutations(training):
    doc, _ = training
    [handler] = [p for p in _policies(doc) if any(s.get("Sid") == "Journal" for s in p["Statement"])]
    by_sid = {s["Sid"]: s for s in handler["Statement"]}
    assert by_sid["CompleteLifecycle"]["Resource"] == [
        f"arn:{_ref(doc, 'aws_partition', 'interruptions_partition_', 'partition', 'data')}:autoscaling:"
        f"{_ref(doc, 'aws_region', 'interruptions_region_', 'name', 'data')}:"
        f"{_ref(doc, 'aws_caller_identity', 'interruptions_account_', 'account_id', 'data')}:"
        "autoScalingGroup:*:autoScalingGroupName/spotkit-training"]
    assert by_sid["CheckpointOwnInstances"]["Condition"] == {"StringEquals": {"aws:ResourceTag/spotkit:group": ["spotkit-training"]}}
    # resources are "*" only for read calls AWS does not scope
    unscoped = [s for s in handler["Statement"] if "*" in s["Resource"]]
    assert [s["Sid"] for s in unscoped] == ["ReadOnlyUnscoped"]
    assert all(a.split(":")[1].startswith(("Describe", "List", "Get")) for a in unscoped[0]["Action"])
    # the lifecycle deadline is read from the group's hook (its heartbeat timeout)
    assert "autoscaling:DescribeLifecycleHooks" in unscoped[0]["Action"]
    assert "StartReplacement" not in by_sid  # only when start_replacement_on_rebalance


def test_fis_template_interrupts_the_group_and_stops_on_handler_failure(training):
    doc, _ = training
    fis = one(doc, "aws_fis_experiment_template")
    [action] = fis["action"]
    assert action["action_id"] == "aws:ec2:send-spot-instance-interruptions"
    assert action["parameter"] == [{"key": "durationBeforeInterruption", "value": "PT2M"}]
    assert action["target"] == {"key": "SpotInstances", "value": "group-spot-instances"}
    [target] = fis["target"]
    assert (target["resource_type"], target["selection_mode"]) == ("aws:ec2:spot-instance", "COUNT(1)")
    assert target["resource_tag"] == [{"key": "spotkit:group", "value": "spotkit-training"}]
    assert fis["stop_condition"] == [{"source": "aws:cloudwatch:alarm",
                                      "value": _ref(doc, "aws_cloudwatch_metric_alarm", "interruptions_handler-failing_")}]
    alarm = one(doc, "aws_cloudwatch_metric_alarm")
    assert (alarm["metric_name"], alarm["dimensions"]) == (
        "ApproximateNumberOfMessagesVisible", {"QueueName": _ref(doc, "aws_sqs_queue", "interruptions_dlq_", "name")})
    fis_role = [r for r in resources(doc, "aws_iam_role").values() if "fis.amazonaws.com" in r["assume_role_policy"]]
    assert len(fis_role) == 1
    assert fis["role_arn"].startswith("${aws_iam_role.interruptions_fis-role_")


def test_journal_table_has_ttl_and_encryption(training):
    doc, _ = training
    table = one(doc, "aws_dynamodb_table")
    assert (table["hash_key"], table["range_key"], table["billing_mode"]) == ("pk", "sk", "PAY_PER_REQUEST")
    assert table["ttl"] == {"attribute_name": "expires_at", "enabled": True}
    assert table["server_side_encryption"] == {"enabled": True}
    assert table["point_in_time_recovery"] == {"enabled": True}


def test_custom_settings_reach_the_resources(custom):
    doc, _ = custom
    queues = list(resources(doc, "aws_sqs_queue").values())
    assert {q.get("kms_master_key_id") for q in queues} == {"arn:aws:kms:us-east-1:123456789012:key/abc"}
    assert all("sqs_managed_sse_enabled" not in q for q in queues)
    templates = resources(doc, "aws_fis_experiment_template").values()
    assert sorted(t["target"][0]["resource_tag"][0]["value"] for t in templates) == ["llm-a", "llm-b"]
    assert {t["action"][0]["parameter"][0]["value"] for t in templates} == {"PT5M"}
    assert {t["target"][0]["selection_mode"] for t in templates} == {"PERCENT(25)"}
    asg_rule = [json.loads(r["event_pattern"]) for r in resources(doc, "aws_cloudwatch_event_rule").values()
                if r["name"] == "llm-asg-terminate"][0]
    assert asg_rule["detail"]["AutoScalingGroupName"] == ["llm-a", "llm-b"]
    handler = [p for p in _policies(doc) if any(s.get("Sid") == "Journal" for s in p["Statement"])][0]
    sids = {s["Sid"]: s for s in handler["Statement"]}
    assert sids["StartReplacement"]["Action"] == ["autoscaling:SetDesiredCapacity"]
    assert sids["EcsList"]["Resource"][0].endswith(":cluster/gpu")
    assert sids["QueueKey"]["Action"] == ["kms:Decrypt", "kms:GenerateDataKey"]


def test_queue_mode_creates_no_lambda_and_warns():
    with pytest.warns(UserWarning, match=r"handler_mode='queue' creates no Lambda"):
        doc, ie = synth_construct(lambda st: InterruptionEvents(
            st, "ie", name="qq", groups=["g1"], settings=InterruptionEventsSettings(handler_mode="queue",
                                                                                   create_fis_templates=False)))
    assert resources(doc, "aws_lambda_function") == {}
    assert resources(doc, "aws_fis_experiment_template") == {}
    assert len(resources(doc, "aws_cloudwatch_event_rule")) == 6


@pytest.mark.parametrize("kwargs, groups, message", [
    ({}, [], "InterruptionEvents 'x1': groups is empty: give the names of the Auto Scaling groups whose interruptions to handle"),
    ({"message_retention_seconds": 120}, ["g"],
     "InterruptionEvents 'x1': message_retention_seconds must be between 300 and 1209600 (got 120): a warning must outlive its two minutes"),
    ({"dlq_retention_seconds": 3600}, ["g"],
     "InterruptionEvents 'x1': dlq_retention_seconds (3600) must be at least message_retention_seconds (86400) and at most "
     "1209600, or messages expire in the dead-letter queue before anyone sees them"),
    ({"lambda_timeout_seconds": 901}, ["g"],
     "InterruptionEvents 'x1': lambda_timeout_seconds must be between 30 and 900 (got 901); 360 covers the default 300 s drain"),
    ({"fis_duration_before_interruption": "PT1M"}, ["g"],
     "InterruptionEvents 'x1': fis_duration_before_interruption must be PT2M to PT15M (got 'PT1M')"),
    ({"handler_mode": "ec2"}, ["g"], "InterruptionEvents 'x1': handler_mode 'ec2' is not one of lambda, queue"),
    ({"fis_selection_mode": "SOME"}, ["g"],
     "InterruptionEvents 'x1': fis_selection_mode must be COUNT(n), PERCENT(n) or ALL (got 'SOME')"),
])
def test_invalid_settings_fail_before_any_resource(kwargs, groups, message):
    from cdktn import Testing

    from spotkit.stacks.base import SpotkitStack, StackConfig

    stack = SpotkitStack(Testing.app(), "t", StackConfig(name="t"))
    with pytest.raises(ValidationError) as err:
        InterruptionEvents(stack, "ie", name="x1", groups=groups, settings=InterruptionEventsSettings(**kwargs))
    assert str(err.value) == message
    assert [c.node.id for c in stack.node.children] == ["aws"]  # nothing but the provider


def test_training_stack_without_interruptions_has_no_rules():
    doc, _ = build_stack(TrainingStack, TrainingConfig(interruptions=None))
    assert resources(doc, "aws_cloudwatch_event_rule") == {}
    assert "interruption_queue_url" not in doc.get("output", {})


@pytest.mark.terraform
def test_training_stack_validates_with_terraform(training, tmp_path):
    needs_terraform()
    result = terraform_validate(training[0], tmp_path / "training")
    assert result.returncode == 0, result.stdout + result.stderr
