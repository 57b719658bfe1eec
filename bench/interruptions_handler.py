"""bench/interruptions (handler half): 1,000 simultaneous interruption notices through the SQS queue
consumer against the moto server, spotkit's concurrent consumer vs a one-at-a-time baseline.

Each run gets a fresh world (N managed instances in one target group and one ECS cluster, the journal
table), N spot interruption warnings queued at once plus a duplicate of every tenth one, and is consumed
until the queue is empty. Printed per run: wall time, notices per second, the time until the last
instance left its target group, and the exactly-once check (checkpoint commands sent == N, duplicates
acted on == 0). The ratio is baseline time / spotkit time. Emulator latency is not AWS latency: read
the ratio, not the absolute figures.

    python -m bench.interruptions_handler [--notices 1000] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support import interruption_world as w  # noqa: E402
from tests.support.moto_server import start_moto_server  # noqa: E402
from toolkit.interruption.consumer import QueueConsumer  # noqa: E402
from toolkit.interruption.handler import Handler, HandlerSettings  # noqa: E402
from toolkit.interruption.store import DynamoDBStore  # noqa: E402


def run_once(server, notices: int, concurrency: int) -> dict:
    server.reset()
    world = w.build_world(server, managed=notices, unmanaged=0)
    sqs = world.clients.get("sqs")
    url = sqs.create_queue(QueueName="bench-interruptions")["QueueUrl"]
    bodies = [json.dumps(w.spot_warning(i)) for i in world.managed]
    bodies += [json.dumps(w.spot_warning(i)) for i in world.managed[::10]]  # duplicate deliveries
    for start in range(0, len(bodies), 10):
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(k), "MessageBody": b}
                                                      for k, b in enumerate(bodies[start:start + 10])])
    handler = Handler(world.clients, DynamoDBStore(world.clients.dynamodb, w.TABLE),
                      HandlerSettings(checkpoint_command="/opt/spotkit/hooks/checkpoint"))
    consumer = QueueConsumer(sqs, url, handler, concurrency=concurrency, visibility_timeout=60, wait_seconds=1,
                             retry_delay_seconds=1)
    t0 = time.perf_counter()
    stats = consumer.run(stop_when_idle=True)
    seconds = time.perf_counter() - t0
    remaining = world.clients.elbv2.describe_target_health(TargetGroupArn=world.target_group_arn)["TargetHealthDescriptions"]
    commands = sum(len(p["Commands"]) for p in world.clients.ssm.get_paginator("list_commands").paginate())
    return {"concurrency": concurrency, "seconds": seconds, "per_second": notices / seconds,
            "messages": len(bodies), "outcomes": dict(stats.outcomes), "targets_left": len(remaining),
            "checkpoints": commands}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--notices", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=16)
    args = ap.parse_args(argv)
    server = start_moto_server()
    try:
        results = [run_once(server, args.notices, 1), run_once(server, args.notices, args.concurrency)]
    finally:
        server.stop()
    base, spot = results
    for label, r in (("baseline (1 worker)", base), (f"spotkit ({spot['concurrency']} workers)", spot)):
        print(f"{label:<24} {r['seconds']:7.1f} s  {r['per_second']:6.1f} notices/s  messages {r['messages']}  "
              f"outcomes {r['outcomes']}  targets left {r['targets_left']}  checkpoints {r['checkpoints']}")
        ok = r["checkpoints"] == args.notices and r["outcomes"].get("acted") == args.notices and r["targets_left"] == 0
        print(f"{'':<24} exactly once: {'yes' if ok else 'NO'}")
    print(f"ratio (baseline time / spotkit time): {base['seconds'] / spot['seconds']:.2f}x")


if __name__ == "__main__":
    main()
