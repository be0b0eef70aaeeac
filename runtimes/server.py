"""``scoregate-runtime``: the KServe ONNX runtime for a model repository.

    scoregate-runtime --model-dir DIR --host 127.0.0.1 --grpc-port P --http-port Q [--ready-file F]

Flags override ``SCOREGATE_RUNTIME_*`` environment variables. The process exits non-zero, naming
the model and the reason, if any model in the repository fails to load: a partial repository is
never served.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pydantic import ValidationError

from runtimes.settings import RuntimeSettings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scoregate-runtime", description=__doc__.splitlines()[0])
    fields = RuntimeSettings.model_fields
    flags: list[tuple[str, type]] = [
        ("model_dir", Path),
        ("host", str),
        ("grpc_port", int),
        ("http_port", int),
        ("ready_file", Path),
        ("log_level", str),
        ("max_threads", int),
        ("inference_threads", int),
        ("inline_max_rows", int),
        ("grace_period_s", int),
        ("ready_timeout_s", float),
    ]
    for name, kind in flags:
        parser.add_argument(
            "--" + name.replace("_", "-"), dest=name, type=kind, help=fields[name].description
        )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    overrides = {k: v for k, v in vars(args).items() if v is not None}
    try:
        settings = RuntimeSettings(**overrides)
    except ValidationError as e:
        print(f"scoregate-runtime: invalid settings:\n{e}", file=sys.stderr)
        return 2
    # KServe parses sys.argv when imported; ours are parsed already and would confuse it.
    sys.argv[1:] = []
    from runtimes.serving import configure_logging, serve

    configure_logging(settings.log_level)
    return serve(settings)


if __name__ == "__main__":
    sys.exit(main())
