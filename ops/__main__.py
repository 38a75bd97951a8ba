"""`python -m ops replay|rerun|export ...`: the operators' entry point (settings from the same env as
the services: LAL_DEPLOYMENT, LAL_BROKER, LAL_S3_*, MLFLOW_TRACKING_URI, LAL_WORK_DIR)."""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import tempfile
from pathlib import Path
from typing import TextIO

import orjson

from domain.settings import settings


def _print(data, out: TextIO) -> None:
    out.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


def cmd_replay(args: argparse.Namespace, out: TextIO) -> int:
    from ops import replay

    with tempfile.TemporaryDirectory(prefix="lal-replay-") as scratch:
        replayed = asyncio.run(replay.replay(settings(), args.work_dir or Path(scratch)))
    if args.compare is None:
        _print(replayed, out)
        return 0
    found = replay.differences(replay.live_answers(args.compare), replayed)
    _print({"compared_with": args.compare, "same": not found, "differences": found,
            **({"replayed": replayed} if args.show else {})}, out)
    return 1 if found else 0


def cmd_rerun(args: argparse.Namespace, out: TextIO) -> int:
    from ops import rerun

    config = settings()
    report = asyncio.run(rerun.rerun(config, args.version, args.into or rerun.default_namespace(config, args.version)))
    _print(report, out)
    return 0 if report["rerun"].get("action_taken") not in (None, "failed") else 1


def cmd_export(args: argparse.Namespace, out: TextIO) -> int:
    from ops import export

    for path in export.export(settings(), args.version, args.format, args.out):
        print(path, file=out)
    return 0


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="python -m ops", description=__doc__)
    commands = main.add_subparsers(dest="command", required=True)

    replay = commands.add_parser("replay", help="rebuild every projection from offset 0 and print the API's answers")
    replay.add_argument("--compare", metavar="URL", help="compare with the API at URL; exit 1 on any difference")
    replay.add_argument("--show", action="store_true", help="with --compare: print the replayed answers too")
    replay.add_argument("--work-dir", type=Path,
                        help="keep the rebuilt checkpoints and model cache here (default: a temporary dir)")
    replay.set_defaults(run=cmd_replay)

    rerun = commands.add_parser("rerun", help="re-run a sealed version's pipeline in a separate namespace")
    rerun.add_argument("--version", required=True)
    rerun.add_argument("--into", metavar="NAMESPACE", help="deployment namespace of the rerun "
                                                           "(default: <deployment>-audit-<version>-<utc time>)")
    rerun.set_defaults(run=cmd_rerun)

    export = commands.add_parser("export", help="write a sealed version's tables to local files")
    export.add_argument("--version", required=True)
    export.add_argument("--format", choices=("csv", "parquet"), default="parquet")
    export.add_argument("--out", type=Path, required=True)
    export.set_defaults(run=cmd_export)
    return main


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parser().parse_args(argv)
    report = sys.stdout
    try:
        # Libraries chat on stdout (MLflow prints a line per run): stdout is kept for the report.
        with contextlib.redirect_stdout(sys.stderr):
            return args.run(args, report)
    except (LookupError, FileExistsError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
