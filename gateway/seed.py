"""Seed an empty (or partly filled) Triton model repository from the repository shipped in the image.

The Helm chart runs this as an initContainer of the Triton pod and docker-compose as its `model-init`
service, before Triton starts with `--load-model=pd_unet1d`, so a first install comes up without a manual
copy. Models already in the destination are never touched (operators deploy versions there); a missing
model is copied into a hidden staging directory on the same filesystem and renamed into place, so a
second seeder running at the same time (several Triton replicas) or a crash half-way never leaves a
partial model where Triton looks.

    python -m gateway.seed --source /opt/pd-gateway/model_repository --dest /models
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

# The image's copy of model_repository/ (docker/gateway.Dockerfile); the chart's initContainer uses it.
DEFAULT_SOURCE = Path("/opt/pd-gateway/model_repository")
_STAGING_PREFIX = ".seed-"


def seed_repository(source: Path, dest: Path) -> list[str]:
    """Copy every model of `source` that `dest` lacks; return the names copied (sorted)."""
    if not source.is_dir():
        raise FileNotFoundError(f"seed repository {source} does not exist")
    dest.mkdir(parents=True, exist_ok=True)
    copied = []
    for model in sorted(p for p in source.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if not (model / "config.pbtxt").is_file():
            continue
        target = dest / model.name
        if target.exists():
            continue
        staging = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=dest))
        try:
            shutil.copytree(model, staging / model.name, copy_function=shutil.copyfile)
            try:
                os.rename(staging / model.name, target)
            except OSError:
                if not target.exists():  # someone else's seeder won the race: that is fine
                    raise
                continue
            copied.append(model.name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return copied


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pd-gateway seed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="the shipped repository")
    parser.add_argument("--dest", type=Path, required=True, help="the (possibly empty) model repository")
    args = parser.parse_args(argv)
    try:
        copied = seed_repository(args.source, args.dest)
    except OSError as e:
        print(f"seed: {e}", file=sys.stderr)
        return 1
    present = sorted(p.name for p in args.dest.iterdir() if p.is_dir() and not p.name.startswith("."))
    print(f"seed: copied {copied or 'nothing'}; {args.dest} holds {present}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
