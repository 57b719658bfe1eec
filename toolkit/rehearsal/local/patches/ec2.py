"""EC2: launch template tags, rule descriptions, spot RunInstances, AttachVolume checks, placement scores.

- ``CreateLaunchTemplate``: moto 5.2 copies the request's ``TagSpecifications`` (ResourceType
  launch-template: the tags of the template itself) into the data's ``TagSpecifications`` (the tags of
  launched instances and volumes); AWS keeps them apart.
- ``DescribeSecurityGroupRules``: moto 5.2 reads a rule's description only from its CIDR range.
- ``RunInstances`` with spot market options: moto 5.2 makes an on-demand instance with no spot request.
- ``AttachVolume``: moto 5.2 attaches any volume to any instance: one already attached elsewhere, one in
  another AZ, one at a device the instance already uses. EC2 refuses each (``VolumeInUse``,
  ``InvalidVolume.ZoneMismatch``, ``InvalidParameterValue`` "Attachment point ... is already in use"), and
  decides each attach atomically. The boot part and ``recover volumes`` both attach volumes and must cope
  when the other got there first; nothing else of moto's attach changes.
- ``GetSpotPlacementScores``: not implemented by moto 5.2 (HTTP 500). The emulator answers in EC2's XML
  shape, one ``spotPlacementScoreSet`` item per requested region, from the scores set through the control
  path (``control.set_spot_placement_scores``, kept on the EC2 backend so a reset clears them). With no score
  set it refuses as EC2 does for an account without the permission (``UnauthorizedOperation``), which the
  code under test must treat as "no score" (toolkit/runtime/interruption/fallback.py). Each request is
  recorded for the control path to read (``control.spot_placement_score_requests``).
"""

from __future__ import annotations

import copy
import threading

from spotkit.rehearsal.local.patches import Patch, kept_on, sets, wrap_once

_SCORES_ATTR = "spotkit_spot_placement_scores"
_SCORE_REQUESTS_ATTR = "spotkit_spot_placement_score_requests"


def _launch_template_tags() -> None:
    from moto.ec2.responses.launch_templates import LaunchTemplates

    wrap_once(LaunchTemplates, "create_launch_template", _keeping_own_tags)


def _keeping_own_tags(original):
    def create_launch_template(self):
        data = self._get_param("LaunchTemplateData", {}) or {}
        own = copy.deepcopy(data.get("TagSpecifications") or [])
        result = original(self)
        template = self.ec2_backend.get_launch_template_by_name(self._get_param("LaunchTemplateName"))
        for version in template.versions:
            if own:
                version.data["TagSpecifications"] = own
            else:
                version.data.pop("TagSpecifications", None)
        return result

    return create_launch_template


def _security_group_rule_description() -> None:
    from moto.ec2.models.security_groups import SecurityGroupRule

    def description(self):
        return self.ip_range.get("Description") or (self.source_group or {}).get("Description")

    SecurityGroupRule.description = property(description)


def _spot_request_for(ec2_backend, instance, options: dict):
    """A spot request that records ``instance`` (made by RunInstances) and launches nothing of its own."""
    from moto.ec2.models.spot_requests import SpotInstanceRequest

    launch = SpotInstanceRequest.launch_instance
    SpotInstanceRequest.launch_instance = lambda req, inst=instance: inst
    try:
        (request,) = ec2_backend.request_spot_instances(
            price=options.get("MaxPrice"), image_id=instance.image_id, count=1,
            spot_instance_type=options.get("SpotInstanceType", "one-time"), valid_from=None,
            valid_until=options.get("ValidUntil"), launch_group=None, availability_zone_group=None,
            key_name=instance.key_name, security_groups=[], user_data=None,
            instance_type=instance.instance_type, placement=instance.placement, kernel_id=None,
            ramdisk_id=None, monitoring_enabled=False, subnet_id=instance.subnet_id,
            instance_interruption_behaviour=options.get("InstanceInterruptionBehavior", "terminate"))
    finally:
        SpotInstanceRequest.launch_instance = launch
    return request


def _spot_run_instances() -> None:
    from moto.ec2.responses.instances import InstanceResponse

    wrap_once(InstanceResponse, "run_instances", _linking_spot_requests)


def _linking_spot_requests(original):
    def run_instances(self):
        result = original(self)
        if self._get_param("InstanceMarketOptions.MarketType") != "spot":
            return result
        options = self._get_param("InstanceMarketOptions.SpotOptions", {}) or {}
        for instance in result.result.instances if hasattr(result, "result") else []:
            request = _spot_request_for(self.ec2_backend, instance, options)
            instance.instance_lifecycle = "spot"
            instance.spot_instance_request_id = request.id
        return result

    return run_instances


_attach_lock = threading.Lock()  # EC2 decides each attach atomically; moto's threaded server would not


