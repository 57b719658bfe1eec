"""IAM: each call is answered consistently, one at a time."""

from __future__ import annotations

import threading

from spotkit.rehearsal.local.patches import Patch, wrap_once

_lock = threading.Lock()


def _serialized() -> None:
    from moto.iam.responses import IamResponse

    def one_at_a_time(original):
        def call_action(self):
            with _lock:
                return original(self)

        return call_action

    wrap_once(IamResponse, "call_action", one_at_a_time)


PATCHES = (
    Patch("iam", ("every call",),
          "answers each call consistently while others create roles and instance profiles",
          "finds a role or instance profile by iterating its dict while another thread of the server may insert "
          "into it (\"dictionary changed size during iteration\", HTTP 500); Terraform creates a stack's roles and "
          "instance profiles in parallel and polls each new profile, and with the local provider's 2 retries a "
          "stack with two instance profiles failed now and then in the instance profile wait", "", _serialized),
)
