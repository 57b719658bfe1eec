"""The embedded AWS: the local emulator on 127.0.0.1 in a thread of the test process, spoken to over HTTP.

It serves the very app ``spotkit local start`` serves (``spotkit.rehearsal.local.server.application``):
moto with every patch of the one registry (``spotkit.rehearsal.local.registry.PATCHES``, where moto 5.2
answers otherwise than AWS) and the ``/spotkit/`` control path. Tests set rehearsal state and read what
the emulator recorded through ``spotkit.rehearsal.local.control`` (in this process: the functions).
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

    from spotkit.rehearsal.local.server import application

    class EmulatorServer(ThreadedMotoServer):
        def _server_entry(self) -> None:
            from werkzeug.serving import make_server
            from moto.moto_server.werkzeug_app import MotoRequestHandler

            app = application() if recorder is None else recorder.wrap(application())
            self._server = make_server(self._ip_address, self._port, app, True, request_handler=MotoRequestHandler)
            self._server_ready_event.set()
            self._server.serve_forever()

    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": REGION}.items():
        os.environ.setdefault(key, value)
    port = free_port()
    server = EmulatorServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    wait_for_port(port)
    return MotoServer(port=port, _server=server)
