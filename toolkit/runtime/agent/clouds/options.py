"""The agent's cloud options, for both of its command lines (``spotkit agent`` and the stdlib one shipped
in ``spotkit-agent.pyz``), so they stay the same: ``--cloud``, ``--on-advisory``, ``--notice-seconds``,
``--wait-seconds``, the per-cloud ``--margin`` default and the metadata client of the chosen cloud.

With argparse::

    from spotkit.runtime.agent.clouds import options
    options.add_arguments(parser.add_argument)            # and --margin default None
    cloud = options.resolve_cloud(args.cloud, args.metadata_url)   # CloudNotDetected -> parser.error
    margin = options.default_margin(cloud) if args.margin is None else args.margin
    config = AgentConfig(..., margin=margin, **options.config_kwargs(cloud, args))
    imds = options.metadata_client(cloud, args.metadata_url, token_ttl=..., allow_v1=...)

Standard library only, Python 3.9.
"""

from __future__ import annotations

from typing import Any, Callable

from spotkit.runtime.agent.clouds import CHOICES, client_for
from spotkit.runtime.agent.clouds.detect import detect_cloud

HELP = {
    "--cloud": "Whose metadata service to read: aws, gcp, azure, or auto (probe each with its header and a "
               "short timeout). Default aws.",
    "--on-advisory": "Shell command run on an event the VM survives with its memory (Azure Freeze, GCP live "
                     "migration); reboots are drained like other notices.",
    "--notice-seconds": "GCP/Azure: seconds from detection to the end where the platform gives no time "
                        "(default 30).",
    "--wait-seconds": "GCP: longest hanging GET (wait_for_change) before asking again (default 10).",
}
MARGIN_HELP = ("The hook's deadline is the notice time minus this many seconds. Default 15 on AWS, 5 on GCP and "
               "Azure (30 s notices).")
DEFAULT_WAIT_SECONDS = 10.0


def add_arguments(add: Callable[..., Any]) -> None:
    """Add the cloud options with argparse's ``parser.add_argument``."""
    add("--cloud", choices=CHOICES, default="aws", help=HELP["--cloud"])
    add("--on-advisory", metavar="CMD", help=HELP["--on-advisory"])
    add("--notice-seconds", type=float, help=HELP["--notice-seconds"])
    add("--wait-seconds", type=float, default=DEFAULT_WAIT_SECONDS, help=HELP["--wait-seconds"])


def resolve_cloud(cloud: str, metadata_url: str) -> str:
    """``cloud``, or for ``auto`` the one the metadata service answers as (raises CloudNotDetected)."""
    return detect_cloud(metadata_url) if cloud == "auto" else cloud


def default_margin(cloud: str) -> float:
    """15 s of AWS's 120 s notice; 5 s of GCP's and Azure's 30 s."""
    return 15.0 if cloud == "aws" else 5.0


def config_kwargs(cloud: str, args: Any) -> dict:
    """The ``AgentConfig`` fields of the cloud options (``args``: argparse namespace or any object)."""
    return {"cloud": cloud, "on_advisory": getattr(args, "on_advisory", None),
            "notice_seconds": getattr(args, "notice_seconds", None),
            "wait_seconds": getattr(args, "wait_seconds", DEFAULT_WAIT_SECONDS)}


def metadata_client(cloud: str, metadata_url: str, *, token_ttl: int = 21600, allow_v1: bool = False):
    """AWS: the IMDSv2 client; GCP/Azure: a client sending their metadata header."""
    if cloud == "aws":
        from spotkit.runtime.agent.imds import ImdsClient

        return ImdsClient(metadata_url, token_ttl=token_ttl, allow_v1=allow_v1)
    return client_for(cloud, metadata_url)
