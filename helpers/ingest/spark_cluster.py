"""A Spark standalone cluster on this machine, started with pyspark's own launcher.

For the tests, and for running `ingest --engine spark --master spark://...` against a real
cluster: a master and N workers, JVMs that `bin/spark-class` in the installed pyspark starts (so
they run the same Spark version as the driver), on 127.0.0.1 with free ports. Each runs in a
process group of its own, which also holds the executors and Python workers it starts, so
stopping the groups leaves nothing behind; and each dies with the process that started it, even
one killed outright. Their logs, and the workers' folders (each application's executor logs),
stay in one folder, whose ends a failed start shows.

    python -m helpers.ingest.spark_cluster --workers 2

starts one, prints the master URL and waits for Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers.errors import HelpersError
from helpers.ingest.spark import check_java

HOST = "127.0.0.1"
STOP_GRACE = 10.0  # seconds a JVM gets to run its shutdown hooks before SIGKILL
# Run in the child before spark-class: the kernel sends SIGTERM to the cluster's processes when
# the process that started them dies, however it died (Linux; a no-op elsewhere).
DIE_WITH_PARENT = """import ctypes, os, signal, sys
if sys.platform.startswith("linux"):
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != int(sys.argv[1]):  # the parent died before prctl took effect
        sys.exit(1)
os.execv(sys.argv[2], sys.argv[2:])
"""


@dataclass
class Cluster:
    master: str  # spark://127.0.0.1:<port>, for --master
    web_ui: str  # http://127.0.0.1:<port>; its /json/ says which workers and apps it has
    logs: Path
    processes: list[subprocess.Popen]

    def state(self) -> dict[str, Any]:
        """The master's own account of the cluster: workers, cores, running and done apps."""
        return master_state(self.web_ui)

    def running(self) -> bool:
        return all(p.poll() is None for p in self.processes)


@contextmanager
def standalone_cluster(workers: int = 2, *, cores: int = 1, memory: str = "1g",
                       logs: str | Path | None = None, timeout: float = 120) -> Iterator[Cluster]:
    """A master and `workers` workers of `cores` cores and `memory` each; stopped at the end.

    Yields once every worker has registered with the master. Logs go to `logs` (by default a
    new temporary folder), which is kept.
    """
    check_java()
    launcher = spark_class()
    logs = Path(logs) if logs else Path(tempfile.mkdtemp(prefix="spark-cluster-"))
    logs.mkdir(parents=True, exist_ok=True)
    env = _environment(launcher)
    processes: list[subprocess.Popen] = []
    try:
        port, ui_port = free_port(), free_port()
        processes.append(_start(launcher, logs / "master.log", env, [
            "org.apache.spark.deploy.master.Master", "--host", HOST, "--port", str(port),
            "--webui-port", str(ui_port)]))
        web_ui = f"http://{HOST}:{ui_port}"
        state = _wait_for(web_ui, lambda s: s.get("status") == "ALIVE", processes, logs,
                          timeout, "the master to start")
        for i in range(workers):
            work = logs / f"worker-{i}"  # not the default: that is inside the pyspark package
            processes.append(_start(launcher, logs / f"worker-{i}.log", env, [
                "org.apache.spark.deploy.worker.Worker", state["url"], "--host", HOST,
                "--cores", str(cores), "--memory", memory, "--webui-port", "0",
                "--work-dir", str(work)]))
        _wait_for(web_ui, lambda s: s.get("aliveworkers", 0) >= workers, processes, logs,
                  timeout, f"{workers} worker(s) to register")
        yield Cluster(state["url"], web_ui, logs, processes)
    finally:
        stop(processes)


def spark_class() -> Path:
    """pyspark's launcher script, `bin/spark-class` in the installed package."""
    if os.name != "posix":
        raise HelpersError("starting a Spark cluster here needs Linux or macOS",
                           fix="Start one with Spark's own sbin/ scripts, and pass its URL "
                               "to --master")
    try:
        import pyspark
    except ImportError:
        raise HelpersError("a Spark cluster needs pyspark, which is not installed",
                           fix="Install the extra: pip install -e '.[spark]'") from None
    return Path(pyspark.__file__).parent / "bin" / "spark-class"


