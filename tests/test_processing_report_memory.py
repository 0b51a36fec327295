"""The processing notebook's memory figures cover the whole process tree: a spawned worker is seen
and added to the tree, other children count but forks of this process do not (their pages are this
process's), a tree without workers says the work ran in this process, and the nbval masks hide
every figure of the report.
"""

from __future__ import annotations

import configparser
import multiprocessing
import re
import subprocess
import sys
import time
from pathlib import Path

from helpers.memory import TreeMemory

ROOT = Path(__file__).resolve().parent.parent
SANITIZE_CFG = ROOT / "notebooks" / "nbval_sanitize.cfg"
MIB = 1 << 20


# --- memory of the process tree ------------------------------------------------------------


def hold_memory(mib: int, seconds: float) -> None:
    block = b"x" * (mib * MIB)  # written, so resident, unlike a fresh zeroed allocation
    time.sleep(seconds)
    del block


def test_tree_memory_sees_a_spawned_worker_and_adds_it_to_the_tree():
    context = multiprocessing.get_context("spawn")
    with TreeMemory(interval=0.02) as tree:
        worker = context.Process(target=hold_memory, args=(150, 1.0))
        worker.start()
        worker.join()
    assert tree.count("worker") == 1
    assert tree.peak_of("worker") >= 150 * MIB
    assert tree.peak_total_bytes >= tree.peak_of("worker") + 0.5 * tree.peak_of("this process")


def test_tree_memory_counts_other_children_but_not_forks_of_this_process():
    ballast = b"y" * (200 * MIB)  # so that a fork of this process is visibly large
    fork = multiprocessing.get_context("fork").Process(target=time.sleep, args=(1.5,))
    with TreeMemory(interval=0.02) as tree:
        fork.start()
        child = subprocess.Popen([sys.executable, "-c",
                                  "import time; b = b'z' * (120 << 20); time.sleep(1)"])
        child.wait()
        fork.join()
    del ballast
    # "other" may also hold multiprocessing's resource tracker, left by an earlier spawn.
    assert tree.count("fork") == 1 and tree.count("other") >= 1
    assert tree.peak_of("other") >= 120 * MIB
    assert tree.peak_of("fork") >= 200 * MIB
    # The fork's pages are this process's: adding them would count 200 MiB twice.
    assert tree.peak_total_bytes < tree.peak_of("this process") + tree.peak_of("fork")
    assert tree.peak_total_bytes >= 120 * MIB + 200 * MIB


def masked(text: str) -> str:
    """The text as nbval compares it, after the notebooks' sanitize patterns."""
    config = configparser.ConfigParser()
    config.read(SANITIZE_CFG)
    for section in config.sections():
        text = re.sub(config[section]["regex"], config[section]["replace"], text)
    return text


def test_the_nbval_masks_hide_every_figure_of_the_report():
    context = multiprocessing.get_context("spawn")
    with TreeMemory(interval=0.02) as tree:
        worker = context.Process(target=hold_memory, args=(1, 0.3))
        worker.start()
        worker.join()
    text = masked(tree.report())
    assert not re.search(r"\d", text), text
    assert text.count("<MEMORY> MiB") == 3


def test_a_tree_without_workers_says_the_work_ran_in_this_process():
    with TreeMemory() as tree:
        pass
    text = tree.report()
    assert "no worker processes" in text
    assert "worker:" not in text
    assert not re.search(r"\d", masked(text))