def _checked_attach(self, volume_id: str, instance_id: str, device_path: str):
    from moto.ec2.exceptions import EC2ClientError

    volume = self.get_volume(volume_id)
    instance = self.get_instance(instance_id)
    if volume is not None and instance is not None:
        if volume.attachment is not None:
            raise EC2ClientError("VolumeInUse", f"{volume_id} is already attached to an instance")
        if getattr(volume.zone, "name", volume.zone) != instance.placement.zone:
            raise EC2ClientError("InvalidVolume.ZoneMismatch", f"The volume '{volume_id}' is not in the same "
                                 f"availability zone as instance '{instance_id}'")
        if device_path in instance.block_device_mapping:
            raise EC2ClientError("InvalidParameterValue", f"Invalid value '{device_path}' for unixDevice. "
                                 f"Attachment point {device_path} is already in use")


def _attach_volume_checks() -> None:
    from moto.ec2.models.elastic_block_store import EBSBackend

    def checked(original):
        def attach_volume(self, volume_id: str, instance_id: str, device_path: str, delete_on_termination=False):
            with _attach_lock:
                _checked_attach(self, volume_id, instance_id, device_path)
                return original(self, volume_id, instance_id, device_path, delete_on_termination)

        return attach_volume

    wrap_once(EBSBackend, "attach_volume", checked)


def backend_scores(backend) -> dict:
    """Region -> score (1-10) that GetSpotPlacementScores answers (the control path sets them)."""
    return kept_on(backend, _SCORES_ATTR, dict)


def backend_score_requests(backend) -> list[dict]:
    """What GetSpotPlacementScores was asked (instance types, target capacity, regions), oldest first."""
    return kept_on(backend, _SCORE_REQUESTS_ATTR, list)


def get_spot_placement_scores(self) -> str:
    from moto.ec2.exceptions import EC2ClientError

    types = list(self._get_param("InstanceTypes") or [])
    capacity = int(self._get_param("TargetCapacity") or 0)
    regions = list(self._get_param("RegionNames") or [self.region])
    if not types or capacity < 1:
        raise EC2ClientError("InvalidParameterValue", "InstanceTypes and a TargetCapacity of 1 or more are required")
    backend_score_requests(self.ec2_backend).append({"types": types, "capacity": capacity, "regions": regions})
    scores = backend_scores(self.ec2_backend)
    if not scores:
        raise EC2ClientError("UnauthorizedOperation", "You are not authorized to perform: ec2:GetSpotPlacementScores")
    items = "".join(f"<item><region>{r}</region><score>{int(scores.get(r, 1))}</score></item>" for r in regions)
    return ('<GetSpotPlacementScoresResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">'
            f"<requestId>spotkit-scores</requestId><spotPlacementScoreSet>{items}</spotPlacementScoreSet>"
            "</GetSpotPlacementScoresResponse>")


_API = "https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_"

PATCHES = (
    Patch("ec2", ("CreateLaunchTemplate",),
          "keeps the template's own tags (launch-template) out of its LaunchTemplateData.TagSpecifications",
          "copies the request's TagSpecifications (the tags of the template itself) into the data's "
          "TagSpecifications (the tags of launched instances and volumes), so every re-plan wanted to change "
          "the launch template", f"{_API}CreateLaunchTemplate.html", _launch_template_tags),
    Patch("ec2", ("DescribeSecurityGroupRules",),
          "returns the description of a rule that references a security group",
          "reads a rule's Description only from its CIDR range, so a rule from another security group came back "
          "without the description it was created with", f"{_API}DescribeSecurityGroupRules.html",
          _security_group_rule_description),
    Patch("ec2", ("RunInstances",),
          "with InstanceMarketOptions spot makes a spot instance (InstanceLifecycle spot) linked to its spot "
          "request (one-time or persistent, with its interruption behavior)",
          "reports neither InstanceLifecycle spot nor a SpotInstanceRequestId, so the provider read no "
          "instance_market_options back and every re-plan wanted to replace the instance",
          f"{_API}RunInstances.html", _spot_run_instances),
    Patch("ec2", ("AttachVolume",),
          "refuses a volume in use (VolumeInUse), one in another availability zone (InvalidVolume.ZoneMismatch) "
          "and a device the instance already uses (InvalidParameterValue); each attach is decided atomically",
          "attaches anything anywhere, so the boot part and `spotkit recover volumes` could not meet the refusal "
          "they must cope with when the other attached first", f"{_API}AttachVolume.html", _attach_volume_checks),
    Patch("ec2", ("GetSpotPlacementScores",),
          "answers a score per requested region, or UnauthorizedOperation for an account without the permission",
          "has no handler (HTTP 500). The emulator refuses as for an account without the permission unless scores "
          "were set through its control path; the return-to-spot check reads scores where the account allows them",
          f"{_API}GetSpotPlacementScores.html",
          sets("moto.ec2.responses", "EC2Response", get_spot_placement_scores=get_spot_placement_scores)),
)