def _environment(launcher: Path) -> dict[str, str]:
    env = dict(os.environ)
    # This pyspark's jars, whatever SPARK_HOME says: driver and cluster must be one version.
    env["SPARK_HOME"] = str(launcher.parent.parent)
    env["SPARK_LOCAL_IP"] = HOST  # every port and web UI on the loopback only
    # Executors start Python workers with this interpreter, which imports this package.
    env["PYSPARK_PYTHON"] = sys.executable
    # The REST submission server would take the fixed port 6066; nothing here submits to it.
    env["SPARK_MASTER_OPTS"] = (env.get("SPARK_MASTER_OPTS", "") +
                                " -Dspark.master.rest.enabled=false").strip()
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _start(launcher: Path, log: Path, env: dict[str, str], args: list[str]) -> subprocess.Popen:
    with open(log, "ab") as out:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, "-c", DIE_WITH_PARENT, str(os.getpid()), str(launcher), *args],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
            cwd=log.parent, start_new_session=True)


def master_state(web_ui: str) -> dict[str, Any]:
    """The master web UI's JSON (workers, cores, apps), read past any HTTP proxy."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"{web_ui}/json/", timeout=5) as response:
        return json.loads(response.read())


def _wait_for(web_ui: str, ready: Callable[[dict], bool], processes: list[subprocess.Popen],
              logs: Path, timeout: float, what: str) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        for process in processes:
            if process.poll() is not None:
                raise _failed(f"a cluster process exited (status {process.returncode}) while "
                              f"waiting for {what}", logs)
        try:
            state = master_state(web_ui)
            if ready(state):
                return state
        except (OSError, ValueError):  # not listening yet
            pass
        if time.monotonic() > deadline:
            raise _failed(f"gave up after {timeout:.0f} s waiting for {what}", logs)
        time.sleep(0.25)


def _failed(reason: str, logs: Path) -> HelpersError:
    tails = []
    for log in sorted(logs.glob("*.log")):
        lines = log.read_text(errors="replace").splitlines()[-15:]
        tails.append(f"--- {log.name}\n" + "\n".join(lines))
    return HelpersError(f"{reason}; the end of each log:\n" + "\n".join(tails), path=logs,
                        fix="The logs are in that folder; a port taken meanwhile, or too little "
                            "memory for the workers, are the usual causes")


def stop(processes: list[subprocess.Popen]) -> None:
    """Stop each process's whole group (executors and Python workers included), workers first:
    SIGTERM, so that the JVMs run their shutdown hooks, then SIGKILL for what is left."""
    for process in reversed(processes):
        _signal_group(process, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE
    for process in reversed(processes):
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for process in processes:
        _signal_group(process, signal.SIGKILL)
        process.wait()


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)  # start_new_session: the group's id is the child's pid
    except (ProcessLookupError, PermissionError):  # the whole group is gone already
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Start a cluster, print its master URL, and stop it at Ctrl-C (or SIGTERM)."""
    from helpers.cli import positive

    parser = argparse.ArgumentParser(
        prog="python -m helpers.ingest.spark_cluster",
        description="Start a Spark standalone cluster on 127.0.0.1 until Ctrl-C.",
        epilog="Example: python -m helpers.ingest.spark_cluster --workers 2")
    parser.add_argument("--workers", type=positive, default=2, help="how many workers")
    parser.add_argument("--cores", type=positive, default=1, help="cores per worker")
    parser.add_argument("--memory", default="1g", help="memory per worker, as Spark writes it")
    parser.add_argument("--logs", default=None,
                        help="folder for the logs (default: a new temporary folder)")
    args = parser.parse_args(argv)
    # `kill` stops it as Ctrl-C does; and Ctrl-C works even where the shell that started it
    # ignores SIGINT for it (a background job), which Python would otherwise honour.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _interrupt)
    try:
        with standalone_cluster(args.workers, cores=args.cores, memory=args.memory,
                                logs=args.logs) as cluster:
            print(f"master: {cluster.master}\nweb UI: {cluster.web_ui}\nlogs:   {cluster.logs}\n"
                  f"try:    python -m helpers ingest --engine spark --master {cluster.master}\n"
                  "Ctrl-C stops it", flush=True)
            while cluster.running():
                time.sleep(1)
            print(f"error: a cluster process exited; see the logs in {cluster.logs}",
                  file=sys.stderr)
            return 1
    except KeyboardInterrupt:
        print("stopped")
        return 0
    except HelpersError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
