"""Recovery runbooks: put the pieces back after a spot interruption.

Each runbook is a registered class (``spotkit.runbooks.base.RUNBOOKS``) whose docstring lists its steps,
callable from code with injected boto3 clients and from ``spotkit recover ...``:

- ``volumes`` (:mod:`.volumes`): retained data volumes back on the group's instances (copied across AZs).
- ``snapshot`` (:mod:`.snapshot`): the newest snapshot of a device restored next to an instance.
- ``drain`` (:mod:`.drain`): the interruption handler's drain, by hand.
- ``replace`` / ``restore-spot`` (:mod:`.replace`): desired capacity, with a temporary on-demand fallback.
- :func:`.status.status`: spot vs on-demand, interruptions, waiting volumes, snapshot ages, fallbacks.
- :mod:`.lock`: one run per group at a time (a lease tag on the group, a file lock on the journal).
"""

from spotkit.runbooks import drain, replace, snapshot, volumes  # noqa: F401  (registers the runbooks)
from spotkit.runbooks.base import RUNBOOKS, RunContext  # noqa: F401
