"""Hostile project archives (crawld.archive): zips that zipfile only fails on when it reads
them (bad CRC, the encrypted flag, an unknown compression method, an understated size),
and zip bombs spread over many entries. Each must be a 400 (ProjectError) or 413, never
an exception that becomes a 500. The archives are built here with zipfile, then patched
byte by byte where zipfile would not write such a thing."""
from __future__ import annotations

import io
import os
import struct
import zipfile
import zlib

import pytest

from crawld import archive
from crawld.archive import Limits, inspect, unpack
from crawld.errors import ProjectError
from tests.unit.test_archive import cfg, make_zip

LIMITS = Limits(max_files=1000, max_unpacked=500 * 1024 * 1024)
MIB = 1024 * 1024

#: Offsets of fields in a local file header (PK\3\4) and a central directory record
#: (PK\1\2): general purpose flags, compression method, CRC-32, compressed size,
#: uncompressed size, name length; and where the name starts.
LOCAL = {"sig": b"PK\x03\x04", "flags": 6, "method": 8, "crc": 14, "csize": 18,
         "usize": 22, "nlen": 26, "name": 30}
CENTRAL = {"sig": b"PK\x01\x02", "flags": 8, "method": 10, "crc": 16, "csize": 20,
           "usize": 24, "nlen": 28, "name": 46}
WIDTH = {"flags": "<H", "method": "<H", "crc": "<I", "csize": "<I", "usize": "<I"}


def patch(data: bytes, entry: str, **fields: int) -> bytes:
    """``data`` with ``fields`` set in both headers of ``entry`` (local and central)."""
    out = bytearray(data)
    name = entry.encode()
    patched = 0
    for layout in (LOCAL, CENTRAL):
        at = out.find(layout["sig"])
        while at != -1:
            (nlen,) = struct.unpack_from("<H", out, at + layout["nlen"])
            start = at + layout["name"]
            if bytes(out[start:start + nlen]) == name:
                for field, value in fields.items():
                    struct.pack_into(WIDTH[field], out, at + layout[field], value)
                patched += 1
            at = out.find(layout["sig"], at + 4)
    assert patched == 2, f"{entry}: found {patched} headers, expected 2"
    return bytes(out)


def project(extra=(), compression=zipfile.ZIP_DEFLATED) -> bytes:
    return make_zip([("proj/scrapy.cfg", cfg("proj")), ("proj/proj/__init__.py", b""),
                     *extra], compression=compression)


def push(data: bytes, dest: str) -> None:
    """What a push does with an archive before ``scrapy list``: inspect, then unpack."""
    unpack(data, inspect(data, LIMITS), dest)


def refused(data: bytes, dest: str, match: str) -> ProjectError:
    with pytest.raises(ProjectError, match=match) as info:
        push(data, dest)
    assert info.value.code == 400
    return info.value


def test_the_patcher_changes_only_what_it_is_told(tmp_path):
    data = project([("proj/a.py", b"x = 1\n")])
    info = zipfile.ZipFile(io.BytesIO(data)).getinfo("proj/a.py")
    assert patch(data, "proj/a.py", crc=info.CRC) == data
    push(data, str(tmp_path / "p"))  # the unpatched archive is fine


# ---------------------------------------------------------------- read-time failures


def test_a_file_whose_bytes_do_not_match_its_crc_is_a_400(tmp_path):
    body = b"print('the original body')\n"
    data = project([("proj/a.py", body)], compression=zipfile.ZIP_STORED)
    tampered = data.replace(body, body.replace(b"original", b"tampered"))
    error = refused(tampered, str(tmp_path / "p"), "proj/a.py")
    assert "CRC" in str(error)


def test_a_scrapy_cfg_with_a_bad_crc_is_a_400(tmp_path):
    data = project(compression=zipfile.ZIP_STORED)
    tampered = data.replace(b"[settings]", b"[sEttings]")
    refused(tampered, str(tmp_path / "p"), "proj/scrapy.cfg")


def test_an_encrypted_entry_is_a_400_before_anything_is_written(tmp_path):
    data = patch(project([("proj/a.py", b"x = 1\n")]), "proj/a.py", flags=0x1)
    with pytest.raises(ProjectError, match="proj/a.py.*encrypted"):
        inspect(data, LIMITS)
    assert not os.path.exists(tmp_path / "p")


def test_an_encrypted_scrapy_cfg_is_a_400(tmp_path):
    data = patch(project(), "proj/scrapy.cfg", flags=0x1)
    refused(data, str(tmp_path / "p"), "encrypted")


@pytest.mark.parametrize("method", [1, 6, 97, 99, 0xFFFF])
def test_an_unknown_compression_method_is_a_400_before_anything_is_written(method):
    data = patch(project([("proj/a.py", b"x = 1\n")]), "proj/a.py", method=method)
    with pytest.raises(ProjectError, match=f"proj/a.py.*compression method {method}"):
        inspect(data, LIMITS)


def test_an_understated_size_is_a_400(tmp_path):
    body = b"x = 1\n" * 1000
    data = project([("proj/a.py", body)])
    refused(patch(data, "proj/a.py", usize=100), str(tmp_path / "p"), "proj/a.py")


def test_an_understated_size_never_writes_more_than_it_states(tmp_path):
    """Even with a CRC that matches the truncated bytes, the file holds no more than the
    size the archive declared (the size the limits were checked against)."""
    body = b"x = 1\n" * 1000
    data = project([("proj/a.py", body)])
    data = patch(data, "proj/a.py", usize=100, crc=zlib.crc32(body[:100]))
    push(data, str(tmp_path / "p"))
    assert os.path.getsize(tmp_path / "p" / "a.py") == 100


def test_a_corrupt_deflate_stream_is_a_400(tmp_path):
    body = os.urandom(4000).hex().encode()
    data = project([("proj/a.py", body)])
    info = zipfile.ZipFile(io.BytesIO(data)).getinfo("proj/a.py")
    start = info.header_offset + 30 + len("proj/a.py") + 40
    broken = data[:start] + b"\xff" * 64 + data[start + 64:]
    refused(broken, str(tmp_path / "p"), "proj/a.py")


# ---------------------------------------------------------------- bombs


def test_a_member_of_exactly_one_mib_is_checked_for_its_ratio():
    data = project([("proj/zeros.bin", b"\0" * MIB)])
    with pytest.raises(ProjectError, match="zip bomb"):
        inspect(data, LIMITS)


def test_many_small_members_that_together_inflate_too_much_are_a_zip_bomb():
    """450 entries of 1 MiB (a 505 KB upload) wrote 451 MB: each entry alone was under
    the threshold, so the ratio is checked on the whole archive too. (Entries of 512 KiB
    here, so that no single one is big enough to be checked on its own.)"""
    data = project([(f"proj/d{i}.bin", b"\0" * (MIB // 2)) for i in range(20)])
    infos = zipfile.ZipFile(io.BytesIO(data)).infolist()
    assert all(i.file_size < MIB for i in infos)  # the premise: none alone qualifies
    with pytest.raises(ProjectError, match="zip bomb") as info:
        inspect(data, LIMITS)
    assert f"over {archive.MAX_RATIO}" in str(info.value)


def test_a_big_project_that_compresses_normally_is_accepted(tmp_path):
    text = b"".join(b"line %d of an ordinary source file, %s\n" % (i, os.urandom(8).hex()
                                                                     .encode())
                    for i in range(60_000))
    assert len(text) > 2 * MIB
    data = project([("proj/big.txt", text)])
    push(data, str(tmp_path / "p"))
    assert os.path.getsize(tmp_path / "p" / "big.txt") == len(text)
