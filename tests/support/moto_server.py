"""The embedded AWS: moto in server mode on 127.0.0.1, spoken to over HTTP like the real thing.

Known moto gaps (see DEVELOPERS.md) are extended here, honestly and visibly, never faked in the code
under test: each extension is listed in ``EXTENSIONS`` with the reason.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import boto3
import requests
from botocore.config import Config

from tests.support.network import free_port, wait_for_port

REGION = "us-east-1"
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}

# moto gaps that the harness fills. Each entry: (what, why).
EXTENSIONS: list[tuple[str, str]] = []

# CompleteLifecycleAction / RecordLifecycleActionHeartbeat: moto 5.2 has no handler for them; the
# interruption agent and handler complete the spotkit-drain hook (tests/support/lifecycle_extension.py).
from tests.support import lifecycle_extension  # noqa: E402

lifecycle_extension.install()
EXTENSIONS.append(("autoscaling CompleteLifecycleAction + RecordLifecycleActionHeartbeat",
                   "moto 5.2 lacks both actions; the agent and the interruption handler complete the drain hook"))

# DescribeScalingActivities: moto 5.2 always answers [] and never fails a launch for lack of capacity;
# `spotkit recover replace` reacts to failed spot launches (tests/support/scaling_activities_extension.py).
from tests.support import scaling_activities_extension  # noqa: E402

scaling_activities_extension.install()
EXTENSIONS.append(("autoscaling DescribeScalingActivities (+ inject_scaling_activity)",
                   "moto 5.2 records no activities, so capacity failures for the on-demand fallback must be injected"))

# Conditional DynamoDB writes: atomic in AWS, racy in moto 5.2's threaded server; the interruption
# journal's exactly-once claim depends on them (tests/support/dynamodb_atomic_extension.py).
from tests.support import dynamodb_atomic_extension  # noqa: E402

dynamodb_atomic_extension.install()
EXTENSIONS.append(("dynamodb PutItem/UpdateItem/DeleteItem serialized",
                   "moto 5.2 evaluates conditions and writes without a lock, so concurrent conditional writes can "
                   "both succeed; AWS makes each atomic, and the interruption journal relies on it"))

# SSM SendCommand: moto 5.2 sends a command without Targets to every instance of the region; AWS sends it
# to the InstanceIds given (tests/support/ssm_targets_extension.py).
from tests.support import ssm_targets_extension  # noqa: E402

ssm_targets_extension.install()
EXTENSIONS.append(("ssm SendCommand without Targets goes to the named instances only",
                   "moto 5.2 matches every instance when Targets is empty, so ListCommands(InstanceId) lists all"))

# AttachVolume: moto 5.2 attaches a volume in use, in another AZ, or at a device already taken; EC2 refuses
# each, and the boot part and `recover volumes` must cope when the other attached first
# (tests/support/attach_volume_extension.py).
from tests.support import attach_volume_extension  # noqa: E402

attach_volume_extension.install()
EXTENSIONS.append(("ec2 AttachVolume refuses VolumeInUse, InvalidVolume.ZoneMismatch and a device in use",
                   "moto 5.2 attaches anything anywhere; EC2 refuses these, and the data-volume code relies on it"))

# GetSpotPlacementScores: moto 5.2 has no handler (HTTP 500); the scheduled return-to-spot check reads scores
# where the account allows them (tests/support/spot_placement_scores_extension.py).
from tests.support import spot_placement_scores_extension  # noqa: E402

spot_placement_scores_extension.install()
EXTENSIONS.append(("ec2 GetSpotPlacementScores (+ set_spot_placement_scores; UnauthorizedOperation when none set)",
                   "moto 5.2 lacks it; the return-to-spot check reads placement scores where the account allows them"))

# FIS StartExperiment/GetExperiment: moto 5.2 keeps the state but sends no warning and interrupts nothing;
# `spotkit interrupt --target aws` starts the group's experiment and follows it (tests/support/fis_extension.py).
from tests.support import fis_extension  # noqa: E402

fis_extension.install()
EXTENSIONS.append(("fis StartExperiment/GetExperiment run aws:ec2:send-spot-instance-interruptions",
                   "moto 5.2 resolves no target by tag and sends no warning; the extension resolves the targets, "
                   "puts the spot warnings on the event bus and interrupts the instances when the experiment "
                   "completes (moto's ASG instances are not spot, so 'spot only' is not applied)"))

# ListContainerInstances filter: moto 5.2 ignores the cluster query language and lists every container
# instance; the interruption handler lists a batch's instances with `ec2InstanceId in [...]`
# (tests/support/ecs_filter_extension.py).
from tests.support import ecs_filter_extension  # noqa: E402

ecs_filter_extension.install()
EXTENSIONS.append(("ecs ListContainerInstances applies filter ec2InstanceId == / in [...]",
                   "moto 5.2 ignores the filter; the batched handler lists one batch's container instances per cluster"))

# ReceiveMessage cost: moto 5.2 rebuilds every queue attribute (three scans of the whole queue each) three
# times per message it hands out, to read the retention period; a wave's drain grew with the square of
# its size in the emulator; and its queue operations race each other in the threaded server
# (toolkit/rehearsal/local/sqs_queue.py). Answers are unchanged.
from spotkit.rehearsal.local import sqs_queue as sqs_receive_extension  # noqa: E402

sqs_receive_extension.install()
EXTENSIONS.append(("sqs ReceiveMessage/GetQueueAttributes compute the queue's attributes once, not per message and name; queue operations atomic",
                   "same answers, faster: moto 5.2 scans the whole queue about nine times per message received "
                   "(about 2 s per receive at 1,100 messages); AWS hands out a message without scanning the queue. "
                   "And atomic as in SQS: in moto two concurrent DeleteMessage calls can undo one another (deleted messages "
                   "come back)"))


@dataclass
class MotoServer:
    port: int
    _server: object

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, service: str, region: str = REGION):
        return boto3.client(service, region_name=region, endpoint_url=self.url,
                            config=Config(retries={"max_attempts": 2, "mode": "standard"}), **CREDENTIALS)

    def reset(self) -> None:
        requests.post(f"{self.url}/moto-api/reset", timeout=10).raise_for_status()

    def stop(self) -> None:
        self._server.stop()


def start_moto_server(recorder=None) -> MotoServer:
    """``recorder`` (tests/support/iam/recorder.py): wraps the server's app to record every signed call."""
    from moto.server import ThreadedMotoServer

    if recorder is not None:
        from moto.moto_server.threaded_moto_server import DomainDispatcherApplication, create_backend_app

        class RecordingServer(ThreadedMotoServer):
            def _server_entry(self) -> None:
                from werkzeug.serving import make_server
                from moto.moto_server.werkzeug_app import MotoRequestHandler

                app = recorder.wrap(DomainDispatcherApplication(create_backend_app))
                self._server = make_server(self._ip_address, self._port, app, True,
                                           request_handler=MotoRequestHandler)
                self._server_ready_event.set()
                self._server.serve_forever()

        ThreadedMotoServer = RecordingServer  # noqa: N806
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": REGION}.items():
        os.environ.setdefault(key, value)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    wait_for_port(port)
    return MotoServer(port=port, _server=server)
