"""The interruption handler's Lambda package as Lambda runs it, and every AWS call it makes evaluated
against the Lambda role's policy by a real IAM evaluator (docs/iam.md).

GIVEN the training stack synthesized (its zip, runtime, handler, environment and role policy), a world in
the emulator (the group's instances, target group, lifecycle hook, journal, queue) and real EventBridge
samples (tests/fixtures/events_iam/SOURCES.md) delivered through the queue,
WHEN the zip is unpacked into a clean runtime (the runtime's Python, the runtime's boto3, nothing else) and
its handler entry is invoked with the SQS batch, signing as the Lambda role,
THEN it answers a partial batch response, loads nothing from outside the package, and iam-simulate allows
every call it made under the synthesized role policy.
"""

from __future__ import annotations

import copy
import json
import os
import uuid
from pathlib import Path

import pytest

from tests.support.iam import lambda_runtime as rt
from tests.support.iam.policies import evaluate, inline_policies, record_proven, resolve
from tests.support.iam.recorder import PRINCIPAL_KEYS, Recorder, iam_requests
from tests.support.moto_server import start_moto_server
from tests.support.synth import one, resources

FIXTURES = Path(__file__).parent / "fixtures" / "events_iam"
HANDLER_POLICY = "spotkit-interruption-handler"


@pytest.fixture(scope="module")
def training(tmp_path_factory):
    """The training stack synthesized as `spotkit synth` writes it (assets included)."""
    from spotkit.synth import synthesize

    out = tmp_path_factory.mktemp("synth")
    [path] = synthesize(["training"], out, use_cache=False, cache_folder=None)
    return json.loads(path.read_text()), path.parent


@pytest.fixture(scope="module")
def invocation(training, tmp_path_factory):
    doc, stack_dir = training
    fn = one(doc, "aws_lambda_function")
    env = {k: resolve(doc, v) for k, v in fn["environment"]["variables"].items()}
    group = env["SPOTKIT_GROUPS"]
    recorder = Recorder()
    server = start_moto_server(recorder=recorder)
    server.reset()  # (moto's state is per process: start from an empty account)
    try:
        world = _world(server, doc, env, group)
        python, note = rt.interpreter(fn["runtime"])
        runtime_dir = rt.runtime_boto3(python, fn["runtime"])
        task = rt.unpack(stack_dir / fn["filename"], tmp_path_factory.mktemp("task"))
        recorder.clear()
        out = rt.invoke(python, task, runtime_dir, fn["handler"], world["event"], {
            **env, "AWS_ACCESS_KEY_ID": PRINCIPAL_KEYS["lambda-handler"], "AWS_SECRET_ACCESS_KEY": "x",
            "AWS_SESSION_TOKEN": "lambda", "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": server.url, "AWS_LAMBDA_FUNCTION_NAME": fn["function_name"]})
        targets = {d["Target"]["Id"] for d in server.client("elbv2").describe_target_health(
            TargetGroupArn=world["target_group"])["TargetHealthDescriptions"]}
        yield {"doc": doc, "fn": fn, "out": out, "note": note, "world": world, "targets": targets,
               "calls": recorder.product_calls(), "task": task}
    finally:
        server.stop()


