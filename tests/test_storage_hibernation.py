"""Hibernation: launch-template options, root sizing from the shipped table, warm pool, and every rule
(exact messages). Validation tests synthesize nothing: the rules run before any resource exists."""

from __future__ import annotations

import pytest

from spotkit.constructs.compute_group import ComputeGroupSettings, SpotComputeGroup, validate_settings
from spotkit.constructs.hibernation import (
    HibernationSettings,
    WarmPoolSettings,
    memory_gib,
    required_root_gib,
    supports_hibernation,
    validate_hibernation,
)
from spotkit.constructs.instance_table import INSTANCE_TYPES
from spotkit.constructs.spot_instance import SpotInstanceSettings, validate_spot_instance
from tests.support.synth import one, synth_construct
from spotkit.errors import ValidationError

SUBNETS = ["subnet-a", "subnet-b"]
W = "SpotComputeGroup 'fleet'"
STANDBY = ComputeGroupSettings(
    instance_types=("r5.2xlarge",), on_demand_percentage_above_base=100, min_size=0, max_size=4,
    hibernation=HibernationSettings(enabled=True), warm_pool=WarmPoolSettings(min_size=2),
)


@pytest.fixture(scope="module")
def standby_group():
    # GIVEN an on-demand standby group of r5.2xlarge (64 GiB) with hibernation and a Hibernated warm pool
    # WHEN it is synthesized
    doc, _ = synth_construct(lambda stack: SpotComputeGroup(stack, "fleet", name="fleet", vpc_id="vpc-1",
                                                            subnet_ids=SUBNETS, settings=STANDBY))
    return doc


def test_launch_template_configures_hibernation_with_an_encrypted_root_sized_ram_plus_os(standby_group):
    lt = one(standby_group, "aws_launch_template")
    # THEN hibernation is configured and the root holds 64 GiB of RAM + 20 GiB for the OS, encrypted
    assert lt["hibernation_options"] == {"configured": True}
    root = lt["block_device_mappings"][0]
    assert root["device_name"] == "/dev/xvda"
    assert root["ebs"]["volume_size"] == 84
    assert root["ebs"]["encrypted"] == "true"
    assert lt["instance_type"] == "r5.2xlarge"


def test_warm_pool_is_hibernated_with_reuse_on_scale_in(standby_group):
    asg = one(standby_group, "aws_autoscaling_group")
    # THEN the pool keeps 2 hibernated instances and takes instances back on scale-in
    assert asg["warm_pool"] == {"pool_state": "Hibernated", "min_size": 2,
                                "instance_reuse_policy": {"reuse_on_scale_in": True}}
    # AND the group launches from the template directly (AWS refuses warm pools with a mixed instances policy)
    assert "mixed_instances_policy" not in asg
    assert asg["launch_template"]["version"] == "$Latest"


def test_default_group_has_no_hibernation_and_no_warm_pool():
    # GIVEN default settings WHEN validated THEN nothing is raised and the defaults are off
    validate_settings("fleet", ComputeGroupSettings(), SUBNETS)
    assert ComputeGroupSettings().hibernation.enabled is False
    assert ComputeGroupSettings().warm_pool is None


def test_shipped_table_has_memory_and_hibernation_flags():
    # GIVEN the generated table WHEN read THEN it knows common types, and accelerated ones do not hibernate
    assert len(INSTANCE_TYPES) > 1000
    assert memory_gib("m6i.xlarge") == 16
    assert memory_gib("r5.2xlarge") == 64
    assert supports_hibernation("m6i.large") is True
    for gpu in ("g4dn.xlarge", "g5.xlarge", "g6.xlarge", "p4d.24xlarge"):
        assert supports_hibernation(gpu) is False, gpu
    assert supports_hibernation("m6i.metal") is False
    assert supports_hibernation("zz9.huge") is None
    assert required_root_gib(["m6i.large", "r5.2xlarge"], 20) == 84
    assert required_root_gib(["zz9.huge"], 20) is None


def test_explicit_root_size_is_used_as_given():
    # GIVEN an explicit root size large enough WHEN sized THEN it is used
    from spotkit.constructs.hibernation import hibernation_root_size

    assert hibernation_root_size(["r5.2xlarge"], HibernationSettings(enabled=True, root_volume_size_gib=120), 50) == 120
    assert hibernation_root_size(["t3.small"], HibernationSettings(enabled=True), 50) == 50


# --- rules, exact messages -------------------------------------------------------------------


