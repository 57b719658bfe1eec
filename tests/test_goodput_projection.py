"""Issue 16 items 3 and 4 on paper: the per-interruption cost carried to AWS's 120 s notice, and the
inference hand-off derived from what gpu_inference / ecs_spot synthesize (ECS managed draining starts
the replacement task at the notice, not at the reclaim)."""

from __future__ import annotations

import json

import pytest

from spotkit.stacks.ecs_spot import EcsSpotConfig, EcsSpotStack
from spotkit.stacks.gpu_inference import GpuInferenceConfig, GpuInferenceStack
from tests.support.synth import build_stack, local_value, one, resources
from spotkit.rehearsal.goodput import inference_handoff, training_costs


# --- training --------------------------------------------------------------------------------------

@pytest.mark.parametrize("save, restore, boot", [(5, 10, 60), (30, 60, 90), (60, 120, 180)])
def test_checkpoint_and_continue_idles_less_than_stop_and_the_baseline(save, restore, boot):
    costs = training_costs(save=save, restore=restore, boot=boot)
    after, before, base = costs["checkpoint-and-continue"], costs["stop"], costs["baseline"]
    assert after.idle < before.idle and after.overhead < base.overhead
    assert before.idle > 120 - 1  # stop pays the whole window on top of the boot
    assert after.lost == before.lost == 0


def test_a_replacement_booting_in_the_window_costs_two_saves_and_a_restore():
    costs = training_costs(save=5, restore=10, boot=60, margin=15, detect=1)
    # booted at 61 s, the final checkpoint is done at 105 s: 44 s of standby, no boot in the idle time
    assert costs["checkpoint-and-continue"].idle == 2 * 5 + 10
    assert costs["checkpoint-and-continue"].standby == 105 - 61


def test_a_rebalance_lead_hides_a_boot_longer_than_the_notice():
    slow = training_costs(save=10, restore=20, boot=180)
    early = training_costs(save=10, restore=20, boot=180, rebalance_lead=120)
    assert early["checkpoint-and-continue"].idle < slow["checkpoint-and-continue"].idle
    assert slow["checkpoint-and-continue"].idle == 2 * 10 + 20 + (1 + 180 - 105)


def test_no_time_for_a_final_checkpoint_is_refused():
    with pytest.raises(ValueError, match=r"notice \(120.0\) must exceed margin \+ save"):
        training_costs(save=110, restore=1, boot=1)


# --- inference: what the stacks synthesize ----------------------------------------------------------

@pytest.fixture(scope="module")
def gpu_stack():
    doc, _ = build_stack(GpuInferenceStack, GpuInferenceConfig())
    return doc


def test_gpu_inference_starts_the_replacement_task_at_the_notice(gpu_stack):
    # GIVEN gpu_inference as synthesized
    script = local_value(gpu_stack, "ecs_spot-group")
    providers = list(resources(gpu_stack, "aws_ecs_capacity_provider").values())
    svc = one(gpu_stack, "aws_ecs_service")
    # THEN the ECS agent drains the instance on the spot notice (not at the reclaim), capacity providers
    # drain before the group terminates, and the service may start the replacement before it stops the old
    assert "ECS_ENABLE_SPOT_INSTANCE_DRAINING=true\n" in script
    assert providers and all(p["auto_scaling_group_provider"]["managed_draining"] == "ENABLED" for p in providers)
    assert (svc["deployment_minimum_healthy_percent"], svc["deployment_maximum_percent"]) == (100, 200)
    # AND the old task is out of the load balancer and stopped inside the notice
    tg = one(gpu_stack, "aws_lb_target_group")
    (definition,) = json.loads(one(gpu_stack, "aws_ecs_task_definition")["container_definitions"])
    assert int(tg["deregistration_delay"]) + definition["stopTimeout"] <= 120


def test_ecs_spot_drains_on_the_notice():
    doc, _ = build_stack(EcsSpotStack, EcsSpotConfig())
    assert "ECS_ENABLE_SPOT_INSTANCE_DRAINING=true\n" in local_value(doc, "ecs_spot-group")
    providers = list(resources(doc, "aws_ecs_capacity_provider").values())
    assert providers and all(p["auto_scaling_group_provider"]["managed_draining"] == "ENABLED" for p in providers)


def test_derived_hand_off_from_the_synthesized_health_check(gpu_stack):
    hc = one(gpu_stack, "aws_lb_target_group")["health_check"]
    timing = dict(task_start=60, health_interval=hc["interval"], healthy_threshold=hc["healthy_threshold"],
                  unhealthy_threshold=hc["unhealthy_threshold"])
    drained = inference_handoff(draining=True, **timing)
    at_reclaim = inference_handoff(draining=False, **timing)
    # THEN with draining the replacement serves before the reclaim: no replica missing, no dead target
    assert drained.replacement_serving_at < 120 and drained.capacity_gap == 0 and drained.failed_routing == 0
    assert at_reclaim.replacement_serving_at > 120 and at_reclaim.capacity_gap > 0 and at_reclaim.failed_routing > 0
    # AND a cluster without room (an instance boots first) still gains the whole notice window
    cold = inference_handoff(draining=True, boot=90, **timing)
    cold_reclaim = inference_handoff(draining=False, boot=90, **timing)
    assert cold_reclaim.capacity_gap - cold.capacity_gap == pytest.approx(120 - 5)
