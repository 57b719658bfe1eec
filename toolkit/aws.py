"""boto3 sessions and clients built from the global CLI options.

Domain functions never build clients themselves: they receive them, so tests pass clients that
point at the embedded emulator (moto server) over HTTP.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from spotkit.errors import AwsCallError

if TYPE_CHECKING:
    import boto3
    from botocore.config import Config

# boto3 and botocore are imported when a client is first built, not when the CLI starts: commands that
# never call AWS (check, synth, k8s, the pre-commit hook) start a quarter of a second sooner.


@lru_cache(maxsize=None)
def _retry_configs() -> dict:
    # The settings and why they are what they are: toolkit/runtime/interruption/retries.py (their one home).
    from spotkit.runtime.interruption.retries import botocore_config

    return {"RETRY_CONFIG": botocore_config("operator"), "LOOPBACK_RETRY_CONFIG": botocore_config("loopback")}


def __getattr__(name: str):  # RETRY_CONFIG, LOOPBACK_RETRY_CONFIG, built on first use (PEP 562)
    if name in ("RETRY_CONFIG", "LOOPBACK_RETRY_CONFIG"):
        return _retry_configs()[name]
    # Any other name (``__path__``, ``__all__``... asked by import machinery) must not import botocore.
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True)
class AwsTarget:
    region: str | None = None
    profile: str | None = None
    endpoint_url: str | None = None

    def session(self) -> "boto3.session.Session":
        import boto3

        try:
            return boto3.session.Session(profile_name=self.profile, region_name=self.resolved_region())
        except Exception as exc:  # botocore.exceptions.ProfileNotFound and friends
            raise AwsCallError(f"could not open the AWS profile {self.profile!r}: {exc}", hint=PROFILES_HINT) from exc

    def resolved_region(self) -> str:
        return self.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"

    def client(self, service: str, config: Config | None = None):
        """A client with the standard retries; ``config`` is merged over them (fewer attempts, a pool sized to
        worker threads)."""
        session = self.session()
        extra = {}
        loopback = bool(self.endpoint_url) and is_loopback(self.endpoint_url)
        if loopback and session.get_credentials() is None:
            # The local emulator (spotkit local) accepts any key: spare users exporting fake ones.
            # Only for loopback endpoints, and only when no real credentials are configured.
            extra = dict(EMULATOR_CREDENTIALS)
        base = _retry_configs()["LOOPBACK_RETRY_CONFIG" if loopback else "RETRY_CONFIG"]
        return session.client(service, endpoint_url=self.endpoint_url,
                              config=base.merge(config) if config is not None else base, **extra)


EMULATOR_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def _port_of(url: str | None) -> int | None:
    from urllib.parse import urlparse

    try:
        return urlparse(url or "").port
    except ValueError:
        return None


def is_loopback(url: str) -> bool:
    import ipaddress
    from urllib.parse import urlparse

    host = urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# Error codes AWS returns for credentials that are missing, wrong or expired, and for missing permissions.
_CREDENTIAL_CODES = ("AuthFailure", "UnrecognizedClientException", "InvalidClientTokenId", "ExpiredToken",
                     "ExpiredTokenException", "SignatureDoesNotMatch", "InvalidAccessKeyId", "IncompleteSignature",
                     "RequestExpired")
_PERMISSION_CODES = ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "Forbidden")
PROFILES_HINT = "aws configure list-profiles   # the profiles there: pass one of them as --profile"
_LOCAL_HINT = "start the emulator with 'spotkit local start' (or check it with 'spotkit local status'), then run the command again"


def option_value(words: list[str], name: str) -> str | None:
    """The value of option ``name`` in a command's words (``--profile p`` or ``--profile=p``), if given."""
    for i, word in enumerate(words):
        if word == name and i + 1 < len(words):
            return words[i + 1]
        if word.startswith(name + "="):
            return word.split("=", 1)[1]
    return None


def _who_am_i(command: str | None) -> str:
    """``aws sts get-caller-identity`` with the profile the command used (its ``--profile``)."""
    import shlex

    profile = option_value(shlex.split(command or ""), "--profile")
    return shlex.join(["aws", "sts", "get-caller-identity", *(["--profile", profile] if profile else [])])


