"""The CLI as a user runs it: a real `spotkit` process in a temp dir."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SPOTKIT = [sys.executable, "-m", "toolkit.cli.main"]
ROOT = Path(__file__).resolve().parents[1]


def run(args, cwd, env=None, timeout=300):
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(SPOTKIT + args, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    # WHEN a user runs `spotkit synth training` in an empty directory
    result = run(["synth", "training"], cwd=out)
    return out, result


def test_synth_writes_terraform_json_per_stack(synthesized):
    out, result = synthesized
    assert result.returncode == 0, result.stderr
    doc = json.loads((out / "cdktf.out" / "stacks" / "training" / "cdk.tf.json").read_text())
    assert doc["terraform"]["required_providers"]["aws"]["version"] == ">= 5.100, < 7"
    assert "aws_autoscaling_group" in doc["resource"]


def test_synth_prints_summary(synthesized):
    _, result = synthesized
    assert "training:" in result.stdout
    assert "1  aws_autoscaling_group" in result.stdout
    assert "AZs: 2" in result.stdout
    assert "m6i.large, m6a.large, m5.large" in result.stdout
    assert "0 on-demand base, then 0% on-demand / 100% spot" in result.stdout


def test_synth_json_output_with_config(tmp_path):
    cfg = tmp_path / "spotkit.yaml"
    cfg.write_text("training:\n  group:\n    on_demand_base_capacity: 1\n    on_demand_percentage_above_base: 20\n"
                   "  network:\n    az_count: 3\n")
    result = run(["--output", "json", "--config", str(cfg), "synth", "training", "--out", "new/dir/o"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (summary,) = json.loads(result.stdout)
    (group,) = summary["groups"]
    assert summary["az_count"] == 3
    assert group["on_demand_base"] == 1
    assert group["spot_percent_above_base"] == 80
    assert group["instance_types"] == ["m6i.large", "m6a.large", "m5.large"]


def test_bad_config_exits_1_without_traceback(tmp_path):
    cfg = tmp_path / "spotkit.yaml"
    cfg.write_text("training:\n  group:\n    max_size: lots\n")
    result = run(["--config", str(cfg), "synth", "training"], cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "Error: training.group.max_size: expected a whole number, got 'lots'" in result.stderr


def test_invalid_settings_exit_1_with_the_rule(tmp_path):
    cfg = tmp_path / "spotkit.yaml"
    cfg.write_text("training:\n  group:\n    min_size: 5\n    max_size: 2\n")
    result = run(["--config", str(cfg), "synth", "training"], cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "min_size (5) is greater than max_size (2)" in result.stderr


def test_unknown_stack_in_config(tmp_path):
    cfg = tmp_path / "spotkit.yaml"
    cfg.write_text("trainig:\n  name: x\n")
    result = run(["--config", str(cfg), "synth", "training"], cwd=tmp_path)
    assert result.returncode == 1
    assert "Error: trainig: not a stack name" in result.stderr


def test_unknown_stack_name(tmp_path):
    result = run(["synth", "nope"], cwd=tmp_path)
    assert result.returncode == 1
    assert "Error: unknown stack 'nope'" in result.stderr
    assert "next: stacks are:" in result.stderr


def test_missing_node_is_a_user_error(tmp_path):
    # GIVEN a PATH without Node.js
    result = run(["synth", "training"], cwd=tmp_path, env={"PATH": str(tmp_path)})
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "Error: Node.js was not found on PATH" in result.stderr
    assert "next: install Node.js 20 or newer" in result.stderr


def test_stacks_lists_descriptions(tmp_path):
    result = run(["--output", "json", "stacks"], cwd=tmp_path)
    assert result.returncode == 0
    names = {s["name"]: s["description"] for s in json.loads(result.stdout)}
    assert names["training"].startswith("Spot training fleet")
