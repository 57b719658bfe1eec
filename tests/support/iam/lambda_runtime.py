"""The Lambda Python runtime, as far as a test machine can have it: the runtime's interpreter version (from
pyenv when this machine's python3 is another), a boto3 of the version that runtime ships installed into
its own folder (as ``/var/runtime`` holds it), and nothing else: no site-packages, no dev tree, no
PYTHONPATH. ``invoke`` runs one handler call in a fresh process and returns its result and the modules
it loaded from outside the package, the runtime boto3 and the standard library (stray imports).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

# What AWS Lambda ships in each Python runtime (docs.aws.amazon.com/lambda/latest/dg/lambda-runtimes.html,
# "SDK for Python (Boto3)"); the stack's runtime is spotkit.constructs.interruption_events.LAMBDA_RUNTIME.
RUNTIME_BOTO3 = {"python3.12": "1.34.145", "python3.11": "1.34.145", "python3.10": "1.34.145"}
# Lambda's deployment package quotas: 50 MB zipped for a direct upload, 250 MB unzipped.
ZIP_LIMIT = 50 * 1024 * 1024
UNZIPPED_LIMIT = 250 * 1024 * 1024
CACHE = Path(os.environ.get("SPOTKIT_TEST_CACHE", Path.home() / ".cache" / "spotkit-tests"))

_BOOTSTRAP = r"""
import importlib, json, sys, sysconfig, os
task, runtime = sys.argv[1], sys.argv[2]
sys.path[:0] = [task, runtime]
handler_spec, event = sys.argv[3], json.loads(sys.stdin.read())
module_name, _, func = handler_spec.rpartition(".")
fn = getattr(importlib.import_module(module_name), func)
class Context:
    function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "f")
    def get_remaining_time_in_millis(self): return 300000
result = fn(event, Context())
stdlib = (sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"])
stray = sorted({getattr(m, "__file__", None) or "" for m in list(sys.modules.values())} - {""})
stray = [f for f in stray if not f.startswith((task, runtime) + stdlib)]
print(json.dumps({"result": result, "stray": stray, "python": sys.version.split()[0]}))
"""


def interpreter(runtime: str) -> tuple[str, str]:
    """(path of a Python of the runtime's version, note). Falls back to this Python, saying so."""
    version = runtime.removeprefix("python")
    if f"{sys.version_info[0]}.{sys.version_info[1]}" == version:
        return sys.executable, f"{runtime}: this Python"
    pyenv = shutil.which("pyenv")
    if pyenv:
        versions = subprocess.run([pyenv, "versions", "--bare"], capture_output=True, text=True).stdout.split()
        for v in sorted((v for v in versions if v.startswith(version + ".")), reverse=True):
            found = subprocess.run([pyenv, "which", "python"], capture_output=True, text=True,
                                   env={**os.environ, "PYENV_VERSION": v}).stdout.strip()
            if found:
                return found, f"{runtime}: pyenv {v}"
    return sys.executable, (f"{runtime}: no Python {version} on this machine; ran with "
                            f"{sys.version.split()[0]}, the closest available")


def runtime_boto3(python: str, runtime: str) -> Path:
    """boto3 of the runtime's version in its own folder (built once per machine, atomically)."""
    version = RUNTIME_BOTO3[runtime]
    target = CACHE / f"lambda-{runtime}-boto3-{version}"
    if (target / "boto3" / "__init__.py").is_file():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=CACHE))
    subprocess.run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-compile",
                    "--target", str(staging), f"boto3=={version}"], check=True, timeout=600)
    try:
        os.replace(staging, target)
    except OSError:  # another process installed it first
        shutil.rmtree(staging, ignore_errors=True)
    return target


def unpack(zip_path: Path, dest: Path) -> Path:
    size = zip_path.stat().st_size
    if size > ZIP_LIMIT:
        raise AssertionError(f"{zip_path}: {size} bytes zipped, over Lambda's {ZIP_LIMIT} byte limit")
    with zipfile.ZipFile(zip_path) as z:
        unzipped = sum(i.file_size for i in z.infolist())
        if unzipped > UNZIPPED_LIMIT:
            raise AssertionError(f"{zip_path}: {unzipped} bytes unzipped, over Lambda's {UNZIPPED_LIMIT} byte limit")
        z.extractall(dest)
    return dest


def invoke(python: str, task: Path, runtime_dir: Path, handler: str, event: dict, env: dict) -> dict:
    """One invocation in a fresh process: ``-I`` (no PYTHONPATH, no user site, no current folder), the
    runtime's environment only. Returns {"result", "stray", "python"}; raises with stderr on failure."""
    base = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    proc = subprocess.run([python, "-I", "-B", "-c", _BOOTSTRAP, str(task), str(runtime_dir), handler],
                          input=json.dumps(event), capture_output=True, text=True, timeout=300,
                          cwd=str(task), env={**base, "LAMBDA_TASK_ROOT": str(task), **env})
    if proc.returncode != 0:
        raise AssertionError(f"the handler failed in the Lambda runtime:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
