"""Plans at Terraform's own speed: the synthesis cache, init only when needed, and the streamed plan.

The synthesis tests synthesize for real (the training stack) into a private cache folder; the Terraform
tests run the real binary on a configuration that needs no provider download (``terraform_data`` is
built into Terraform), so they run wherever Terraform is installed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from spotkit.constructs.annotations import SpotkitWarning
from spotkit import synth_cache
from spotkit.deploy import planning, workflow
from spotkit.deploy.binary import find_terraform
from spotkit.deploy.runner import TerraformCommandFailed, TerraformRunner
from spotkit.synth import synthesize

TERRAFORM = shutil.which("terraform") or shutil.which("tofu")

WARNING_CONFIG = {"training": {"group": {"spot_max_price": "0.50"}}}


# --- the synthesis cache -------------------------------------------------------------------------------

def test_the_key_follows_every_input(monkeypatch, tmp_path):
    base = synth_cache.stack_key("training", {})
    # another stack, another config, another engine version: another key
    assert synth_cache.stack_key("notebook", {}) != base
    assert synth_cache.stack_key("training", {"training": {"group": {"max_size": 5}}}) != base
    assert synth_cache.stack_key("training", {"settings": {"provider_mirror": "auto"}}) != base
    monkeypatch.setattr(synth_cache, "_version", lambda dist: "9.9.9" if dist == "cdktn" else "1")
    assert synth_cache.stack_key("training", {}) != base
    # any byte of the source tree changes the digest
    root = tmp_path / "src"
    dirs = [root / package for package in ("toolkit", "modules", "stacks")]
    for d in dirs:
        d.mkdir(parents=True)
        (d / "a.py").write_text("x = 1\n")
    first = synth_cache.source_digest(dirs)
    (root / "modules" / "a.py").write_text("x = 2\n")
    assert synth_cache.source_digest(dirs) != first
    (root / "modules" / "a.py").write_text("x = 1\n")
    assert synth_cache.source_digest(dirs) == first
    (root / "toolkit" / "agent.py").write_text("")  # a new file counts too
    assert synth_cache.source_digest(dirs) != first
    # the folders synthesis reads: the package, its constructs and its stacks
    assert [d.name for d in synth_cache.source_dirs()] == ["toolkit", "modules", "stacks"]


def test_an_unchanged_stack_comes_from_the_cache_without_the_engine(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    # GIVEN a first synthesis, with a construct warning (a spot max price)
    stats: dict = {}
    with pytest.warns(SpotkitWarning, match="spot_max_price"):
        first = synthesize(["training"], tmp_path / "out1", WARNING_CONFIG, cache_folder=cache, stats=stats)[0]
    assert stats == {"cached": [], "synthesized": ["training"]}

    # WHEN the same stack is synthesized again (the engine made unusable, to prove it is not used)
    import spotkit.stacks.app

    monkeypatch.setattr(spotkit.stacks.app, "build_app", lambda *a, **k: pytest.fail("the engine ran for an unchanged stack"))
    stats = {}
    with pytest.warns(SpotkitWarning, match="spot_max_price"):  # THEN its warning is shown again
        second = synthesize(["training"], tmp_path / "out2", WARNING_CONFIG, cache_folder=cache, stats=stats)[0]
    # AND the output is the same, assets included
    assert stats == {"cached": ["training"], "synthesized": []}
    assert second.read_bytes() == first.read_bytes()
    assets = lambda p: sorted(str(x.relative_to(p.parent)) for x in p.parent.rglob("*") if x.is_file())
    assert assets(second) == assets(first)


def test_a_damaged_entry_is_rebuilt_and_no_cache_forces_synthesis(tmp_path):
    cache = tmp_path / "cache"
    path = synthesize(["training"], tmp_path / "out", {}, cache_folder=cache)[0]
    key = synth_cache.stack_key("training", {})
    entry = cache / key / "stack" / "cdk.tf.json"
    entry.write_text(entry.read_text().replace("spotkit-training", "tampered"))
    assert synth_cache.SynthCache(cache).lookup(key) is None  # never used

    stats: dict = {}
    again = synthesize(["training"], tmp_path / "out", {}, cache_folder=cache, stats=stats)[0]
    assert stats["synthesized"] == ["training"]
    assert "tampered" not in again.read_text()
    assert synth_cache.SynthCache(cache).lookup(key) is not None  # whole again

    stats = {}
    synthesize(["training"], tmp_path / "out", {}, use_cache=False, cache_folder=cache, stats=stats)
    assert stats["synthesized"] == ["training"]
    assert path.is_file()


def test_the_cache_can_be_turned_off(monkeypatch, tmp_path):
    monkeypatch.setenv(synth_cache.CACHE_ENV, "off")
    assert synth_cache.cache_dir(tmp_path) is None
    monkeypatch.setenv(synth_cache.CACHE_ENV, str(tmp_path / "c"))
    assert synth_cache.cache_dir(tmp_path / "project") == (tmp_path / "c").resolve()
    monkeypatch.delenv(synth_cache.CACHE_ENV)
    assert synth_cache.cache_dir(tmp_path / "project") == tmp_path / "project" / "synth-cache"


# --- the streamed plan ----------------------------------------------------------------------------------

def _line(**msg) -> str:
    return json.dumps(msg)


def test_the_streamed_plan_summarizes_like_the_plan_json():
    lines = "\n".join([
        _line(type="version", terraform="1.11.4"),
        _line(type="planned_change", change={"resource": {"addr": "aws_sqs_queue.q", "resource_type": "aws_sqs_queue"}, "action": "create"}),
        _line(type="planned_change", change={"resource": {"addr": "aws_iam_role.r", "resource_type": "aws_iam_role"}, "action": "update"}),
        _line(type="planned_change", change={"resource": {"addr": "aws_efs_file_system.f", "resource_type": "aws_efs_file_system"}, "action": "replace"}),
        _line(type="planned_change", change={"resource": {"addr": "aws_ebs_snapshot.s", "resource_type": "aws_ebs_snapshot"}, "action": "delete"}),
        _line(type="planned_change", change={"resource": {"addr": "data.aws_ami.a", "resource_type": "aws_ami"}, "action": "read"}),
        _line(type="outputs", outputs={"queue": {"action": "create"}, "same": {"action": "noop"}}),
        _line(type="change_summary", changes={"add": 2, "change": 1, "remove": 2, "operation": "plan"}),
    ])
    streamed = planning.summarize_plan_stream(lines)
    s = streamed.summary
    assert s.counts == {"add": 2, "change": 1, "destroy": 2}
    assert [c.address for c in s.replacements] == ["aws_efs_file_system.f"]
    assert [(c.address, what) for c, what in s.data_loss] == [("aws_ebs_snapshot.s", "EBS snapshot"),
                                                              ("aws_efs_file_system.f", "EFS file system")]
    assert s.output_changes == ["queue"]
    assert streamed.needs_values is False and streamed.errors == []


def test_a_deleted_volume_needs_the_full_plan_to_decide():
    line = _line(type="planned_change", change={"resource": {"addr": "aws_ebs_volume.v", "resource_type": "aws_ebs_volume"},
                                                "action": "delete"})
    streamed = planning.summarize_plan_stream(line)
    assert streamed.needs_values is True
    assert streamed.summary.data_loss == []  # decided from the plan JSON, where the tags are


def _workdir(path: Path) -> workflow.Workdir:
    return workflow.Workdir(stack="t", target="aws", path=path, runner=TerraformRunner(path, find_terraform(None), {}))


def _write_config(path: Path, names: list[str], backend: str | None = None) -> None:
    doc: dict = {"resource": {"terraform_data": {n: {"input": n} for n in names}},
                 "output": {"names": {"value": names}}}
    if backend:
        doc["terraform"] = {"backend": {"local": {"path": backend}}}
    (path / "main.tf.json").write_text(json.dumps(doc))


@pytest.mark.terraform
@pytest.mark.skipif(TERRAFORM is None, reason="terraform/tofu not on PATH (install Terraform >= 1.5)")
def test_init_runs_only_when_its_inputs_change(tmp_path):
    wd = _workdir(tmp_path)
    _write_config(tmp_path, ["a"])
    assert workflow.init_needed(wd)
    assert workflow.init(wd) is True
    assert not workflow.init_needed(wd)
    assert workflow.init(wd) is False  # nothing changed: no second init
    _write_config(tmp_path, ["a", "b"])  # resources changed, nothing init reads did
    assert not workflow.init_needed(wd)
    _write_config(tmp_path, ["a", "b"], backend="other.tfstate")  # the backend changed
    assert workflow.init_needed(wd)


@pytest.mark.terraform
@pytest.mark.skipif(TERRAFORM is None, reason="terraform/tofu not on PATH (install Terraform >= 1.5)")
def test_a_real_plan_is_summarized_from_its_stream_and_writes_json_only_when_asked(tmp_path):
    wd = _workdir(tmp_path)
    _write_config(tmp_path, ["a", "b"])
    workflow.init(wd)
    result = workflow.plan(wd)
    assert [c.address for c in result.summary.adds] == ["terraform_data.a", "terraform_data.b"]
    assert result.summary.output_changes == ["names"]
    assert result.json_file is None and result.plan_file.is_file()
    # with --out (the CI artifact) the plan JSON is written, and it agrees with the stream
    out = tmp_path / "ci" / "t.tfplan"
    with_json = workflow.plan(wd, out)
    assert with_json.json_file == out.with_name("t.tfplan.json")
    assert with_json.summary.counts == result.summary.counts == {"add": 2, "change": 0, "destroy": 0}


@pytest.mark.terraform
@pytest.mark.skipif(TERRAFORM is None, reason="terraform/tofu not on PATH (install Terraform >= 1.5)")
def test_a_plan_that_needs_init_runs_it_and_an_error_is_reported_plainly(tmp_path):
    wd = _workdir(tmp_path)
    _write_config(tmp_path, ["a"])
    workflow.init(wd)
    # GIVEN a module added while the init marker claims nothing changed (a marker that lies)
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "main.tf.json").write_text(json.dumps({"resource": {"terraform_data": {"inner": {"input": 1}}}}))
    doc = json.loads((tmp_path / "main.tf.json").read_text())
    doc["module"] = {"m": {"source": "./m"}}
    (tmp_path / "main.tf.json").write_text(json.dumps(doc))
    (tmp_path / ".terraform" / workflow.INIT_FINGERPRINT).write_text(json.dumps({"fingerprint": workflow.init_fingerprint(wd)}))
    assert not workflow.init_needed(wd)
    # WHEN planning THEN Terraform's "module not installed" makes spotkit init and plan once more
    result = workflow.plan(wd)
    assert [c.address for c in result.summary.adds] == ["module.m.terraform_data.inner", "terraform_data.a"]
    # AND a configuration error is reported with Terraform's diagnostic, not a JSON dump
    (tmp_path / "main.tf.json").write_text(json.dumps({"resource": {"terraform_data": {"x": {"input": "${nosuch.thing.id}"}}}}))
    with pytest.raises(TerraformCommandFailed) as err:
        workflow.plan(wd)
    assert "Reference to undeclared resource" in str(err.value)
    assert '"@level"' not in str(err.value)


def test_a_second_store_of_the_same_entry_keeps_the_first_and_a_damaged_one_is_replaced(tmp_path):
    stack = tmp_path / "stack"
    (stack / "assets").mkdir(parents=True)
    (stack / "cdk.tf.json").write_text('{"resource": {}}')
    (stack / "assets" / "a.zip").write_bytes(b"zip")
    cache = synth_cache.SynthCache(tmp_path / "cache")
    cache.store("k", stack, ["w1"])
    first = (tmp_path / "cache" / "k" / "entry.json").stat().st_ino
    cache.store("k", stack, ["w2"])  # another process stored it meanwhile: the whole entry stays as it was
    assert (tmp_path / "cache" / "k" / "entry.json").stat().st_ino == first
    assert cache.warnings("k") == ["w1"]
    (tmp_path / "cache" / "k" / "stack" / "cdk.tf.json").write_text("damaged")
    assert cache.lookup("k") is None
    cache.store("k", stack, ["w3"])  # a damaged entry is replaced in one rename
    assert cache.lookup("k") is not None and cache.warnings("k") == ["w3"]
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".")]  # no staging left
