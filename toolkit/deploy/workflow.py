"""Plan, apply, destroy and read outputs of a stack, per target, in its own working directory.

``<project dir>/<target>/<stack>/`` holds a copy of the synthesized ``cdk.tf.json`` (so what the local
target changes never reaches ``--target aws``), the provider override of the local target, the
``.terraform`` directory, the plans, and for the local target its state.

State (backend): ``settings.backend`` in the ``--config`` file selects S3 with DynamoDB locking::

    settings:
      backend: {type: s3, bucket: my-tf-state, key: "spotkit/{stack}.tfstate", region: us-east-1,
                dynamodb_table: tf-locks}

Without it, the state is a local file: what cdktn synthesized (``terraform.<stack>.tfstate`` in the
directory spotkit runs from, outside ``.spotkit`` so ``make clean`` never removes the state of real
infrastructure). The local target always keeps its state in its working directory; the state of an
emulator that has been restarted since (its id differs) is set aside, never applied to the new one.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from spotkit.deploy import local_target, mirror
from spotkit.deploy.binary import TerraformBinary, find_terraform
from spotkit.config import backend_key, check_settings
from spotkit.deploy.planning import PlanSummary, summarize_plan, summarize_plan_stream
from spotkit.deploy.runner import IsFlagged, TerraformRunner, ensure_not_running
from spotkit.errors import ConfigError, ToolkitError

TARGETS = ("local", "aws")
DEFAULT_PARALLELISM = 20
OVERRIDE_FILE = "spotkit_local_override.tf.json"
EMULATOR_ID_FILE = ".spotkit-emulator-id"


@dataclass(frozen=True)
class DeployOptions:
    project: Path
    target: str = "aws"
    terraform_bin: str | None = None
    provider_mirror: str | None = None
    endpoint_url: str | None = None
    parallelism: int = DEFAULT_PARALLELISM
    config: Mapping[str, Any] = field(default_factory=dict)
    use_cache: bool = True  # the synthesis cache (toolkit/synth_cache.py); --no-cache turns it off


@dataclass
class Workdir:
    stack: str
    target: str
    path: Path
    runner: TerraformRunner
    removed: list[local_target.PrunedItem] = field(default_factory=list)
    synthesized_from_cache: bool = False
    synthesized: Path | None = None
    services: list[str] = field(default_factory=list)
    mirror: Path | None = None
    stale_state: Path | None = None


@dataclass
class PlanResult:
    plan_file: Path
    json_file: Path | None  # None when the plan's JSON was not needed (see ``plan``)
    summary: PlanSummary
    seconds: float


def settings(config: Mapping[str, Any]) -> Mapping[str, Any]:
    return check_settings((config or {}).get("settings"))


def backend_block(stack: str, config: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ``terraform.backend`` for ``--target aws`` from ``settings.backend``; None keeps the local file."""
    raw = settings(config).get("backend")
    if raw in (None, "local") or (isinstance(raw, Mapping) and raw.get("type", "local") == "local"):
        return None
    if not isinstance(raw, Mapping):
        raise ConfigError(f"settings.backend: expected a mapping, got {raw!r}", hint="e.g. {type: s3, bucket: ..., dynamodb_table: ...}")
    if raw.get("type") != "s3":
        raise ConfigError(f"settings.backend.type: expected 'local' or 's3', got {raw.get('type')!r}")
    if not raw.get("bucket"):
        raise ConfigError("settings.backend.bucket: required for the s3 backend", hint="name the S3 bucket that holds the state")
    block = {k: v for k, v in raw.items() if k != "type"}
    block["key"] = backend_key(str(block.get("key") or "spotkit/{stack}.tfstate"), stack)
    block.setdefault("encrypt", True)
    return {"s3": block}


def _check_target(target: str) -> None:
    if target not in TARGETS:
        raise ToolkitError(f"unknown target {target!r}", hint="use --target local or --target aws")


def workdir_path(project: Path, target: str, stack: str) -> Path:
    return project / target / stack


