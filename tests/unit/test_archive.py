"""Project archives (crawld.archive): validation of every entry, project lookup, unpack."""
from __future__ import annotations

import io
import os
import stat
import zipfile

import pytest

from crawld import archive
from crawld.archive import Limits, inspect, unpack, valid_name
from crawld.errors import ProjectError, TooLarge

LIMITS = Limits(max_files=100, max_unpacked=10 * 1024 * 1024)
FILE = (stat.S_IFREG | 0o644) << 16
DIR = (stat.S_IFDIR | 0o755) << 16
LINK = (stat.S_IFLNK | 0o777) << 16


def cfg(project: str) -> str:
    return f"[settings]\ndefault = {project}.settings\n\n[deploy]\nproject = {project}\n"


def make_zip(entries, compression=zipfile.ZIP_DEFLATED) -> bytes:
    """entries: (name, data) or (name, data, external_attr); names ending in / are dirs."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for entry in entries:
            name, data = entry[0], entry[1]
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            info.compress_type = compression
            if len(entry) > 2:
                info.external_attr = entry[2]
            else:
                info.external_attr = DIR | 0x10 if name.endswith("/") else FILE
            zf.writestr(info, data)
    return buf.getvalue()


def project_zip(name="proj", extra=()) -> bytes:
    return make_zip([(f"{name}/", b""), (f"{name}/scrapy.cfg", cfg(name)),
                     (f"{name}/{name}/__init__.py", b""),
                     (f"{name}/{name}/settings.py", b"BOT_NAME = 'x'\n"), *extra])


# ---------------------------------------------------------------------------- accepted


def test_valid_project_is_found_with_its_members():
    found = inspect(project_zip("proj"), LIMITS)
    assert found.name == "proj"
    assert sorted(i.filename for i in found.members) == [
        "proj/", "proj/proj/__init__.py", "proj/proj/settings.py", "proj/scrapy.cfg"]


def test_members_outside_the_project_folder_are_left_out():
    data = project_zip("proj", extra=[("README.txt", b"hi"), ("other/x.py", b"")])
    found = inspect(data, LIMITS)
    assert all(i.filename.startswith("proj/") for i in found.members)
    assert len(found.members) == 4


def test_archive_written_by_zipfile_writestr_is_accepted():
    # writestr(name, ...) stores permission bits only (0o600, no file type): a plain file
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("proj/scrapy.cfg", cfg("proj"))
        zf.writestr("proj/proj/__init__.py", "")
    assert inspect(buf.getvalue(), LIMITS).name == "proj"


def test_entries_without_unix_mode_are_accepted():
    data = make_zip([("proj/scrapy.cfg", cfg("proj"), 0), ("proj/a.py", b"", 0)])
    assert inspect(data, LIMITS).name == "proj"


def test_the_folder_named_by_deploy_project_is_chosen_among_several_cfgs():
    data = make_zip([("a/scrapy.cfg", cfg("elsewhere")), ("b/scrapy.cfg", cfg("b")),
                     ("b/b/__init__.py", b"")])
    found = inspect(data, LIMITS)
    assert found.name == "b"
    assert {i.filename for i in found.members} == {"b/scrapy.cfg", "b/b/__init__.py"}


def test_limits_are_inclusive():
    data = project_zip("proj")  # 4 entries
    size = sum(i.file_size for i in zipfile.ZipFile(io.BytesIO(data)).infolist())
    assert inspect(data, Limits(max_files=4, max_unpacked=size)).name == "proj"


@pytest.mark.parametrize("name, ok", [
    ("proj", True), ("My.Project-2_x", True), ("a", True), ("a" * 64, True),
    ("a" * 65, False), ("-proj", False), (".proj", False), ("pro j", False), ("", False),
    ("pröj", False)])
def test_valid_name(name, ok):
    assert valid_name(name) is ok


# ---------------------------------------------------------------------------- rejected


def test_not_a_zip_is_rejected():
    with pytest.raises(ProjectError, match="not a zip"):
        inspect(b"this is not a zip file at all", LIMITS)


def test_symlink_entry_is_rejected():
    data = project_zip("proj", extra=[("proj/link", b"/etc/passwd", LINK)])
    with pytest.raises(ProjectError, match="links are not allowed") as info:
        inspect(data, LIMITS)
    assert "proj/link" in str(info.value)


@pytest.mark.parametrize("kind", [stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO, stat.S_IFSOCK])
def test_device_and_special_entries_are_rejected(kind):
    data = project_zip("proj", extra=[("proj/dev", b"", (kind | 0o644) << 16)])
    with pytest.raises(ProjectError, match="special files are not allowed"):
        inspect(data, LIMITS)


@pytest.mark.parametrize("name, why", [
    ("/etc/cron.d/x", "absolute"),
    ("C:/Windows/x", "absolute"),
    ("c:x", "absolute"),
    ("proj/../../escape.py", "'..'"),
    ("../escape.py", "'..'"),
    ("proj/..", "'..'"),
    ("proj\\..\\escape.py", "forbidden character"),
])
def test_entries_with_dangerous_names_are_rejected(name, why):
    data = project_zip("proj", extra=[(name, b"x")])
    with pytest.raises(ProjectError, match="archive entry") as info:
        inspect(data, LIMITS)
    assert why in str(info.value)


def test_too_many_entries_is_too_large():
    data = project_zip("proj")  # 4 entries
    with pytest.raises(TooLarge, match="max-archive-files") as info:
        inspect(data, Limits(max_files=3, max_unpacked=LIMITS.max_unpacked))
    assert info.value.code == 413


def test_unpacked_size_over_the_limit_is_too_large():
    data = project_zip("proj", extra=[("proj/data.bin", os.urandom(5000))])
    size = sum(i.file_size for i in zipfile.ZipFile(io.BytesIO(data)).infolist())
    with pytest.raises(TooLarge, match="max-unpacked-size"):
        inspect(data, Limits(max_files=100, max_unpacked=size - 1))


def test_highly_compressed_big_member_is_rejected_as_a_zip_bomb():
    bomb = b"\0" * (2 * 1024 * 1024)  # deflates about 1000:1
    data = project_zip("proj", extra=[("proj/bomb.bin", bomb)])
    info = [i for i in zipfile.ZipFile(io.BytesIO(data)).infolist()
            if i.filename == "proj/bomb.bin"][0]
    assert info.file_size / info.compress_size > archive.MAX_RATIO  # the premise
    with pytest.raises(ProjectError, match="zip bomb"):
        inspect(data, LIMITS)


def test_big_member_stored_uncompressed_is_not_a_zip_bomb():
    big = b"\0" * (2 * 1024 * 1024)
    data = make_zip([("proj/scrapy.cfg", cfg("proj")), ("proj/big.bin", big)],
                    compression=zipfile.ZIP_STORED)
    assert inspect(data, LIMITS).name == "proj"


def test_archive_without_scrapy_cfg_is_rejected():
    data = make_zip([("proj/", b""), ("proj/proj/__init__.py", b"")])
    with pytest.raises(ProjectError, match="no project found"):
        inspect(data, LIMITS)


def test_scrapy_cfg_at_the_top_level_is_not_a_project():
    data = make_zip([("scrapy.cfg", cfg("proj")), ("proj/__init__.py", b"")])
    with pytest.raises(ProjectError, match="no project found"):
        inspect(data, LIMITS)


def test_scrapy_cfg_naming_another_project_is_rejected():
    data = make_zip([("proj/scrapy.cfg", cfg("other"))])
    with pytest.raises(ProjectError, match="no folder") as info:
        inspect(data, LIMITS)
    assert "'other'" in str(info.value)


def test_scrapy_cfg_without_deploy_project_is_rejected():
    data = make_zip([("proj/scrapy.cfg", "[settings]\ndefault = proj.settings\n")])
    with pytest.raises(ProjectError, match=r"cannot read \[deploy\] project"):
        inspect(data, LIMITS)


def test_scrapy_cfg_that_is_not_utf8_is_rejected():
    data = make_zip([("proj/scrapy.cfg", b"[deploy]\nproject = pr\xe9j\n")])
    with pytest.raises(ProjectError, match=r"cannot read \[deploy\] project"):
        inspect(data, LIMITS)


def test_invalid_project_name_is_rejected():
    data = make_zip([("-bad/scrapy.cfg", cfg("-bad"))])
    with pytest.raises(ProjectError, match="invalid project name"):
        inspect(data, LIMITS)


def test_project_errors_are_bad_requests():
    assert ProjectError("x").code == 400


# ------------------------------------------------------------------------------ unpack


def test_unpack_writes_the_project_contents_without_the_top_folder(tmp_path):
    data = project_zip("proj", extra=[("proj/spiders/", b""),
                                      ("proj/spiders/q.py", b"# quotes\n"),
                                      ("stray.txt", b"not part of the project")])
    found = inspect(data, LIMITS)
    dest = tmp_path / "out" / "v1"
    unpack(data, found, str(dest))
    assert (dest / "scrapy.cfg").read_text() == cfg("proj")
    assert (dest / "proj" / "settings.py").read_bytes() == b"BOT_NAME = 'x'\n"
    assert (dest / "spiders" / "q.py").read_bytes() == b"# quotes\n"
    assert (dest / "spiders").is_dir()
    assert not (dest / "stray.txt").exists()
    assert not (dest / "proj" / "scrapy.cfg").exists()


def test_unpacked_files_are_mode_644(tmp_path):
    data = project_zip("proj", extra=[("proj/run.sh", b"#!/bin/sh\n",
                                       (stat.S_IFREG | 0o4777) << 16)])
    dest = tmp_path / "v1"
    unpack(data, inspect(data, LIMITS), str(dest))
    assert stat.S_IMODE(os.stat(dest / "run.sh").st_mode) == 0o644
    assert stat.S_IMODE(os.stat(dest / "scrapy.cfg").st_mode) == 0o644


def test_unpack_creates_parent_folders_missing_from_the_archive(tmp_path):
    data = make_zip([("proj/scrapy.cfg", cfg("proj")), ("proj/a/b/c.py", b"c")])
    dest = tmp_path / "v1"
    unpack(data, inspect(data, LIMITS), str(dest))
    assert (dest / "a" / "b" / "c.py").read_bytes() == b"c"


def test_unpack_refuses_a_member_that_would_escape(tmp_path):
    # inspect() never lets such a name through; unpack re-checks on its own
    data = make_zip([("proj/scrapy.cfg", cfg("proj")), ("proj/../evil.py", b"x")])
    zf = zipfile.ZipFile(io.BytesIO(data))
    crafted = archive.Inspected("proj", tuple(zf.infolist()))
    with pytest.raises(ProjectError, match="escapes"):
        unpack(data, crafted, str(tmp_path / "v1"))
    assert not (tmp_path / "evil.py").exists()


def test_unpacked_folders_are_0755_whatever_the_umask(tmp_path):
    import io as _io
    import os as _os
    import zipfile as _zipfile
    from crawld.archive import Limits, inspect as _inspect, unpack as _unpack
    buf = _io.BytesIO()
    with _zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("p/scrapy.cfg", "[deploy]\nproject = p\n")
        zf.writestr("p/p/spiders/deep/s.py", "x = 1\n")
        zf.writestr("p/p/empty/", "")
    data = buf.getvalue()
    old = _os.umask(0o077)
    try:
        _unpack(data, _inspect(data, Limits(100, 10 ** 6)), str(tmp_path / "out"))
    finally:
        _os.umask(old)
    for folder in ("out", "out/p", "out/p/spiders", "out/p/spiders/deep", "out/p/empty"):
        assert (tmp_path / folder).stat().st_mode & 0o777 == 0o755, folder
    assert (tmp_path / "out/p/spiders/deep/s.py").stat().st_mode & 0o777 == 0o644