def _with_debug(command: str) -> str:
    """The command with ``--debug`` after its program word (spotkit's global option)."""
    program, _, rest = command.partition(" ")
    return f"{program} --debug {rest}".rstrip() if "--debug" not in command.split() else command


def user_error(exc: BaseException, endpoint_url: str | None = None,
               command: str | None = None) -> AwsCallError | None:
    """The user error (message + next step) for a botocore failure the user can act on, else None.

    The CLI maps every command's uncaught botocore errors through this, so no command reports a
    missing credential or an unreachable endpoint as an internal error.
    """
    from botocore import exceptions as bx

    target = f" {endpoint_url}" if endpoint_url else ""
    on_emulator = (f"spotkit local start && {command} --endpoint-url http://127.0.0.1:4566" if command
                   else "spotkit local start, then pass --endpoint-url http://127.0.0.1:4566")
    local = bool(endpoint_url) and is_loopback(endpoint_url)
    # `spotkit local start` listens on 4566 unless told otherwise: restart it on the port the command uses
    port = _port_of(endpoint_url) if local else None
    start = "spotkit local start" + (f" --port {port}" if port and port != 4566 else "")
    restart = f"{start} && {command}" if command else _LOCAL_HINT
    if isinstance(exc, (bx.NoCredentialsError, bx.PartialCredentialsError, bx.CredentialRetrievalError,
                        bx.NoAuthTokenError)):
        return AwsCallError(
            f"no usable AWS credentials: {exc}",
            hint="configure credentials ('aws configure', AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or --profile NAME), "
                 f"or run it against the local emulator: {on_emulator}",
        )
    if isinstance(exc, (bx.TokenRetrievalError, bx.SSOError)):
        return AwsCallError(f"the AWS login session has expired or is missing: {exc}",
                            hint="run 'aws sso login' (with the same --profile), then the command again")
    if isinstance(exc, bx.ProfileNotFound):
        return AwsCallError(f"{exc}", hint=PROFILES_HINT)
    if isinstance(exc, bx.NoRegionError):
        return AwsCallError("no AWS region is set", hint="pass --region us-east-1 (or set AWS_REGION)")
    if isinstance(exc, (bx.EndpointConnectionError, bx.ConnectTimeoutError, bx.ProxyConnectionError, bx.SSLError)):
        where = getattr(exc, "kwargs", {}).get("endpoint_url") or endpoint_url or "the AWS endpoint"
        return AwsCallError(
            f"could not connect to {where}" + (" (the local emulator is not answering)" if local else "")
            + f": {exc}",
            hint=restart if local else "check the network, the region and --endpoint-url (leave it out for AWS itself)",
        )
    if isinstance(exc, (bx.ConnectionClosedError, bx.ReadTimeoutError, bx.HTTPClientError)):
        return AwsCallError(
            f"the connection to{target or ' AWS'} was lost mid-call"
            + (" (the local emulator stopped?)" if local else "") + f": {exc}",
            hint=(restart + "   # runbooks resume from their journal") if local else
            "run the command again (runbooks pick up where they stopped); if it keeps failing, check the network",
        )
    if isinstance(exc, bx.ClientError):
        return _refused(exc, command)
    if isinstance(exc, bx.ParamValidationError):
        return None  # a bug in spotkit's own call, not the user's input
    return None


def _refused(exc, command: str | None) -> AwsCallError:
    """The user error for an AWS refusal (a ``ClientError``): credentials, permissions, or what AWS says."""
    err = exc.response.get("Error", {})
    code, message = err.get("Code", "?"), err.get("Message", str(exc))
    op = getattr(exc, "operation_name", "an AWS call")
    who = _who_am_i(command)
    if code in _CREDENTIAL_CODES:
        return AwsCallError(f"AWS refused the credentials ({code} on {op}): {message}",
                            hint=f"{who}   # who AWS takes these credentials for: fix them ('aws configure', "
                                 "or another --profile), then run the command again")
    if code in _PERMISSION_CODES:
        return AwsCallError(f"not allowed: {op} ({code}): {message}",
                            hint=f"{who}   # the identity that needs permission for {op}: grant it, or run "
                                 "as a role that has it")
    return AwsCallError(f"AWS refused {op} ({code}): {message}",
                        hint=f"{_with_debug(command)}   # shows the failed call; fix what the message names, "
                             "then run it again" if command else
                        "fix what the message names, then run the command again; --debug shows the call")
