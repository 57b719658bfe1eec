"""The optional extras (pyproject.toml) and the commands that need them: one place, for every message.

The core install serves check, synth, plan/apply/output, the runbooks, the handler and the agent. A
command that needs an extra that is not installed ends as a user error (exit 1) with one line naming
the extra: ``pip install 'spotkit[local]'``. ``missing_extra`` maps an import failure (the CLI's error
handler calls it); ``require`` checks up front, before a long command has done anything.
"""

from __future__ import annotations

import importlib.util

from spotkit.errors import MissingDependencyError

# extra -> (the modules it brings that spotkit imports, what needs it)
EXTRAS: dict[str, tuple[tuple[str, ...], str]] = {
    "local": (("moto", "werkzeug", "flask"), "the local AWS emulator (spotkit local, --target local, demo, drill)"),
    "demo": (("numpy",), "the drill's training workload (spotkit drill, spotkit demo)"),
    "plot": (("matplotlib",), "the drill's plot (drill.png)"),
    "simulate": (("numpy",), "the trace replay of spotkit simulate"),
}
# A module several extras bring (numpy) maps to the first: commands that need a later one `require` it up front.
_BY_MODULE: dict[str, str] = {}
for _extra, (_modules, _) in EXTRAS.items():
    for _module in _modules:
        _BY_MODULE.setdefault(_module, _extra)


def error(extra: str, module: str) -> MissingDependencyError:
    return MissingDependencyError(f"{EXTRAS[extra][1]} needs the '{extra}' extra ({module} is not installed)",
                                  hint=f"pip install 'spotkit[{extra}]'")


def missing_extra(exc: BaseException) -> MissingDependencyError | None:
    """The user error for a failed import of a module an optional extra brings, else None."""
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return None
    top = exc.name.split(".")[0]
    extra = _BY_MODULE.get(top)
    return error(extra, top) if extra else None


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a module set to None in sys.modules, a broken package
        return False


def require(*extras: str) -> None:
    """Raise the user error for the first of ``extras`` whose modules are not all installed."""
    for extra in extras:
        for module in EXTRAS[extra][0]:
            if not installed(module):
                raise error(extra, module)