def _raises(fn, message):
    with pytest.raises(ValidationError) as err:
        fn()
    assert str(err.value) == message


def test_rule_encrypted_root():
    # GIVEN a spot instance that hibernates with an unencrypted root
    s = SpotInstanceSettings(root_volume_encrypted=False)
    # THEN
    _raises(lambda: validate_spot_instance("nb", s),
            "PersistentSpotInstance 'nb': hibernation.enabled needs an encrypted root volume (AWS writes RAM to it): "
            "set root_volume_encrypted=true or turn hibernation off")


def test_rule_root_at_least_ram_plus_os():
    s = SpotInstanceSettings(instance_type="r5.2xlarge", hibernation=HibernationSettings(root_volume_size_gib=70))
    _raises(lambda: validate_spot_instance("nb", s),
            "PersistentSpotInstance 'nb': hibernation.root_volume_size_gib (70) is below RAM + OS: r5.2xlarge has "
            "64 GiB of RAM, plus 20 GiB for the OS needs at least 84 GiB: raise hibernation.root_volume_size_gib or "
            "leave it unset to size it from the table")


def test_rule_unknown_type_needs_explicit_size():
    s = SpotInstanceSettings(instance_type="zz9.huge")
    _raises(lambda: validate_spot_instance("nb", s),
            "PersistentSpotInstance 'nb': hibernation.enabled with instance type(s) spotkit's memory table does not "
            "know (zz9.huge): set hibernation.root_volume_size_gib to at least their RAM + 20 GiB for the OS")


def test_unknown_type_with_explicit_size_passes():
    validate_spot_instance("nb", SpotInstanceSettings(instance_type="zz9.huge",
                                                      hibernation=HibernationSettings(root_volume_size_gib=100)))


def test_rule_ram_at_most_150_gib():
    s = SpotInstanceSettings(instance_type="r5.8xlarge")
    _raises(lambda: validate_spot_instance("nb", s),
            "PersistentSpotInstance 'nb': hibernation.enabled: AWS hibernates instances with at most 150 GiB of RAM "
            "(r5.8xlarge has 256 GiB): choose smaller instance types or turn hibernation off")


def test_rule_accelerated_family_does_not_hibernate():
    s = SpotInstanceSettings(instance_type="g5.xlarge")
    _raises(lambda: validate_spot_instance("nb", s),
            "PersistentSpotInstance 'nb': hibernation.enabled: instance type(s) g5.xlarge do not support hibernation "
            "(accelerated and bare-metal types do not): choose a supported family such as m6i, m6a, m7i, c6i, c7i, "
            "r5, r7i, t3, or use interruption behaviour 'stop' / warm pool state 'Stopped' with hibernation off")


def test_gpu_notebook_with_stop_behaviour_is_accepted():
    # GIVEN a GPU notebook that stops instead of hibernating THEN it validates
    validate_spot_instance("nb", SpotInstanceSettings(instance_type="g5.xlarge", interruption_behaviour="stop"))


def test_rule_attribute_based_selection_cannot_be_checked():
    _raises(lambda: validate_hibernation("X", (), HibernationSettings(enabled=True), root_encrypted=True),
            "X: hibernation.enabled needs explicit instance_types (attribute-based instance_requirements cannot be "
            "checked against the hibernation prerequisites): list the instance types")


def test_rule_os_allowance_positive():
    _raises(lambda: validate_hibernation("X", ("m6i.large",), HibernationSettings(enabled=True, os_and_apps_gib=0),
                                         root_encrypted=True),
            "X: hibernation.os_and_apps_gib must be at least 1 (got 0)")


def test_rule_group_hibernation_needs_on_demand():
    s = ComputeGroupSettings(instance_types=("m6i.large", "m6a.large"), hibernation=HibernationSettings(enabled=True))
    _raises(lambda: validate_settings("fleet", s, SUBNETS),
            f"{W}: hibernation.enabled on a group that launches Spot Instances: Auto Scaling can only terminate spot "
            "instances, never hibernate them. Use hibernation with a warm_pool on an on-demand group "
            "(on_demand_percentage_above_base=100), or a PersistentSpotInstance with interruption behaviour 'hibernate'")


