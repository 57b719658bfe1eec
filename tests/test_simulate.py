"""spotkit simulate: the trace format, the policy read from a synthesized stack, the comparison, and
bad input (one line, exit 1, a working next:)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from tests.support.cli import run_spotkit
from spotkit.simulate import policy as pol
from spotkit.simulate.traces import TraceError, load_trace_dir

TRACES = Path(__file__).parent / "fixtures" / "traces"
T16 = str(TRACES / "aws-v100-16node-2023-08")


@pytest.fixture(scope="module")
def gpu_json(tmp_path_factory) -> Path:
    """gpu_inference with its defaults, synthesized once."""
    from spotkit.stacks.gpu_inference import GpuInferenceConfig, GpuInferenceStack
    from tests.support.synth import build_stack

    doc, _ = build_stack(GpuInferenceStack, GpuInferenceConfig())
    path = tmp_path_factory.mktemp("gpu") / "cdk.tf.json"
    path.write_text(json.dumps(doc))
    return path


def write_trace(folder: Path, name: str, doc) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return folder


# --- traces -----------------------------------------------------------------------------------------

def test_the_kept_traces_read_with_their_zones_and_ticks():
    ts = load_trace_dir(T16)
    assert sorted(ts.zones) == ["us-east-2b", "us-west-2a", "us-west-2c"]
    assert ts.gap_seconds == 300 and ts.ticks == 3247
    assert ts.zones["us-west-2a"].probe_size == 16
    cap = ts.capacity(["us-east-2b"])[0]
    # a full probe (16 of 16) is unbounded room, a partial one its value
    assert cap[list(ts.zones["us-east-2b"].values).index(16)] == float("inf")
    assert cap[3] == 3


def test_a_one_node_trace_is_all_or_nothing(tmp_path):
    d = write_trace(tmp_path / "t", "us-east-1a_v100_1.json", {"metadata": {"gap_seconds": 60}, "data": [0, 1, 1]})
    assert list(load_trace_dir(d).capacity(["us-east-1a"])[0]) == [0, float("inf"), float("inf")]


@pytest.mark.parametrize("doc, fragment", [
    ("not json", "is not JSON"),
    ({"data": [1]}, 'has no "metadata" object'),
    ({"metadata": {"gap_seconds": "5m"}, "data": [1]}, "gap_seconds must be a whole number"),
    ({"metadata": {"gap_seconds": 300}, "data": []}, "non-empty list"),
    ({"metadata": {"gap_seconds": 300}, "data": [1, -1]}, "holds -1"),
])
def test_a_trace_not_in_the_format_names_the_file_and_the_format(tmp_path, doc, fragment):
    d = write_trace(tmp_path / "t", "us-east-1a_v100_1.json", doc)
    with pytest.raises(TraceError) as exc:
        load_trace_dir(d)
    assert fragment in exc.value.message and "us-east-1a_v100_1.json" in exc.value.message
    assert "gap_seconds" in exc.value.hint


def test_two_files_for_one_zone_are_refused(tmp_path):
    d = write_trace(tmp_path / "t", "us-east-1a_v100_1.json", {"metadata": {"gap_seconds": 300}, "data": [1]})
    write_trace(d, "us-east-1a_k80_1.json", {"metadata": {"gap_seconds": 300}, "data": [1]})
    with pytest.raises(TraceError, match="two files for zone us-east-1a"):
        load_trace_dir(d)


# --- the policy of the synthesized stack ------------------------------------------------------------

def test_the_default_gpu_inference_policy_is_read_back_from_its_json(gpu_json):
    # GIVEN gpu_inference synthesized with no config WHEN its policy is read back, with no config either
    sp = pol.read_stack_policy(json.loads(gpu_json.read_text()), "gpu_inference", {})
    # THEN it is the stack's default policy: 2 replicas wanted + 1 spare (the service's tag), all on spot
    # (on-demand base 0, weights 0:4), over 3 AZs, with the fallback on at its defaults
    assert (sp.total, sp.overprovision, sp.target, sp.on_demand, sp.spot_group) == (3, 1, 2, 0, 3)
    assert sp.strategy == (0, 0, 4)
    assert (sp.spot_group_base, sp.spot_group_on_demand_percent) == (0, 0)
    assert sp.families == ["g6", "g5", "g6e"]
    assert sp.zones == ["", "", ""]     # the first 3 AZs of the region, chosen at apply
    assert (sp.fallback.max_on_demand_base, sp.fallback.hold_minutes, sp.fallback.check_every_minutes) == (2, 30, 10)


def _service(doc: dict) -> dict:
    return next(iter(doc["resource"]["aws_ecs_service"].values()))


def test_a_json_without_the_overprovision_tag_takes_it_from_the_config(gpu_json):
    # GIVEN a JSON synthesized before the service carried its spare count
    doc = json.loads(gpu_json.read_text())
    del _service(doc)["tags"]
    # THEN the config's service.spot_overprovision says it, else there is no spare
    assert pol.read_stack_policy(doc, "gpu_inference", {"gpu_inference": {"service": {"spot_overprovision": 1}}}).target == 2
    assert pol.read_stack_policy(doc, "gpu_inference", {}).target == 3


def test_an_overprovision_tag_that_is_not_a_number_is_named(gpu_json):
    doc = json.loads(gpu_json.read_text())
    _service(doc)["tags"]["spotkit:spot-overprovision"] = "one"
    with pytest.raises(pol.PolicyError) as exc:
        pol.read_stack_policy(doc, "gpu_inference", {})
    assert exc.value.message == "stack gpu_inference: the service's spotkit:spot-overprovision tag is 'one', not a whole number"
    assert exc.value.hint == "synthesize the stack again: spotkit synth gpu_inference"


def test_sixteen_replicas_split_by_the_strategy(gpu_json):
    # GIVEN 16 replicas wanted + 1 spare, with one on-demand replica and the rest split 1:4
    doc = json.loads(gpu_json.read_text())
    svc = _service(doc)
    svc["desired_count"] = 17
    for item in svc["capacity_provider_strategy"]:
        if item["weight"] == 0:
            item["base"], item["weight"] = 1, 1
    sp = pol.read_stack_policy(doc, "gpu_inference", {})
    # THEN 1 base + 16 above split 1:4 -> 1 + 3 on-demand (16 * 0.2 = 3.2), 13 spot; target 17 - 1
    assert (sp.on_demand, sp.spot_group, sp.target) == (4, 13, 16)


def test_the_report_compares_four_policies_and_levers_on_a_real_trace(gpu_json):
    from spotkit.simulate import report

    sp = pol.read_stack_policy(json.loads(gpu_json.read_text()), "gpu_inference", {})
    rep = report.run(sp, [load_trace_dir(T16)], {})
    t = rep["traces"][0]
    by = {p["policy"]: p for p in t["policies"]}
    assert set(by) == {"stack", "on-demand", "one-zone-spot", "spothedge"}
    assert by["on-demand"]["cost_vs_on_demand"] == 1.0 and by["on-demand"]["availability"] == 1.0
    # spreading beats one zone on availability; any spot beats all on-demand on cost
    assert by["spothedge"]["availability"] > by["one-zone-spot"]["availability"]
    assert by["stack"]["cost_vs_on_demand"] < 1.0
    assert t["zones"] == ["us-east-2b", "us-west-2a", "us-west-2c"]
    assert any(lv["setting"].startswith("fallback.max_on_demand_base 2 -> 3") for lv in t["levers"])


# --- bad input through the CLI ----------------------------------------------------------------------

def assert_user_error(run, fragment: str, next_has: str) -> None:
    assert run.code == 1, (run.code, run.err)
    assert "Traceback" not in run.err and "Internal error" not in run.err
    errors = [line for line in run.err.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and fragment in errors[0], run.err
    assert run.next_lines and next_has in run.next_lines[0], run.err


def test_cli_zero_length_ticks(capsys, tmp_path, gpu_json):
    d = write_trace(tmp_path / "t", "us-east-1a_v100_1.json", {"metadata": {"gap_seconds": 0}, "data": [1]})
    run = run_spotkit(capsys, "simulate", "gpu_inference", "--tf-json", str(gpu_json), "--trace", str(d))
    assert_user_error(run, "ticks of zero length", next_has="set metadata.gap_seconds")


def test_cli_trace_not_in_the_format(capsys, tmp_path, gpu_json):
    d = write_trace(tmp_path / "t", "us-east-1a.json", "a,b\n1,2\n")
    run = run_spotkit(capsys, "simulate", "gpu_inference", "--tf-json", str(gpu_json), "--trace", str(d))
    assert_user_error(run, "is not JSON", next_has="gap_seconds")


def test_cli_no_trace_directory(capsys, gpu_json):
    run = run_spotkit(capsys, "simulate", "gpu_inference", "--tf-json", str(gpu_json), "--trace", "/nonexistent")
    assert_user_error(run, "is not a directory", next_has="--trace tests/fixtures/traces/aws-v100-16node-2023-08")


def test_cli_stack_without_spot_capacity(capsys, tmp_path, gpu_json):
    doc = json.loads(gpu_json.read_text())
    for g in doc["resource"]["aws_autoscaling_group"].values():
        g["mixed_instances_policy"]["instances_distribution"]["on_demand_percentage_above_base_capacity"] = 100
    path = tmp_path / "cdk.tf.json"
    path.write_text(json.dumps(doc))
    run = run_spotkit(capsys, "simulate", "gpu_inference", "--tf-json", str(path), "--trace", T16)
    assert_user_error(run, "no spot capacity to simulate", next_has="spotkit simulate gpu_inference --trace")


def test_cli_zones_that_do_not_match(capsys, tmp_path, gpu_json):
    doc = copy.deepcopy(json.loads(gpu_json.read_text()))
    for s in doc["resource"]["aws_subnet"].values():
        s["availability_zone"] = "eu-west-1a"
    path = tmp_path / "cdk.tf.json"
    path.write_text(json.dumps(doc))
    run = run_spotkit(capsys, "simulate", "gpu_inference", "--tf-json", str(path), "--trace", T16)
    assert_user_error(run, "the stack's zone eu-west-1a has no trace", next_has="--zones us-east-2b,us-west-2a,us-west-2c")
    # the hint works: with it the run succeeds
    ok = run_spotkit(capsys, "simulate", "gpu_inference", "--tf-json", str(path), "--trace", T16,
                     "--zones", "us-east-2b,us-west-2a,us-west-2c")
    assert ok.code == 0, ok.err
    assert "spothedge" in ok.out


def test_cli_json_output(capsys, gpu_json):
    run = run_spotkit(capsys, "simulate", "gpu_inference", "--tf-json", str(gpu_json), "--trace", T16, "-o", "json")
    assert run.code == 0, run.err
    doc = json.loads(run.out)
    assert doc["target"] == 2 and doc["traces"][0]["trace"] == "aws-v100-16node-2023-08"
    assert {"saving_gap_points", "availability_gap_points", "within_target"} <= set(doc["traces"][0]["vs_spothedge"])


def test_cli_plot_without_matplotlib_is_skipped_with_a_note(capsys, tmp_path, gpu_json, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError("no matplotlib")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    out = tmp_path / "p.png"
    run = run_spotkit(capsys, "simulate", "gpu_inference", "--tf-json", str(gpu_json), "--trace", T16,
                      "--plot", str(out))
    assert run.code == 0, run.err
    assert "plot skipped: matplotlib is not installed" in run.out
    assert not out.exists()


def test_training_policy_is_its_group_alone_with_the_fallback_off():
    from spotkit.stacks.training import TrainingConfig, TrainingStack
    from tests.support.synth import build_stack

    doc, _ = build_stack(TrainingStack, TrainingConfig())
    sp = pol.read_stack_policy(doc, "training", {})
    # no ECS service: the group's max_size (4), all spot (base 0, 0% on-demand), fallback off
    assert (sp.total, sp.on_demand, sp.spot_group, sp.fallback, sp.strategy) == (4, 0, 4, None, None)
    assert sp.notes == ["4 instances: the group's max_size (simulate.replicas to change)"]
    sp = pol.read_stack_policy(doc, "training", {"simulate": {"replicas": 6}})
    assert sp.spot_group == 6


def test_an_unknown_simulate_setting_is_named():
    with pytest.raises(pol.PolicyError) as exc:
        pol.settings({"simulate": {"boot_secs": 600}})
    assert exc.value.message == "simulate.boot_secs: unknown setting"
    assert "boot_seconds" in exc.value.hint


def test_cli_plot_is_a_png_with_matplotlib(capsys, tmp_path, gpu_json):
    pytest.importorskip("matplotlib")
    out = tmp_path / "p.png"
    run = run_spotkit(capsys, "simulate", "gpu_inference", "--tf-json", str(gpu_json), "--trace", T16,
                      "--plot", str(out))
    assert run.code == 0, run.err
    assert f"plot: {out}" in run.out
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_without_a_trace(capsys):
    run = run_spotkit(capsys, "simulate", "gpu_inference")
    assert_user_error(run, "no trace given",
                      next_has="spotkit simulate gpu_inference --trace tests/fixtures/traces/aws-v100-16node-2023-08")


def test_cli_unknown_stack_fails_before_synthesis(capsys):
    run = run_spotkit(capsys, "simulate", "nope", "--trace", T16)
    assert_user_error(run, "unknown stack 'nope'", next_has="stacks are:")
