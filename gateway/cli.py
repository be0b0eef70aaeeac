"""The ``scoregate`` command: one entry point whose subcommands belong to the packages.

Each package registers its own subcommands as ``scoregate.commands`` entry points
(pyproject.toml): ``runtimes`` the models and the runtime, ``gateway`` the gateway, ``governance``
the lineage store, ``loadtests.local`` ``up`` and ``demo``. This module only dispatches, so the
gateway imports no other package's code, and a subcommand's package is imported only when it is
used (``scoregate lineage show`` never pays for onnxruntime).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points

GROUP = "scoregate.commands"

# The help line of each known command: its arguments and what it does. A command that another
# package registers is listed by name alone.
SUMMARIES: dict[str, tuple[str, str]] = {
    "models": ("build|verify", "train the demo models and export them to ONNX with manifests"),
    "runtime": ("", "run the KServe ONNX runtime (same as scoregate-runtime)"),
    "gateway": ("", "run the scoring gateway (same as scoregate-gateway)"),
    "lineage": ("serve|show|...", "run the lineage store, or query and maintain it"),
    "canary": ("run|status", "step a canary's weight by a plan, judged from lineage"),
    "up": ("", "run runtime + lineage store + gateway on loopback until interrupted"),
    "demo": ("", "build models, start everything, score, query lineage, stop"),
}


def commands() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def usage(found: dict[str, EntryPoint]) -> str:
    order = [name for name in SUMMARIES if name in found] + sorted(set(found) - set(SUMMARIES))
    heads = {name: f"{name} {SUMMARIES.get(name, ('', ''))[0]}".rstrip() for name in order}
    width = max(map(len, heads.values()), default=0) + 2
    lines = [
        f"  {heads[name]:<{width}}{SUMMARIES.get(name, ('', ''))[1]}".rstrip() for name in order
    ]
    return (
        "usage: scoregate COMMAND [ARGS...]\n\ncommands:\n"
        + "\n".join(lines)
        + "\n\n'scoregate COMMAND --help' describes each command.\n"
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    found = commands()
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage(found), end="")
        return 0 if args else 2
    entry = found.get(args[0])
    if entry is None:
        print(f"scoregate: unknown command {args[0]!r}\n\n{usage(found)}", end="", file=sys.stderr)
        return 2
    try:
        command: Callable[[list[str]], int] = entry.load()
    except ModuleNotFoundError as e:
        # The container images carry the servers, not the local kit (loadtests): say so.
        print(
            f"scoregate: command {args[0]!r} is registered but its package is not installed "
            f"here ({e.name} is missing); it comes with a source checkout (pip install -e .)",
            file=sys.stderr,
        )
        return 2
    return command(args[1:])


if __name__ == "__main__":
    raise SystemExit(main())
