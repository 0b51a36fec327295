"""`python -m helpers.signal_on_call SIGNAL TARGET N ARGS...`: the CLI (`python -m helpers ARGS`)
sending SIGNAL to its own process on the Nth call of TARGET, written "module:attribute.path".

A run that stops or dies at an exact moment rather than at a moment in time: the crash tests
kill it there (SIGKILL, tests/crash_util.py), and the processing notebook's crash demo stops it
there (SIGSTOP) and kills it from outside, so that the demo shows the same figures on every run
(helpers/notebook/crash_demo.py).
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

from helpers.cli import main as cli


def signal_on_call(target: str, nth: int, signum: signal.Signals) -> None:
    """Replace `target` with a wrapper that sends `signum` to this process on its nth call (and
    then, if the process goes on, calls the original)."""
    module, _, attribute = target.partition(":")
    owner: Any = importlib.import_module(module)
    *path, name = attribute.split(".")
    for part in path:
        owner = getattr(owner, part)
    original: Callable[..., Any] = getattr(owner, name)
    calls = [0]

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == nth:
            os.kill(os.getpid(), signum)
        return original(*args, **kwargs)

    setattr(owner, name, wrapper)


def main(argv: list[str]) -> int:
    signame, target, nth, *args = argv
    signal_on_call(target, int(nth), signal.Signals[signame])
    return cli(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
