"""A standalone persistent spot instance for one-off notebooks and single-node jobs.

Unlike a spot instance in an Auto Scaling group (always terminated when reclaimed), a persistent spot
request can ``hibernate`` (RAM written to the encrypted root volume, resumed when capacity returns) or
``stop`` (disks kept, RAM lost). Its data volume is a separate ``aws_ebs_volume`` in the subnet's AZ,
tagged with the retained-volume contract of ``spotkit.constructs.data_volume`` and attached; it survives the
instance being terminated or replaced, and a stack destroy takes a final snapshot before deleting it.

Capabilities match the compute group's, so ``EfsCheckpoints.attach(instance)`` works:
``add_user_data``, ``add_to_role_policy``, ``security_group_id``, ``role``, ``subnet_ids``, ``name``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping, Optional

from constructs import Construct

from spotkit.constructs.agent_user_data import AgentSettings, agent_user_data_part, validate_agent_settings
from spotkit.constructs.data_volume import DataVolumeSettings, RetainedDataVolumes, validate_data_volumes
from spotkit.constructs.data_volume_boot import attached_script
from spotkit.constructs.hibernation import HibernationSettings, hibernation_root_size, validate_hibernation
from spotkit.constructs.instance_role import egress_only_security_group, instance_role
from spotkit.constructs.tags import check_tags
from spotkit.constructs.user_data import UserData, UserDataPart
from spotkit.errors import ValidationError
from spotkit.runtime.notice import TAG_GROUP, TAG_MANAGED

INTERRUPTION_BEHAVIOURS = ("hibernate", "stop")
DEFAULT_AMI_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,38}[a-z0-9]$")


@dataclass(frozen=True)
class SpotInstanceSettings:
    """Settings of a persistent spot instance.

    - ``instance_type``: one type. Default m6i.xlarge (supports hibernation, 16 GiB).
    - ``interruption_behaviour``: hibernate (default) or stop. ``hibernate`` turns hibernation on
      (AWS refuses any other behaviour with hibernation configured); ``stop`` needs ``hibernation.enabled`` off.
    - ``hibernation``: os allowance / explicit root size (``enabled`` follows the behaviour).
    - ``root_volume_size_gib``: base root size; raised to RAM + OS when hibernating. Default 50.
    - ``root_volume_encrypted``: hibernation requires it. Default on.
    - ``spot_max_price``: USD/hour cap. Default: none (up to the on-demand price).
    - ``data_volume``: a retained data volume, or None. Default 200 GiB gp3 at /dev/sdf -> /mnt/data.
    - ``ami_id`` / ``ami_ssm_parameter``: image. Default latest AL2023 (supports hibernation).
    - ``kms_key_id``: EBS key. Default: the account's default EBS key.
    - ``tags``: extra tags.
    - ``install_agent``: install and start the interruption agent at boot (the zipapp the stack ships,
      ``spotkit.constructs.agent_artifact``): the checkpoint hook runs on a spot notice, at once on a hibernate
      notice (AWS gives no two-minute lead then). No lifecycle action to complete. Default on.
    - ``agent``: what the agent runs (``AgentSettings``).
    """

    instance_type: str = "m6i.xlarge"
    interruption_behaviour: str = "hibernate"
    hibernation: HibernationSettings = field(default_factory=HibernationSettings)
    root_volume_size_gib: int = 50
    root_volume_encrypted: bool = True
    spot_max_price: Optional[str] = None
    data_volume: Optional[DataVolumeSettings] = field(default_factory=DataVolumeSettings)
    ami_id: Optional[str] = None
    ami_ssm_parameter: str = DEFAULT_AMI_PARAMETER
    kms_key_id: Optional[str] = None
    tags: Mapping[str, str] = field(default_factory=dict)
    install_agent: bool = True
    agent: AgentSettings = field(default_factory=AgentSettings)

    @property
    def effective_hibernation(self) -> HibernationSettings:
        h = self.hibernation
        return HibernationSettings(enabled=self.interruption_behaviour == "hibernate",
                                   os_and_apps_gib=h.os_and_apps_gib, root_volume_size_gib=h.root_volume_size_gib)


def validate_spot_instance(name: str, s: SpotInstanceSettings) -> None:
    where = f"PersistentSpotInstance {name!r}"
    if not _NAME.match(name):
        raise ValidationError(f"{where}: name must be 2-40 lowercase letters, digits or hyphens, starting with a letter")
    check_tags(s.tags, where, in_instance_metadata=True)
    if s.interruption_behaviour not in INTERRUPTION_BEHAVIOURS:
        raise ValidationError(
            f"{where}: interruption_behaviour {s.interruption_behaviour!r} would lose the instance: use 'hibernate' "
            "(keeps RAM) or 'stop' (keeps disks); a terminated notebook belongs in a compute group"
        )
    if s.interruption_behaviour == "stop" and s.hibernation.enabled:
        raise ValidationError(
            f"{where}: hibernation.enabled with interruption_behaviour 'stop': AWS requires 'hibernate' when "
            "hibernation is configured; set interruption_behaviour='hibernate' or hibernation.enabled=false"
        )
    if s.root_volume_size_gib < 8:
        raise ValidationError(f"{where}: root_volume_size_gib must be at least 8 (got {s.root_volume_size_gib})")
    validate_hibernation(where, (s.instance_type,), s.effective_hibernation, root_encrypted=s.root_volume_encrypted)
    if s.data_volume is not None:
        validate_data_volumes(where, [s.data_volume])
    if s.install_agent:
        validate_agent_settings(where, s.agent)


class PersistentSpotInstance(Construct):
    """One persistent spot instance with its role, security group, encrypted root and retained data volume."""

    def __init__(self, scope: Construct, id_: str, *, name: str, vpc_id: str, subnet_id: str,
                 settings: SpotInstanceSettings = SpotInstanceSettings()):
        validate_spot_instance(name, settings)
        super().__init__(scope, id_)
        self.name = name
        self.settings = settings
        self.subnet_ids = [subnet_id]
        self._statements: list[dict] = []
        self.tags = {TAG_GROUP: name, TAG_MANAGED: "true", **dict(settings.tags)}
        self.user_data = UserData(self, f"{name}_user_data".replace("-", "_"))
        self.security_group_id = egress_only_security_group(
            self, name=name, vpc_id=vpc_id, tags=self.tags, description=f"spotkit spot instance {name}: egress only",
        ).id
        self.role, profile = instance_role(self, name=name, tags=self.tags, statements=self._statements)
        self.add_to_role_policy({"Sid": "FindOwnDataVolumes", "Effect": "Allow",
                                 "Action": "ec2:DescribeVolumes", "Resource": "*"})
        if settings.install_agent:
            self._install_agent()
        self.instance = self._create_instance(subnet_id, profile.name)
        self.data_volume = self._create_data_volume(subnet_id) if settings.data_volume is not None else None

    # --- capabilities -----------------------------------------------------------------------

    def add_user_data(self, part: UserDataPart) -> None:
        self.user_data.add_part(part)

    def add_to_role_policy(self, statement: Mapping) -> None:
        self._statements.append(dict(statement))

    # --- resources --------------------------------------------------------------------------

    def _install_agent(self) -> None:
        shipped = None
        if self.settings.agent.package_spec is None:
            from spotkit.constructs.agent_artifact import AgentArtifact

            shipped = AgentArtifact.for_stack(self)
            shipped.grant_read(self)  # s3:GetObject on that one key, nothing else
        self.add_user_data(agent_user_data_part(self.settings.agent, artifact=shipped.ref if shipped else None,
                                                complete_lifecycle=False))

    def _create_instance(self, subnet_id: str, instance_profile_name: str):
        from cdktn_aws.ec2 import AwsInstance as Instance
        from cdktn_aws.ssm import DataAwsParameter as DataAwsSsmParameter

        s = self.settings
        hib = s.effective_hibernation
        root_size = hibernation_root_size((s.instance_type,), hib, s.root_volume_size_gib) if hib.enabled \
            else s.root_volume_size_gib
        image = s.ami_id or DataAwsSsmParameter(self, "ami", name=s.ami_ssm_parameter).value
        return Instance(
            self, "instance",
            ami=image,
            instance_type=s.instance_type,
            subnet_id=subnet_id,
            vpc_security_group_ids=[self.security_group_id],
            iam_instance_profile=instance_profile_name,
            hibernation=hib.enabled,
            instance_market_options=Instance.InstanceMarketOptionsProperty(
                market_type="spot",
                spot_options=Instance.SpotOptionsProperty(
                    spot_instance_type="persistent",
                    instance_interruption_behavior=s.interruption_behaviour,
                    max_price=s.spot_max_price,
                ),
            ),
            root_block_device=Instance.RootBlockDeviceProperty(
                volume_size=root_size, volume_type="gp3", encrypted=s.root_volume_encrypted,
                kms_key_id=s.kms_key_id, delete_on_termination=True),
            metadata_options=Instance.MetadataOptionsProperty(http_endpoint="enabled", http_tokens="required",
                                                     http_put_response_hop_limit=2, instance_metadata_tags="enabled"),
            user_data_base64=self.user_data.base64,
            tags={**self.tags, "Name": self.name},
        )

    def _create_data_volume(self, subnet_id: str):
        """The data volume in the subnet's AZ, attached, and mounted at boot."""
        from cdktn_aws.ebs import AwsVolume as EbsVolume, AwsVolumeAttachment as VolumeAttachment
        from cdktn_aws.vpc import DataAwsSubnet

        v = self.settings.data_volume
        az = DataAwsSubnet(self, "subnet", id=subnet_id).availability_zone
        volume = EbsVolume(
            self, "data-volume",
            availability_zone=az, size=v.size_gib, type=v.volume_type, encrypted=True, kms_key_id=v.kms_key_id,
            iops=v.iops if v.volume_type in ("gp3", "io1", "io2") else None,
            throughput=v.throughput_mibps if v.volume_type == "gp3" else None,
            tags={**self.tags, **RetainedDataVolumes.tags_for(self.name, v.device_name)},
            final_snapshot=True,  # a stack destroy still leaves a snapshot of the data
        )
        VolumeAttachment(self, "data-attachment", device_name=v.device_name, volume_id=volume.id,
                         instance_id=self.instance.id, stop_instance_before_detaching=True)
        self.add_user_data(UserDataPart("data-volumes", attached_script([v]), order=20))
        return volume
