"""What the local emulator changes in moto, one module per AWS service, each change beside its reason.

Every patch makes moto 5.2 answer an AWS call as AWS answers it, where moto has a gap (no handler, a
missing check, a race, a value dropped) that the toolkit or Terraform runs into. None invents behaviour
AWS does not have. State that only a rehearsal can set (a failed spot launch, a placement score) is no
patch: it is set through the emulator's control path (``spotkit.rehearsal.local.control``).

Each module lists its patches as ``PATCHES`` (a tuple of ``Patch``); ``spotkit.rehearsal.local.registry``
collects them all, and both the emulator ``spotkit local start`` runs and the tests' moto server apply
every one of them (``registry.apply_all``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Patch:
    """One change to moto.

    ``service`` and ``operations``: the AWS calls it changes, as AWS names them. ``aws``: what AWS does
    (what the patched emulator now does too). ``moto``: what moto 5.2 does instead, and what that broke.
    ``reference``: the AWS documentation of that behaviour ("" where AWS documents none). ``apply``:
    patches moto in this process; idempotent.
    """

    service: str
    operations: tuple[str, ...]
    aws: str
    moto: str
    reference: str
    apply: Callable[[], None]

    @property
    def what(self) -> str:
        """``service Operation / Operation``: the calls, as the docs list them."""
        return f"{self.service} {' / '.join(self.operations)}"


def kept_on(backend, attr: str, empty: Callable[[], object]):
    """The value a patch keeps under ``attr`` on a moto backend (``empty()`` on first use; a reset drops it)."""
    if not hasattr(backend, attr):
        setattr(backend, attr, empty())
    return getattr(backend, attr)


def wrap_once(owner, name: str, make: Callable[[Callable], Callable]) -> None:
    """Replace ``owner.name`` by ``make(original)``, once: a second call finds it replaced and does nothing."""
    original = getattr(owner, name)
    if getattr(original, "_spotkit", False):
        return
    patched = make(original)
    patched._spotkit = True
    setattr(owner, name, patched)


def sets(module: str, owner: str, **attributes) -> Callable[[], None]:
    """A patch's ``apply`` that sets ``attributes`` on the class ``owner`` of moto's ``module`` (e.g. a handler
    method a moto responder lacks: moto dispatches an action by its method name)."""
    def apply() -> None:
        import importlib

        cls = getattr(importlib.import_module(module), owner)
        for name, value in attributes.items():
            setattr(cls, name, value)

    return apply
