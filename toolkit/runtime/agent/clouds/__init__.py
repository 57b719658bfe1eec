"""The agent on GCP and Azure: their metadata clients and monitors, producing the agent's ``Notice``.

``spotkit agent --cloud aws|gcp|azure|auto``: AWS keeps ``spotkit.runtime.agent.imds`` and
``spotkit.runtime.agent.notices``; GCP and Azure get a ``MetadataClient`` with their header and the monitors of
``gcp`` and ``azure`` here. The agent polls them as it polls AWS's (``get_text(monitor.path)``, then
``monitor.parse``) through ``CloudMetadata``, which hands each monitor's path to its own ``fetch()``
(GCP's hanging GET); Azure's monitor is called back after a drain (``after_drain``: the acknowledgement). ``detect`` finds
the cloud from the metadata service. Standard library only, Python 3.9.
"""

from __future__ import annotations

from typing import Callable, Optional

from spotkit.runtime.agent.clouds.client import CloudMetadata, InstanceIdentity, MetadataClient

CLOUDS = ("aws", "gcp", "azure")
CHOICES = CLOUDS + ("auto",)


def client_for(cloud: str, base_url: str, *, timeout: float = 1.0) -> MetadataClient:
    """A metadata client sending ``cloud``'s header (GCP or Azure)."""
    from spotkit.runtime.agent.clouds import azure, gcp

    headers = {"gcp": dict([gcp.HEADER]), "azure": dict([azure.HEADER])}
    if cloud not in headers:
        raise ValueError(f"cloud must be gcp or azure here (got {cloud!r}); AWS uses ImdsClient")
    return MetadataClient(base_url, headers[cloud], timeout=timeout)


def identity_for(cloud: str, client) -> InstanceIdentity:
    """This machine's id and name as ``cloud``'s metadata service (gcp or azure) gives them."""
    from spotkit.runtime.agent.clouds import azure, gcp

    readers = {"gcp": gcp.read_identity, "azure": azure.read_identity}
    if cloud not in readers:
        raise ValueError(f"cloud must be gcp or azure here (got {cloud!r})")
    return InstanceIdentity(lambda: readers[cloud](client))


def monitors_for(cloud: str, client, *, notice_seconds: Optional[float] = None, wait_seconds: float = 10.0,
                 wait_for_change: bool = True, log: Optional[Callable[..., object]] = None,
                 identity: Optional[InstanceIdentity] = None) -> list:
    """The monitors of ``cloud`` (gcp or azure) reading through ``client``.

    ``notice_seconds``: the platform's window where it gives no time (GCP always, Azure for an event
    without ``NotBefore``); default the standard 30 s. ``wait_seconds``: GCP's longest hanging GET.
    ``identity``: this machine's (default: read through ``client``); Azure acts only on events naming it.
    """
    from spotkit.runtime.agent.clouds import azure, gcp

    kw = {"log": log} if log is not None else {}
    if cloud == "gcp":
        window = gcp.NOTICE_SECONDS if notice_seconds is None else notice_seconds
        return [gcp.GcpPreemptionMonitor(client, notice_seconds=window, wait_seconds=wait_seconds,
                                         wait_for_change=wait_for_change, **kw),
                gcp.GcpMaintenanceMonitor(client, notice_seconds=window)]
    if cloud == "azure":
        window = azure.NOTICE_SECONDS if notice_seconds is None else notice_seconds
        return [azure.AzureScheduledEventsMonitor(client, notice_seconds=window,
                                                  identity=identity or identity_for("azure", client), **kw)]
    raise ValueError(f"cloud must be gcp or azure here (got {cloud!r})")


def bind_monitors(config, client: MetadataClient, log: Callable[..., object]) -> tuple:
    """(what the agent reads through, its monitors) for ``config.cloud`` (gcp or azure)."""
    identity = identity_for(config.cloud, client)
    monitors = monitors_for(config.cloud, client, notice_seconds=config.notice_seconds,
                            wait_seconds=config.wait_seconds, log=log, identity=identity)
    return CloudMetadata(client, monitors, identity), monitors