def _runner(path: Path, opts: DeployOptions, binary: TerraformBinary | None = None) -> tuple[TerraformRunner, Path | None]:
    binary = binary or find_terraform(opts.terraform_bin)
    mirror_dir = mirror.resolve(opts.provider_mirror, settings(opts.config).get("provider_mirror"))
    env: dict[str, str] = {}
    if mirror_dir is not None:
        rc = opts.project / "terraformrc"
        rc.write_text(mirror.render_cli_config(mirror_dir))
        env["TF_CLI_CONFIG_FILE"] = str(rc)
    return TerraformRunner(path, binary, env), mirror_dir


def local_endpoint(opts: DeployOptions) -> tuple[str, str]:
    """(emulator url, emulator id) for the local target: --endpoint-url, else the running emulator.

    The id is known however the endpoint was given (``emulator.identify``), so the state of an emulator
    that has been restarted since is always set aside."""
    from spotkit.rehearsal.local import emulator

    if opts.endpoint_url:
        url = opts.endpoint_url.rstrip("/")
        return url, emulator.identify(url, opts.project)

    st = emulator.status(opts.project)
    if not st.running or st.state is None:
        raise ToolkitError(f"the local emulator is not running ({st.detail})",
                           hint="spotkit local start   # then run this command again")
    return st.state.url, st.state.instance_id


def prepare(stack: str, opts: DeployOptions, synthesized: Path | None = None) -> Workdir:
    """Synthesize ``stack`` (unless ``synthesized`` is given) and write its working directory for the target."""
    _check_target(opts.target)
    binary = find_terraform(opts.terraform_bin)  # fail before the slow synthesis
    # A Terraform left running by a spotkit that was killed: touch none of its files (before the synthesis too).
    ensure_not_running(workdir_path(opts.project, opts.target, stack))
    opts.project.mkdir(parents=True, exist_ok=True)
    from_cache = False
    if synthesized is None:
        from spotkit import synth_cache
        from spotkit.synth import synthesize

        outdir = opts.project / "synth"
        outdir.mkdir(parents=True, exist_ok=True)
        stats: dict = {}
        synthesized = synthesize([stack], outdir, opts.config, use_cache=opts.use_cache,
                                 cache_folder=synth_cache.cache_dir(opts.project), stats=stats)[0]
        from_cache = bool(stats.get("cached"))
    doc = json.loads(Path(synthesized).read_text())
    path = workdir_path(opts.project, opts.target, stack)
    path.mkdir(parents=True, exist_ok=True)
    # Files the stack refers to by relative path (cdktn assets: Lambda zips...) come along.
    import shutil

    for item in Path(synthesized).parent.iterdir():
        if item.name == "assets" and item.is_dir():
            shutil.rmtree(path / "assets", ignore_errors=True)
            shutil.copytree(item, path / "assets")
    runner, mirror_dir = _runner(path, opts, binary)
    wd = Workdir(stack=stack, target=opts.target, path=path, runner=runner, mirror=mirror_dir,
                 synthesized_from_cache=from_cache, synthesized=Path(synthesized))
    terraform_block = doc.setdefault("terraform", {})
    if opts.target == "local":
        url, emulator_id = local_endpoint(opts)
        rendering = local_target.render(doc, url)
        doc, wd.removed, wd.services = rendering.doc, rendering.removed, rendering.services
        doc["terraform"]["backend"] = {"local": {"path": "terraform.tfstate"}}
        (path / OVERRIDE_FILE).write_text(json.dumps(rendering.override, indent=2))
        wd.stale_state = _set_aside_stale_state(path, emulator_id)
    else:
        backend = backend_block(stack, opts.config)
        if backend is not None:
            terraform_block["backend"] = backend
        (path / OVERRIDE_FILE).unlink(missing_ok=True)
    (path / "cdk.tf.json").write_text(json.dumps(doc, indent=2))
    return wd


