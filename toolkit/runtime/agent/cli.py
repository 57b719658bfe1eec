"""The agent's own command line: what ``python3 -I -S spotkit-agent.pyz [options]`` runs on an instance.

Standard library only (argparse). Its options are generated from ``spotkit.runtime.agent.options.OPTIONS``, the
table ``spotkit agent`` is generated from too, plus spotkit's global ``--region``, ``--profile`` and
``--endpoint-url``. Bad options exit 2 with a usage line that names the option (argparse), never a traceback.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Optional, Sequence

from spotkit.runtime.agent import options
from spotkit.runtime.agent.clouds.detect import CloudNotDetected

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spotkit-agent.pyz", description=options.DESCRIPTION)
    options.add_to_argparse(parser)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    from spotkit.runtime.agent.core import Agent
    from spotkit.runtime.agent.lifecycle import REGION_PATH, autoscaling_client
    from spotkit.runtime.agent.log import JsonLogger

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        _cloud, config, imds = options.agent_setup(vars(args))
    except (CloudNotDetected, ValueError) as exc:
        parser.error(str(exc))

    def autoscaling():
        # Built only when a lifecycle action must be completed; the region comes from IMDS on an instance.
        region = args.region or (imds.get_text(REGION_PATH) or "").strip() or None
        return autoscaling_client(region=region, endpoint_url=args.endpoint_url, profile=args.profile)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    Agent(imds, config, autoscaling=autoscaling, log=JsonLogger()).run(stop)  # every step is logged as it happens
    return 0


if __name__ == "__main__":  # python3 -m spotkit.runtime.agent.cli
    sys.exit(main())
