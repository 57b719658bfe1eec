"""bench/interruptions_handler: a wave of interruption notices drained through ``spotkit handle-events``
against the moto server, against what a user would write, in the same run.

Each run gets a fresh world (N spotkit-managed instances in one target group and one ECS cluster, the
journal table, a queue with a dead-letter queue after 5 receives), N spot interruption warnings queued at
once plus a duplicate delivery of every tenth one.

- **spotkit**: ``spotkit handle-events --queue-url ... --until-empty`` run as its own process (as a user
  runs it; and so the client and moto each have a core), batches of 10 per receive, ``--concurrency``
  workers.
- **baseline**: what a user would write: one message at a time (receive one, ``Handler.handle_body``,
  delete it), in this process. A single message is a batch of one: the same batched calls as spotkit's
  run, made once per notice instead of once per receive of 10, with no concurrency; what the baseline
  measures is what batching receives and running workers in parallel buy.

AWS calls are counted with a botocore ``before-call`` hook on every client (per operation); the time of
each call as moto answers it is taken from ``before-call`` to ``after-call``. Checked per run: exactly
one checkpoint request (SendCommand instance ids) and one deregistration (DeregisterTargets target ids)
per instance, every target gone, every container instance DRAINING, queue and dead-letter queue empty.

moto is one Python process answering every call (the ThreadedMotoServer here): its time per call is
printed, so a wall time set by the emulator can be told from one set by spotkit. Emulator latency is
not AWS latency: read calls per notice and the ratios, not the absolute seconds.

Before each spotkit run, moto's own time per call for the reads a batch makes is probed one call at a
time (no contention), to show what grows with the fleet in the emulator.

    python -m bench.interruptions_handler [--notices 1000] [--scaling 100,300] [--baseline 100,300] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support import interruption_world as w  # noqa: E402
from spotkit.runtime.notice import CHECKPOINT_HOOK_PATH  # noqa: E402

QUEUE = "bench-interruptions"
DLQ = "bench-interruptions-dlq"


# --- counting calls with botocore events ---------------------------------------------------------

class CallCounter:
    """Counts every AWS call per operation (``before-call``), the instance ids of DeregisterTargets and
    SendCommand, and the time from ``before-call`` to ``after-call`` (what the emulator took)."""

    def __init__(self):
        self.calls: Counter = Counter()
        self.seconds: Counter = Counter()
        self.deregistered: Counter = Counter()
        self.checkpointed: Counter = Counter()
        self._lock = threading.Lock()
        self._local = threading.local()

    def attach(self, client):
        client.meta.events.register("before-parameter-build.*.*", self._params)
        client.meta.events.register("before-call.*.*", self._before)
        client.meta.events.register("after-call.*.*", self._after)
        return client

    def _params(self, event_name, params=None, **_):
        op = event_name.split(".", 2)[2]
        with self._lock:
            if op == "DeregisterTargets":
                self.deregistered.update(t["Id"] for t in (params or {}).get("Targets", []))
            elif op == "SendCommand":
                self.checkpointed.update((params or {}).get("InstanceIds", []))

    def _before(self, event_name, **_):
        _, service, op = event_name.split(".", 2)
        self._local.started = time.perf_counter()
        with self._lock:
            self.calls[f"{service}:{op}"] += 1

    def _after(self, event_name, **_):
        _, service, op = event_name.split(".", 2)
        started = getattr(self._local, "started", None)
        if started is not None:
            with self._lock:
                self.seconds[f"{service}:{op}"] += time.perf_counter() - started

    def to_dict(self) -> dict:
        return {"calls": dict(self.calls), "call_seconds": dict(self.seconds),
                "deregistered": dict(self.deregistered), "checkpointed": dict(self.checkpointed)}


# --- the child: spotkit handle-events with counted clients ---------------------------------------

def child(args) -> None:
    """Runs ``spotkit handle-events`` in this process with every client counted; writes the counts."""
    from spotkit import aws
    from spotkit.cli.main import main as spotkit

    counter = CallCounter()
    real = aws.AwsTarget.client

    def counted(self, service, config=None):
        return counter.attach(real(self, service, config=config))

    aws.AwsTarget.client = counted
    t0 = time.perf_counter()
    try:
        spotkit(["--endpoint-url", args.endpoint, "--region", "us-east-1", "--output", "json", "handle-events",
                 "--queue-url", args.queue_url, "--journal-table", w.TABLE, "--until-empty", "--yes",
                 "--concurrency", str(args.concurrency), "--wait-seconds", "1",
                 "--checkpoint-command", CHECKPOINT_HOOK_PATH])
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise
    Path(args.counts).write_text(json.dumps({**counter.to_dict(), "seconds_in_cli": time.perf_counter() - t0}))


# --- the parent ----------------------------------------------------------------------------------

def setup(server, notices: int):
    server.reset()
    world = w.build_world(server, managed=notices, unmanaged=0)
    sqs = world.clients.get("sqs")
    dlq_url = sqs.create_queue(QueueName=DLQ)["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    url = sqs.create_queue(QueueName=QUEUE, Attributes={
        "VisibilityTimeout": "60", "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"})})["QueueUrl"]
    bodies = [json.dumps(w.spot_warning(i)) for i in world.managed]
    bodies += [json.dumps(w.spot_warning(i)) for i in world.managed[::10]]  # duplicate deliveries
    for start in range(0, len(bodies), 10):
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(k), "MessageBody": b}
                                                      for k, b in enumerate(bodies[start:start + 10])])
    return world, sqs, url, dlq_url, len(bodies)


def depth(sqs, url) -> int:
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages",
                                                               "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(a["ApproximateNumberOfMessages"]) + int(a["ApproximateNumberOfMessagesNotVisible"])


def end_state(world, sqs, url, dlq_url, counts: dict) -> dict:
    c = world.clients
    targets = c.elbv2.describe_target_health(TargetGroupArn=world.target_group_arn)["TargetHealthDescriptions"]
    arns = list(world.container_instances.values())
    statuses = Counter()
    for start in range(0, len(arns), 100):
        for ci in c.ecs.describe_container_instances(cluster=w.CLUSTER, containerInstances=arns[start:start + 100])["containerInstances"]:
            statuses[ci["status"]] += 1
    managed = set(world.managed)
    dereg, cps = counts["deregistered"], counts["checkpointed"]
    return {
        "targets_left": len(targets),
        "draining": statuses.get("DRAINING", 0),
        "one_deregistration_each": set(dereg) == managed and set(dereg.values()) == {1},
        "one_checkpoint_each": set(cps) == managed and set(cps.values()) == {1},
        "queue_left": depth(sqs, url), "dlq_left": depth(sqs, dlq_url),
    }


def probe_receive(server, messages: int, rounds: int = 5) -> dict:
    """moto's time for one ReceiveMessage of 10 from a queue holding ``messages`` messages, called on the
    in-process backend: with moto's stock SQS code and with the harness's extension
    (toolkit/rehearsal/local/sqs_queue.py), same queue, same answers. A queue of its own (no
    redrive, visibility 0: the messages stay in it), deleted afterwards; nothing else runs meanwhile."""
    from moto.sqs.models import SQSBackend, sqs_backends

    from spotkit.rehearsal.local import sqs_queue as sqs_receive_extension

    sqs = server.client("sqs")
    url = sqs.create_queue(QueueName="bench-probe", Attributes={"VisibilityTimeout": "0"})["QueueUrl"]
    for start in range(0, messages, 10):
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(k), "MessageBody": "{}"}
                                                      for k in range(min(10, messages - start))])
    backend = sqs_backends[w.ACCOUNT]["us-east-1"]
    stock = sqs_receive_extension.stock()
    harness = {name: getattr(SQSBackend, name) for name in stock}
    out = {}
    try:
        for label, methods in (("stock moto", stock), ("harness", harness)):
            for name, fn in methods.items():
                setattr(SQSBackend, name, fn)
            assert len(backend.receive_message("bench-probe", 10, 0, 0)) == 10
            t0 = time.perf_counter()
            for _ in range(rounds):
                backend.receive_message("bench-probe", 10, 0, 0)
            out[f"ReceiveMessage of 10 from {messages} ({label})"] = 1000 * (time.perf_counter() - t0) / rounds
    finally:
        for name, fn in harness.items():
            setattr(SQSBackend, name, fn)
        sqs.delete_queue(QueueUrl=url)
    return out


def probe_moto(world, rounds: int = 5) -> dict:
    """moto's own time per call at this fleet size, one call at a time (no contention): reads a batch
    makes, before any notice is handled. Shows what grows with the fleet in the emulator itself."""
    c = world.clients
    ids = world.managed[:10]
    calls = {
        "DescribeTargetHealth (whole group)": lambda: c.elbv2.describe_target_health(TargetGroupArn=world.target_group_arn),
        "DescribeTargetHealth (10 targets)": lambda: c.elbv2.describe_target_health(
            TargetGroupArn=world.target_group_arn, Targets=[{"Id": i} for i in ids]),
        "DescribeInstances (10 ids, filter)": lambda: c.ec2.describe_instances(
            Filters=[{"Name": "instance-id", "Values": ids}]),
        "ListContainerInstances (10 ids, filter)": lambda: c.ecs.list_container_instances(
            cluster=w.CLUSTER, status="ACTIVE", filter="ec2InstanceId in [" + ", ".join(ids) + "]"),
    }
    out = {}
    for name, call in calls.items():
        call()  # warm
        t0 = time.perf_counter()
        for _ in range(rounds):
            call()
        out[name] = 1000 * (time.perf_counter() - t0) / rounds
    return out


def run_spotkit(server, notices: int, concurrency: int) -> dict:
    world, sqs, url, dlq_url, messages = setup(server, notices)
    probe = {**probe_moto(world), **probe_receive(server, messages)}
    with tempfile.TemporaryDirectory() as tmp:
        counts_path = Path(tmp) / "counts.json"
        env = {**os.environ, "PYTHONPATH": str(ROOT), "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "bench.interruptions_handler", "--child", "--endpoint", server.url,
                               "--queue-url", url, "--concurrency", str(concurrency), "--counts", str(counts_path)],
                              cwd=ROOT, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"spotkit handle-events failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        counts = json.loads(counts_path.read_text())
    stats = json.loads(proc.stdout)
    warnings = [line for line in proc.stderr.splitlines() if " WARNING " in line]
    return {"label": f"spotkit handle-events ({concurrency} workers, batches of 10)", "notices": notices,
            "messages": messages, "seconds": seconds, "seconds_in_cli": counts["seconds_in_cli"],
            "outcomes": stats["outcomes"], "settled": {k: stats[k] for k in ("received", "deleted", "returned")},
            "warnings": warnings, "probe": probe, **counts, **end_state(world, sqs, url, dlq_url, counts)}


def run_baseline(server, notices: int) -> dict:
    """What a user would write: receive one message, handle it (a batch of one), delete it."""
    from spotkit.runtime.interruption.actions import Clients
    from spotkit.runtime.interruption.handler import Handler, HandlerSettings
    from spotkit.runtime.interruption.store import DynamoDBStore

    world, sqs, url, dlq_url, messages = setup(server, notices)
    counter = CallCounter()
    clients = Clients(factory=lambda service: counter.attach(server.client(service)))
    handler = Handler(clients, DynamoDBStore(clients.dynamodb, w.TABLE),
                      HandlerSettings(checkpoint_command=CHECKPOINT_HOOK_PATH))
    q = clients.get("sqs")
    outcomes: Counter = Counter()
    t0 = time.perf_counter()
    while True:
        got = q.receive_message(QueueUrl=url, MaxNumberOfMessages=1, WaitTimeSeconds=1).get("Messages", [])
        if not got:
            break
        for o in handler.handle_body(got[0]["Body"]):
            outcomes[o.status] += 1
        q.delete_message(QueueUrl=url, ReceiptHandle=got[0]["ReceiptHandle"])
    seconds = time.perf_counter() - t0
    counts = counter.to_dict()
    return {"label": "baseline (one message at a time)", "notices": notices, "messages": messages,
            "seconds": seconds, "seconds_in_cli": seconds, "outcomes": dict(outcomes), **counts,
            **end_state(world, sqs, url, dlq_url, counts)}


def per_notice(r: dict) -> float:
    return sum(r["calls"].values()) / r["notices"]


def problems(r: dict) -> list[str]:
    checks = {"targets left": r["targets_left"] == 0, "not all DRAINING": r["draining"] == r["notices"],
              "not one deregistration each": r["one_deregistration_each"],
              "not one checkpoint each": r["one_checkpoint_each"], "queue not empty": r["queue_left"] == 0,
              "DLQ not empty": r["dlq_left"] == 0, "acted != notices": r["outcomes"].get("acted") == r["notices"]}
    return [name for name, good in checks.items() if not good]


def scaling_summary(results: list[dict]) -> str:
    """Time per added notice between consecutive sizes (constant = linear; growing = quadratic) and the
    least-squares line ``seconds = fixed + per_notice * N`` (fixed: the process start, the first read of
    the group's registrations, and the run's end: the consumer stops when the queue is empty)."""
    runs = sorted((r for r in results if r["label"].startswith("spotkit")), key=lambda r: r["notices"])
    lines = ["spotkit handle-events, time per added notice:"]
    for a, b in zip(runs, runs[1:]):
        lines.append(f"  {a['notices']:>5} -> {b['notices']:>5}: "
                     f"{1000 * (b['seconds'] - a['seconds']) / (b['notices'] - a['notices']):6.1f} ms per added notice")
    if len(runs) >= 2:
        xs, ys = [r["notices"] for r in runs], [r["seconds"] for r in runs]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
        fixed = my - slope * mx
        lines.append(f"  least squares: seconds = {fixed:.1f} + {1000 * slope:.1f} ms x notices; residuals "
                     + ", ".join(f"{r['notices']}: {r['seconds'] - (fixed + slope * r['notices']):+.1f} s" for r in runs))
    return "\n".join(lines)


def report(results: list[dict], notices: int) -> None:
    print(f"\n{'run':<48} {'notices':>7} {'msgs':>5} {'wall s':>7} {'/s':>6} {'calls/notice':>12} "
          f"{'moto ms/call':>12}  exactly once, all settled")
    for r in results:
        calls = sum(r["calls"].values())
        moto_ms = 1000 * sum(r["call_seconds"].values()) / max(1, calls)
        print(f"{r['label']:<48} {r['notices']:>7} {r['messages']:>5} {r['seconds']:>7.1f} "
              f"{r['notices'] / r['seconds']:>6.1f} {per_notice(r):>12.2f} {moto_ms:>12.1f}  "
              f"{'yes' if not problems(r) else 'NO: ' + ', '.join(problems(r))} (targets left {r['targets_left']}, DRAINING {r['draining']}, "
              f"queue {r['queue_left']}, DLQ {r['dlq_left']}, outcomes {r['outcomes']})")
    for r in results:
        if r.get("warnings") or (r.get("settled") and problems(r)):
            print(f"\n{r['label']}, {r['notices']}: settled {r.get('settled')}; {len(r.get('warnings', []))} warning(s):")
            for line in r.get("warnings", [])[:10]:
                print("  " + line[:300])
    for r in results:
        if r["notices"] != notices:
            continue
        print(f"\nAWS calls per notice by operation, {r['label']}, {notices} notices:")
        for op, n in sorted(r["calls"].items(), key=lambda kv: -kv[1]):
            print(f"  {op:<48} {n:>6}  {n / notices:6.3f}/notice  {1000 * r['call_seconds'].get(op, 0) / n:7.1f} ms/call")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--notices", type=int, default=1000)
    ap.add_argument("--scaling", default="100,300", help="further spotkit runs (comma-separated notice counts)")
    ap.add_argument("--baseline", default="100,300", help="baseline runs (notice counts; one message at a time at "
                    "1,000 takes minutes: add it to see)")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--endpoint", help=argparse.SUPPRESS)
    ap.add_argument("--queue-url", help=argparse.SUPPRESS)
    ap.add_argument("--counts", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args)
        return
    from tests.support.moto_server import start_moto_server

    sizes = sorted({int(x) for x in args.scaling.split(",") if x} | {args.notices})
    base_sizes = sorted({int(x) for x in args.baseline.split(",") if x})
    server = start_moto_server()
    results = []
    try:
        for n in base_sizes:
            results.append(run_baseline(server, n))
            print(f"baseline {n}: {results[-1]['seconds']:.1f} s", flush=True)
        for n in sizes:
            results.append(run_spotkit(server, n, args.concurrency))
            print(f"spotkit {n}: {results[-1]['seconds']:.1f} s", flush=True)
    finally:
        server.stop()
    report(results, args.notices)
    print("\nmoto alone, one call at a time, before the run (ms per call; grows with the fleet = emulator cost):")
    for r in results:
        if "probe" in r:
            print(f"  {r['notices']:>5} instances: " + ", ".join(f"{k} {v:.0f}" for k, v in r["probe"].items()))
    print("\nscaling (seconds per notice; flat = linear):")
    for r in results:
        print(f"  {r['label']:<48} {r['notices']:>5}: {1000 * r['seconds'] / r['notices']:6.1f} ms/notice")
    print(scaling_summary(results))
    for n in base_sizes:
        b = next(r for r in results if r["label"].startswith("baseline") and r["notices"] == n)
        s = next((r for r in results if r["label"].startswith("spotkit") and r["notices"] == n), None)
        if s:
            print(f"ratio at {n} notices: time {b['seconds'] / s['seconds']:.1f}x faster, "
                  f"calls per notice {per_notice(b):.2f} -> {per_notice(s):.2f}")


if __name__ == "__main__":
    main()
