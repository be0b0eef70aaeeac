"""``scoregate models build|verify``: build the demo model repository, or check its artifacts."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from runtimes.manifest import ManifestError, find_model_folders, read_manifest, verify_artifact
from runtimes.reasons import read_catalogue


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scoregate models", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="train the demo models and export them to ONNX")
    build.add_argument("--out", type=Path, required=True, help="model repository to write")
    verify = commands.add_parser(
        "verify", help="check every artifact and reason catalogue against its manifest"
    )
    verify.add_argument("--model-dir", type=Path, required=True, help="model repository")
    return parser


def build(out: Path) -> int:
    # Imported here: sklearn and skl2onnx are slow to import and only the build needs them.
    from runtimes.training.build import build_all

    for m in build_all(out):
        print(
            f"{m.name}\tv{m.version}\tsha256={m.artifact_sha256[:12]}"
            f"\theldout_auc={m.training.heldout_auc:.4f}"
        )
    return 0


def verify(model_dir: Path) -> int:
    folders = find_model_folders(model_dir)
    if not folders:
        print(f"error: no manifest.json under {model_dir}", file=sys.stderr)
        return 1
    failures = 0
    for folder in folders:
        try:
            manifest = read_manifest(folder)
            verify_artifact(folder, manifest)
            if manifest.reason_catalogue_sha256:
                read_catalogue(folder, manifest, manifest.reason_catalogue_sha256)
        except ManifestError as e:
            failures += 1
            print(f"FAILED {e}", file=sys.stderr)
            continue
        print(f"ok\t{manifest.served_name}\tsha256={manifest.artifact_sha256[:12]}")
    return 1 if failures else 0


def models_main(argv: list[str] | None = None) -> int:
    """Entry point for ``scoregate models ...``; returns the process exit code."""
    args = _parser().parse_args(argv)
    if args.command == "build":
        return build(args.out)
    return verify(args.model_dir)
