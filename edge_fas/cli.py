"""The `edge-fas` command line. Each subcommand lives in edge_fas/commands/<name>.py and defines
HELP (one line), add_arguments(parser) and run(args) -> exit code."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from edge_fas import __version__
from edge_fas.errors import EdgeFasError

SUBCOMMANDS = ["run", "record", "collect", "inspect", "calibrate", "train", "cache", "eval", "adapt", "export", "bench",
               "doctor"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-fas",
        description="Real-time multimodal (RGB + depth + IR) face anti-spoofing for edge camera rigs.",
        epilog="Start with `edge-fas doctor`, then `edge-fas run --camera synthetic`.")
    parser.add_argument("--version", action="version", version=f"edge-fas {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name in SUBCOMMANDS:
        module = importlib.import_module(f"edge_fas.commands.{name}")
        p = sub.add_parser(name, help=module.HELP, description=module.HELP,
)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=[logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)],
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except EdgeFasError as e:
        print(f"edge-fas {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"edge-fas {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