def test_rule_group_checks_gpu_types():
    s = ComputeGroupSettings(instance_types=("g5.xlarge",), on_demand_percentage_above_base=100,
                             hibernation=HibernationSettings(enabled=True))
    _raises(lambda: validate_settings("fleet", s, SUBNETS),
            f"{W}: hibernation.enabled: instance type(s) g5.xlarge do not support hibernation (accelerated and "
            "bare-metal types do not): choose a supported family such as m6i, m6a, m7i, c6i, c7i, r5, r7i, t3, or use "
            "interruption behaviour 'stop' / warm pool state 'Stopped' with hibernation off")


def test_rule_warm_pool_state():
    s = ComputeGroupSettings(instance_types=("m6i.large",), on_demand_percentage_above_base=100,
                             warm_pool=WarmPoolSettings(pool_state="Sleeping"))
    _raises(lambda: validate_settings("fleet", s, SUBNETS),
            f"{W}: warm_pool.pool_state 'Sleeping' is not accepted by AWS: use one of Hibernated, Stopped, Running")


def test_rule_hibernated_pool_needs_hibernation():
    s = ComputeGroupSettings(instance_types=("m6i.large",), on_demand_percentage_above_base=100,
                             warm_pool=WarmPoolSettings())
    _raises(lambda: validate_settings("fleet", s, SUBNETS),
            f"{W}: warm_pool.pool_state 'Hibernated' needs hibernation.enabled=true (instances must be launched with "
            "hibernation configured): enable hibernation or use pool_state 'Stopped'")


def test_rule_warm_pool_not_on_spot():
    s = ComputeGroupSettings(warm_pool=WarmPoolSettings(pool_state="Stopped"))
    _raises(lambda: validate_settings("fleet", s, SUBNETS),
            f"{W}: AWS does not allow a warm pool on a group that launches Spot Instances or uses a mixed instances "
            "policy: set on_demand_percentage_above_base=100 and exactly one instance type (an on-demand standby "
            "beside the spot fleet), or remove warm_pool")


def test_rule_warm_pool_sizes():
    base = dict(instance_types=("m6i.large",), on_demand_percentage_above_base=100)
    _raises(lambda: validate_settings("fleet", ComputeGroupSettings(
        **base, warm_pool=WarmPoolSettings(pool_state="Stopped", min_size=-1)), SUBNETS),
        f"{W}: warm_pool.min_size must be 0 or more (got -1)")
    _raises(lambda: validate_settings("fleet", ComputeGroupSettings(
        **base, warm_pool=WarmPoolSettings(pool_state="Stopped", min_size=3, max_group_prepared_capacity=2)), SUBNETS),
        f"{W}: warm_pool.max_group_prepared_capacity (2) is below warm_pool.min_size (3): raise the cap or lower min_size")
    _raises(lambda: validate_settings("fleet", ComputeGroupSettings(
        **base, max_size=0, warm_pool=WarmPoolSettings(pool_state="Stopped", min_size=0)), SUBNETS),
        f"{W}: warm_pool needs max_size of 1 or more (got 0)")


def test_rule_interruption_behaviour():
    _raises(lambda: validate_spot_instance("nb", SpotInstanceSettings(interruption_behaviour="terminate")),
            "PersistentSpotInstance 'nb': interruption_behaviour 'terminate' would lose the instance: use 'hibernate' "
            "(keeps RAM) or 'stop' (keeps disks); a terminated notebook belongs in a compute group")
    _raises(lambda: validate_spot_instance("nb", SpotInstanceSettings(
        interruption_behaviour="stop", hibernation=HibernationSettings(enabled=True))),
        "PersistentSpotInstance 'nb': hibernation.enabled with interruption_behaviour 'stop': AWS requires "
        "'hibernate' when hibernation is configured; set interruption_behaviour='hibernate' or hibernation.enabled=false")


def test_rule_spot_instance_name_and_root_size():
    _raises(lambda: validate_spot_instance("Notebook!", SpotInstanceSettings()),
            "PersistentSpotInstance 'Notebook!': name must be 2-40 lowercase letters, digits or hyphens, starting with a letter")
    _raises(lambda: validate_spot_instance("nb", SpotInstanceSettings(root_volume_size_gib=4)),
            "PersistentSpotInstance 'nb': root_volume_size_gib must be at least 8 (got 4)")


def test_rule_spot_instance_checks_its_data_volume():
    from spotkit.constructs.data_volume import DataVolumeSettings

    _raises(lambda: validate_spot_instance("nb", SpotInstanceSettings(data_volume=DataVolumeSettings(size_gib=0))),
            "PersistentSpotInstance 'nb': data_volumes[0].size_gib must be between 1 and 16384 (got 0)")