def _sample(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def _world(server, doc: dict, env: dict, group: str) -> dict:
    """The stack's resources in the emulator (made with the harness key, not recorded as the product's)."""
    from spotkit.runtime.interruption.store import create_journal_table

    ec2, elbv2, asg, sqs = (server.client(s) for s in ("ec2", "elbv2", "autoscaling", "sqs"))
    vpc = ec2.create_vpc(CidrBlock="10.30.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.30.0.0/20", AvailabilityZone="us-east-1a")["Subnet"]["SubnetId"]
    tags = [{"ResourceType": "instance", "Tags": [{"Key": "spotkit:group", "Value": group}]}]
    ids = [i["InstanceId"] for i in ec2.run_instances(ImageId="ami-12c6146b", MinCount=3, MaxCount=3, SubnetId=subnet,
                                                       InstanceType="m5.large", TagSpecifications=tags)["Instances"]]
    tg = elbv2.create_target_group(Name="training-tg", Protocol="HTTP", Port=80, VpcId=vpc, TargetType="instance",
                                   Tags=[{"Key": "spotkit:name", "Value": "spotkit-training"}])["TargetGroups"][0]
    elbv2.register_targets(TargetGroupArn=tg["TargetGroupArn"], Targets=[{"Id": i} for i in ids])
    lt = ec2.create_launch_template(LaunchTemplateName="training-lt",
                                    LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "m5.large"})
    asg.create_auto_scaling_group(AutoScalingGroupName=group, MinSize=0, MaxSize=4, DesiredCapacity=0,
                                  VPCZoneIdentifier=subnet,
                                  LaunchTemplate={"LaunchTemplateId": lt["LaunchTemplate"]["LaunchTemplateId"]})
    asg.put_lifecycle_hook(AutoScalingGroupName=group, LifecycleHookName="spotkit-drain",
                           LifecycleTransition="autoscaling:EC2_INSTANCE_TERMINATING", HeartbeatTimeout=300)
    create_journal_table(server.client("dynamodb"), env["SPOTKIT_JOURNAL_TABLE"])
    [queue] = [q["name"] for q in resources(doc, "aws_sqs_queue").values() if q.get("name", "").endswith("-interruptions")]
    url = sqs.create_queue(QueueName=queue)["QueueUrl"]
    spot, rebalance, lifecycle = (copy.deepcopy(_sample(n)) for n in
                                  ("spot-itn.json", "rebalance-recommendation.json", "asg-lifecycle-terminate.json"))
    spot["detail"]["instance-id"] = ids[0]
    spot["resources"] = [f"arn:aws:ec2:us-east-1b:instance/{ids[0]}"]
    rebalance["detail"]["instance-id"] = ids[1]
    rebalance["resources"] = [f"arn:aws:ec2:us-east-1b:instance/{ids[1]}"]
    lifecycle["detail"].update(AutoScalingGroupName=group, LifecycleHookName="spotkit-drain", EC2InstanceId=ids[2],
                               LifecycleActionToken=str(uuid.uuid4()))
    for body in (spot, rebalance, lifecycle):
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps(body))
    got = []
    while len(got) < 3:
        got += sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
    arn = f"arn:aws:sqs:us-east-1:123456789012:{queue}"
    records = [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
                "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {}, "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs", "eventSourceARN": arn, "awsRegion": "us-east-1"} for m in got]
    return {"ids": ids, "target_group": tg["TargetGroupArn"], "event": {"Records": records}, "group": group}


def test_stack_runtime_has_an_interpreter_here(invocation):
    # THEN the handler ran on the runtime's Python version (or the test says which it used instead)
    runtime = invocation["fn"]["runtime"]
    if "no Python" in invocation["note"]:
        pytest.skip(invocation["note"])
    assert invocation["out"]["python"].startswith(runtime.removeprefix("python") + "."), invocation["note"]


def test_zip_runs_in_a_clean_lambda_runtime_with_a_partial_batch_response(invocation):
    out, world = invocation["out"], invocation["world"]
    # THEN the answer is a partial batch response naming only messages of this batch
    result = out["result"]
    assert set(result) == {"batchItemFailures"}
    ids = {r["messageId"] for r in world["event"]["Records"]}
    assert {f["itemIdentifier"] for f in result["batchItemFailures"]} <= ids
    # AND the spot-warned instance left its target group (the handler acted through the emulator)
    targets = invocation["targets"]
    assert world["ids"][0] not in targets and world["ids"][1] in targets
    # AND nothing was imported from outside the package, the runtime's boto3 and the standard library
    assert out["stray"] == []


def test_package_holds_only_the_handler_code(invocation):
    task = invocation["task"]
    files = sorted(p.relative_to(task).as_posix() for p in task.rglob("*") if p.is_file())
    assert "spotkit/runtime/interruption/lambda_entry.py" in files
    assert all(f.startswith("spotkit/") and f.endswith(".py") for f in files), files


def test_every_call_of_the_lambda_is_allowed_by_its_role(invocation):
    calls = [c for c in invocation["calls"] if c.principal == "lambda-handler"]
    # (the handler made the calls a reclaim needs: dedupe, deregistration, lifecycle completion...)
    ops = {(c.service, c.operation) for c in calls}
    assert {("dynamodb", "UpdateItem"), ("elasticloadbalancing", "DeregisterTargets"), ("autoscaling", "CompleteLifecycleAction"),
            ("ec2", "DescribeInstances")} <= ops, sorted(ops)
    policies = inline_policies(invocation["doc"], HANDLER_POLICY)
    requests = [(r, policies) for c in calls for r in iam_requests(c)]
    decisions = evaluate(requests)
    denied = [d for d in decisions if not d.allowed]
    assert not denied, "\n".join(d.explain(policies) for d in denied)
    record_proven(decisions)


# --- the package cache, shared by every checkout and process of the user (issue 26) -----------------

def _build_and_read(cache: str, rounds: int, start, results) -> None:
    """One synthesis's use of the cache, many times: build, then read every file as cdktn's zip does."""
    from spotkit.constructs.interruption_events import build_lambda_source

    start.wait(timeout=60)
    try:
        for _ in range(rounds):
            folder = build_lambda_source(cache_root=Path(cache))
            files = [p for p in sorted(folder.rglob("*")) if p.is_file()]
            for path in files:
                path.read_bytes()
            if not any(p.name == "lambda_entry.py" for p in files):
                raise FileNotFoundError(f"{folder} has no lambda_entry.py")
        results.put("ok")
    except Exception as exc:  # noqa: BLE001 - reported to the test
        results.put(repr(exc))


@pytest.mark.parametrize("tampered", [False, True], ids=["sound-entry", "tampered-entry"])
def test_concurrent_builders_share_the_lambda_package_cache_safely(tmp_path, tampered):
    import multiprocessing

    from spotkit.constructs.interruption_events import build_lambda_source

    # GIVEN one cache folder for every process (as ~/.cache/spotkit/lambda is), with its entry written into
    # by someone (a __pycache__ from running the staged code) in the second case
    cache = tmp_path / "lambda"
    cache.mkdir(mode=0o700)
    entry = build_lambda_source(cache_root=cache)
    if tampered:
        (entry / "spotkit" / "__pycache__").mkdir()
        (entry / "spotkit" / "__pycache__" / "x.pyc").write_bytes(b"\0")
    # WHEN six processes build and read the package at once, many times
    ctx = multiprocessing.get_context("fork")
    start, queue = ctx.Event(), ctx.Queue()
    workers = [ctx.Process(target=_build_and_read, args=(str(cache), 15, start, queue)) for _ in range(6)]
    for w in workers:
        w.start()
    start.set()
    results = [queue.get(timeout=120) for _ in workers]
    for w in workers:
        w.join(timeout=60)
    # THEN every one of them read a whole package every time
    assert results == ["ok"] * 6
    # AND the entry another process may be zipping was never moved away or deleted
    assert entry.is_dir() and (entry / "spotkit" / "runtime" / "interruption" / "lambda_entry.py").is_file()
    # AND a sound entry is reused, not rebuilt: no private copies are left behind
    if not tampered:
        assert sorted(p.name for p in cache.iterdir()) == [entry.name]


# --- what the runtime check refuses ----------------------------------------------------------------

def test_a_package_importing_what_lambda_lacks_fails_naming_the_module(invocation, tmp_path):
    # GIVEN a handler that imports a module of the dev environment (not in the package, not in the runtime)
    task = tmp_path / "task"
    (task / "app").mkdir(parents=True)
    (task / "app" / "__init__.py").write_text("")
    (task / "app" / "entry.py").write_text("import yaml\n\ndef handler(event, context):\n    return {}\n")
    python, _ = rt.interpreter(invocation["fn"]["runtime"])
    runtime_dir = rt.runtime_boto3(python, invocation["fn"]["runtime"])
    # WHEN it is invoked in the clean runtime THEN it fails, naming the module
    with pytest.raises(AssertionError, match="No module named 'yaml'"):
        rt.invoke(python, task, runtime_dir, "app.entry.handler", {}, {})


def test_a_stray_import_from_outside_the_package_is_reported(invocation, tmp_path):
    # GIVEN a handler that reaches into the dev tree by path
    task = tmp_path / "task"
    task.mkdir()
    outside = tmp_path / "devtree"
    outside.mkdir()
    (outside / "helper.py").write_text("X = 1\n")
    (task / "entry.py").write_text(f"import sys\nsys.path.append({str(outside)!r})\nimport helper\n\n"
                                   "def handler(event, context):\n    return {}\n")
    python, _ = rt.interpreter(invocation["fn"]["runtime"])
    out = rt.invoke(python, task, rt.runtime_boto3(python, invocation["fn"]["runtime"]), "entry.handler", {}, {})
    # THEN the module loaded from outside is named
    assert out["stray"] == [str(outside / "helper.py")]


def test_a_zip_over_lambdas_limit_fails(tmp_path, monkeypatch):
    import zipfile

    archive = tmp_path / "archive.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("spotkit/big.py", "x" * 4096)
    monkeypatch.setattr(rt, "UNZIPPED_LIMIT", 1024)
    with pytest.raises(AssertionError, match="4096 bytes unzipped, over Lambda's 1024 byte limit"):
        rt.unpack(archive, tmp_path / "out")
    monkeypatch.setattr(rt, "ZIP_LIMIT", 10)
    with pytest.raises(AssertionError, match="bytes zipped, over Lambda's 10 byte limit"):
        rt.unpack(archive, tmp_path / "out")
