"""Finding processes: a push's `scrapy list` by its marker, a process's descendants by
the kernel's children lists (real processes: ``sleep``)."""
from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import psutil

from crawld import tree
from crawld.runner import proc
from tests.conftest import wait_for


def sleeper(**env: str) -> subprocess.Popen:
    return subprocess.Popen(["sleep", "60"], env={"PATH": os.environ["PATH"], **env})


def test_scrapy_lists_are_found_by_the_staging_directory_of_one_data_dir(tmp_path: Any):
    staging = str(tmp_path / "projects" / ".staging")
    ours = sleeper(CRAWLD_LIST=f"{staging}/4f1c")
    theirs = sleeper(CRAWLD_LIST=str(tmp_path / "other" / "projects" / ".staging" / "4f1c"))
    lookalike = sleeper(CRAWLD_LIST=f"{staging}-old/4f1c")
    unmarked = sleeper(CRAWLD_PROJECT="books")
    try:
        assert tree.find_lists(staging) == [ours.pid]
        assert tree.find_lists(f"{staging}/4f1c/") == [ours.pid], "one list, by its dir"
        assert tree.kill_found([ours.pid, 999999999]) == 1
        assert ours.wait(10) == -9
        assert tree.find_lists(staging) == []
    finally:
        for p in (ours, theirs, lookalike, unmarked):
            p.kill()
            p.wait()


def test_descendants_from_the_children_lists_match_a_scan_of_proc():
    assert proc.has_children_files(), "this kernel lists children (CONFIG_PROC_CHILDREN)"
    top = subprocess.Popen([sys.executable, "-c",
                            "import subprocess, time; "
                            "a = subprocess.Popen(['sleep', '60']); "
                            "b = subprocess.Popen(['sh', '-c', 'sleep 60 & sleep 60; :']); "
                            "print('ok', flush=True); time.sleep(60)"],
                           stdout=subprocess.PIPE)
    try:
        assert top.stdout.readline() == b"ok\n"
        wait_for(lambda: len(psutil.Process(top.pid).children(recursive=True)) == 4, 10,
                 what="the tree to be complete")
        scanned = proc._children_by_scan()
        expected, stack = [], [top.pid]
        while stack:
            below = scanned.get(stack.pop(), [])
            expected += below
            stack += below
        assert sorted(proc.descendants(top.pid)) == sorted(expected) and len(expected) == 4
        assert sorted(proc.children(top.pid)) == sorted(scanned[top.pid])
        assert proc.children(999999999) == [] and proc.descendants(999999999) == []
    finally:
        for p in psutil.Process(top.pid).children(recursive=True):
            p.kill()
        top.kill()
        top.wait()
