"""The ``scoregate`` command: one entry point whose subcommands belong to the packages.

Each package owns its own subcommands (``runtimes.cli``, ``governance.cli``, the servers' ``main``);
this module only dispatches, importing a package when its subcommand is used so that, for example,
``scoregate lineage show`` never pays for importing onnxruntime.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

USAGE = """\
usage: scoregate COMMAND [ARGS...]

commands:
  models build|verify   train the demo models and export them to ONNX with manifests
  runtime               run the KServe ONNX runtime (same as scoregate-runtime)
  gateway               run the scoring gateway (same as scoregate-gateway)
  lineage serve|show    run the lineage store, or show a decision from it
  up                    run runtime + lineage store + gateway on loopback until interrupted
  demo                  build models, start everything, score, query lineage, stop

'scoregate COMMAND --help' describes each command.
"""


def _models(argv: list[str]) -> int:
    from runtimes.cli import models_main

    return models_main(argv)


def _runtime(argv: list[str]) -> int:
    from runtimes.server import main

    return main(argv)


def _gateway(argv: list[str]) -> int:
    from gateway.server import main

    return main(argv)


def _lineage(argv: list[str]) -> int:
    from governance.cli import lineage_main

    return lineage_main(argv)


def _up(argv: list[str]) -> int:
    from gateway.demo import up_main

    return up_main(argv)


def _demo(argv: list[str]) -> int:
    from gateway.demo import demo_main

    return demo_main(argv)


COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "models": _models,
    "runtime": _runtime,
    "gateway": _gateway,
    "lineage": _lineage,
    "up": _up,
    "demo": _demo,
}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0 if args else 2
    command = COMMANDS.get(args[0])
    if command is None:
        print(f"scoregate: unknown command {args[0]!r}\n\n{USAGE}", end="", file=sys.stderr)
        return 2
    return command(args[1:])


if __name__ == "__main__":
    raise SystemExit(main())