def _set_aside_stale_state(path: Path, emulator_id: str) -> Path | None:
    """Move the state aside unless it was written against this very emulator (a state with no record of
    its emulator, from an older spotkit, counts as stale: the emulator it was made on is unknown)."""
    marker = path / EMULATOR_ID_FILE
    previous = marker.read_text().strip() if marker.is_file() else None
    state = path / "terraform.tfstate"
    moved = None
    if previous != emulator_id and state.is_file():
        moved = path / f"terraform.tfstate.emulator-{previous or 'unknown'}"
        n = 1
        while moved.exists():
            n += 1
            moved = path / f"terraform.tfstate.emulator-{previous or 'unknown'}.{n}"
        state.rename(moved)
    marker.write_text(emulator_id)
    return moved


def open_workdir(stack: str, opts: DeployOptions) -> Workdir:
    """A working directory written by an earlier ``prepare`` (for ``apply --plan``, ``output``)."""
    _check_target(opts.target)
    path = workdir_path(opts.project, opts.target, stack)
    if not (path / "cdk.tf.json").is_file():
        raise ToolkitError(f"{stack} has no working directory for target {opts.target} ({path})",
                           hint=f"run 'spotkit plan {stack} --target {opts.target}' first")
    runner, mirror_dir = _runner(path, opts)
    return Workdir(stack=stack, target=opts.target, path=path, runner=runner, mirror=mirror_dir)


INIT_FINGERPRINT = "spotkit-init.json"
# Terraform's own words when a working directory needs `terraform init` again.
INIT_REQUIRED = ("terraform init", "Inconsistent dependency lock file", "Backend initialization required",
                 "Required plugins are not installed", "Module not installed", "provider registry.terraform.io",
                 "Backend configuration changed", "Missing required provider")


def init_fingerprint(wd: Workdir) -> str:
    """sha256 of what `terraform init` depends on: the terraform blocks (required providers, backend) of
    every configuration file, module sources, the CLI config (provider mirror), the lock file and the binary."""
    import hashlib

    parts: dict[str, Any] = {"binary": [wd.runner.binary.path, str(getattr(wd.runner.binary, "version", ""))]}
    for name in sorted(p.name for p in wd.path.glob("*.tf.json")):
        try:
            doc = json.loads((wd.path / name).read_text())
        except (OSError, ValueError):
            doc = {"unreadable": name}
        parts[name] = {"terraform": doc.get("terraform"), "module": doc.get("module")}
    rc = wd.runner.env.get("TF_CLI_CONFIG_FILE")
    parts["cli_config"] = Path(rc).read_text() if rc and Path(rc).is_file() else None
    lock = wd.path / ".terraform.lock.hcl"
    parts["lock"] = lock.read_text() if lock.is_file() else None
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def init_needed(wd: Workdir) -> bool:
    """True unless `terraform init` already ran here with the same inputs (the fingerprint it left)."""
    marker = wd.path / ".terraform" / INIT_FINGERPRINT
    try:
        recorded = json.loads(marker.read_text()).get("fingerprint")
    except (OSError, ValueError, AttributeError):
        return True
    return recorded != init_fingerprint(wd)


def init(wd: Workdir, force: bool = False) -> bool:
    """Run `terraform init` when needed (or ``force``); return whether it ran."""
    if not force and not init_needed(wd):
        return False
    from spotkit.deploy.runner import TerraformCommandFailed

    try:
        wd.runner.run("init", input=False, no_color=IsFlagged)
    except TerraformCommandFailed as exc:
        # A machine without registry access fails exactly here: name the option that uses the mirror it has.
        found = mirror.discover() if wd.mirror is None else None
        if found is not None:
            exc.hint = (f"spotkit plan {wd.stack} --target {wd.target} --provider-mirror auto   "
                        f"# uses the provider mirror on this machine ({found})")
        raise
    marker = wd.path / ".terraform" / INIT_FINGERPRINT
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"fingerprint": init_fingerprint(wd)}))
    return True


