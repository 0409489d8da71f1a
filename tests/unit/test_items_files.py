"""items.open_file and items.present: what the scrapyd listener's /items/ and
items_url read of the items folder."""
from __future__ import annotations

import os

import pytest

from crawld import items


def test_present_names_the_jobs_with_an_items_file(tmp_path):
    items.create(str(tmp_path), "a")
    items.create(str(tmp_path), "b.2")
    (tmp_path / "notes.txt").write_text("x")
    assert items.present(str(tmp_path)) == {"a", "b.2"}
    assert items.present(str(tmp_path / "missing")) == set()


def test_open_file_reads_a_regular_file(tmp_path):
    with open(items.create(str(tmp_path), "a"), "w") as fh:
        fh.write('{"x": 1}\n')
    with items.open_file(str(tmp_path), "a") as fh:
        assert fh.read() == b'{"x": 1}\n'


def test_open_file_refuses_a_link_a_fifo_and_nothing(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("database")
    os.symlink(secret, tmp_path / "link.jl")
    os.mkfifo(tmp_path / "fifo.jl")   # a plain open would never return
    for job_id in ("link", "fifo", "none"):
        with pytest.raises(OSError):
            items.open_file(str(tmp_path), job_id)
