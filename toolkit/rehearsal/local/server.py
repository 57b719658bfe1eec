"""The emulator process: moto's server with every patch of the registry and the ``/spotkit/`` control path.

Run as ``python -m spotkit.rehearsal.local.server -H 127.0.0.1 -p PORT`` (``spotkit.rehearsal.local.emulator.start``
does). ``application()`` is the one WSGI app of every emulator spotkit runs: this process serves it, and so
does the tests' moto server (tests/support/moto_server.py), so both answer alike. The patches
(``spotkit.rehearsal.local.registry.PATCHES``) each make moto answer as AWS does; the control path
(``spotkit.rehearsal.local.control``) is no AWS API.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys


def application():
    """moto's WSGI app, patched by every entry of the registry, with the control path under ``/spotkit/``."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    from spotkit.rehearsal.local import control, registry

    registry.apply_all()
    return control.wrap(DomainDispatcherApplication(create_backend_app))


def _exit(signum, frame) -> None:
    sys.exit(0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m spotkit.rehearsal.local.server")
    parser.add_argument("-H", "--host", default="127.0.0.1", help="the address to bind")
    parser.add_argument("-p", "--port", type=int, default=int(os.environ.get("MOTO_PORT", 5000)), help="the port")
    args = parser.parse_args(argv if argv is not None else sys.argv[1:])
    os.environ.setdefault("MOTO_PORT", str(args.port))  # as moto's own server: the port its URLs name
    signal.signal(signal.SIGINT, _exit)
    signal.signal(signal.SIGTERM, _exit)
    from moto.moto_server.werkzeug_app import MotoRequestHandler
    from werkzeug.serving import run_simple

    run_simple(args.host, args.port, application(), threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