def plan(wd: Workdir, out: Path | None = None, destroy: bool = False, parallelism: int = DEFAULT_PARALLELISM,
         write_json: bool | None = None) -> PlanResult:
    """Write the binary plan (default ``<workdir>/tfplan``) and summarize it from Terraform's streamed
    (``-json``) plan output. The plan's JSON (``<plan>.json``, from ``terraform show -json``) is written
    when ``write_json`` (default: when ``out`` is given, the CI artifact) or when deciding about data loss
    needs the resources' values (a retained-volume candidate is deleted or replaced). When Terraform says
    the working directory needs init (lock file, backend, providers), init runs and the plan once more."""
    plan_file = Path(out).resolve() if out else wd.path / ("destroy.tfplan" if destroy else "tfplan")
    plan_file.parent.mkdir(parents=True, exist_ok=True)
    if write_json is None:
        write_json = out is not None
    start = time.monotonic()
    for attempt in (1, 2):
        result = wd.runner.run("plan", input=False, no_color=IsFlagged, out=str(plan_file), parallelism=parallelism,
                               destroy=IsFlagged if destroy else None, json=IsFlagged, detailed_exitcode=IsFlagged,
                               ok_codes=(0, 1, 2))
        streamed = summarize_plan_stream(result.stdout)
        if result.returncode != 1:
            break
        errors = streamed.errors or [(result.stderr or result.stdout).strip()[-2000:]]
        if attempt == 1 and any(k in e for e in errors for k in INIT_REQUIRED):
            init(wd, force=True)
            continue
        from spotkit.deploy.explain import explain
        from spotkit.deploy.runner import TerraformCommandFailed

        message = f"'{wd.runner.binary.flavor} plan' failed in {wd.path}:\n" + "\n".join(f"  {e}" for e in errors)
        explained = explain("\n".join(errors) + "\n" + (result.stderr or ""), wd.path, wd.runner.binary.flavor)
        if explained is not None:  # a stale state lock, a resource that already exists: what to do about it
            raise TerraformCommandFailed(message + "\n" + explained.message, hint=explained.hint)
        raise TerraformCommandFailed(message, hint=f"cd {wd.path} && {wd.runner.binary.flavor} plan   # the same plan "
                                                   "by hand, in the working directory spotkit wrote")
    seconds = time.monotonic() - start
    if write_json or streamed.needs_values:
        return read_plan(wd, plan_file, seconds)
    return PlanResult(plan_file=plan_file.resolve(), json_file=None, summary=streamed.summary, seconds=seconds)


def read_plan(wd: Workdir, plan_file: Path, seconds: float = 0.0) -> PlanResult:
    plan_file = Path(plan_file).resolve()
    if not plan_file.is_file():
        raise ToolkitError(f"plan file {plan_file} does not exist", hint=f"run 'spotkit plan {wd.stack} --out FILE' first")
    shown = wd.runner.run("show", str(plan_file), json=IsFlagged, no_color=IsFlagged)
    json_file = plan_file.with_name(plan_file.name + ".json")
    json_file.write_text(shown.stdout)
    return PlanResult(plan_file=plan_file, json_file=json_file, summary=summarize_plan(json.loads(shown.stdout)),
                      seconds=seconds)


def apply(wd: Workdir, plan_file: Path, on_line: Callable[[str], None] | None = None,
          parallelism: int = DEFAULT_PARALLELISM) -> float:
    """Apply a saved plan; return the seconds it took."""
    start = time.monotonic()
    wd.runner.run("apply", str(plan_file), input=False, no_color=IsFlagged, auto_approve=IsFlagged,
                  parallelism=parallelism, on_line=on_line)
    return time.monotonic() - start


def outputs(wd: Workdir) -> dict[str, Any]:
    result = wd.runner.run("output", json=IsFlagged, no_color=IsFlagged)
    raw = json.loads(result.stdout or "{}")
    return {name: v.get("value") for name, v in raw.items()}


def state_resources(wd: Workdir) -> list[str]:
    result = wd.runner.run("state", "list", ok_codes=(0, 1))
    return [line for line in result.stdout.splitlines() if line.strip() and not line.startswith("data.")]


def is_progress_line(line: str) -> bool:
    """Lines of ``terraform apply`` worth showing while it runs."""
    keys = ("Creating...", "Creation complete", "Modifying...", "Modifications complete", "Destroying...",
            "Destruction complete", "Still creating", "Still destroying", "Still modifying",
            "Apply complete!", "Destroy complete!")
    return any(k in line for k in keys)
