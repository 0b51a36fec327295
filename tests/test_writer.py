"""The gzip member writer on its own: members, durable sizes, truncation on resume."""

from __future__ import annotations

import gzip
import os
import zlib

import pytest

from helpers.ingest.writer import MemberWriter, gzip_member, member_digests


def members(data: bytes) -> int:
    """How many gzip members `data` holds, decoded one by one."""
    count = 0
    while data:
        inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        inflate.decompress(data)
        assert inflate.eof
        data = inflate.unused_data
        count += 1
    return count


def test_each_checkpoint_closes_a_member_and_every_reader_sees_one_stream(tmp_path):
    path = tmp_path / "out.json.gz"
    writer = MemberWriter(path)
    sizes = []
    for n in range(3):
        writer.write(b'{"n":%d}\n' % n)
        sizes.append(writer.end_member())
    writer.close()
    data = path.read_bytes()
    assert sizes == sorted(sizes) and sizes[-1] == len(data)
    assert members(data) == 3
    assert gzip.decompress(data) == b'{"n":0}\n{"n":1}\n{"n":2}\n'


def test_no_data_between_checkpoints_writes_no_empty_member(tmp_path):
    writer = MemberWriter(tmp_path / "out.gz")
    writer.write(b"a\n")
    first = writer.end_member()
    assert writer.end_member() == first  # nothing written: the file does not grow
    writer.close()


def test_an_empty_output_is_still_a_valid_gzip_file(tmp_path):
    path = tmp_path / "empty.gz"
    MemberWriter(path).close()
    assert gzip.decompress(path.read_bytes()) == b""


def test_resuming_truncates_to_the_durable_size_and_appends(tmp_path):
    path = tmp_path / "out.gz"
    writer = MemberWriter(path)
    writer.write(b"kept\n")
    durable = writer.close()
    with open(path, "ab") as f:  # what a crash mid-member leaves: the start of a torn member
        f.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00torn")
    assert path.stat().st_size > durable
    again = MemberWriter(path, resume_at=durable)
    again.write(b"after\n")
    again.close()
    assert gzip.decompress(path.read_bytes()) == b"kept\nafter\n"


def test_the_output_has_no_timestamp_so_equal_input_gives_equal_bytes(tmp_path):
    outputs = []
    for name in ("a.gz", "b.gz"):
        writer = MemberWriter(tmp_path / name, level=1)
        writer.write(b"same\n" * 100)
        writer.close()
        outputs.append((tmp_path / name).read_bytes())
    assert outputs[0] == outputs[1]
    assert outputs[0][4:8] == b"\0\0\0\0"  # MTIME is zero


def test_member_digests_follow_the_lines_and_the_cuts_not_the_compressed_bytes(tmp_path):
    lines = [b'{"n":%d,"name":"track %d"}\n' % (n, n * 7) * 50 for n in range(6)]
    paths = []
    for name, level in (("fast.gz", 0), ("small.gz", 3)):
        writer = MemberWriter(tmp_path / name, level=level)
        for cut in (lines[:2], lines[2:]):
            writer.write(b"".join(cut))
            writer.end_member()
        writer.close()
        paths.append(tmp_path / name)
    assert paths[0].read_bytes() != paths[1].read_bytes()
    assert member_digests(paths[0]) == member_digests(paths[1])
    assert len(member_digests(paths[0])) == 2
    recut = MemberWriter(tmp_path / "recut.gz")  # the same lines, cut elsewhere
    for cut in (lines[:3], lines[3:]):
        recut.write(b"".join(cut))
        recut.end_member()
    recut.close()
    assert member_digests(tmp_path / "recut.gz") != member_digests(paths[0])


def test_member_digests_name_a_file_whose_last_member_is_cut_short(tmp_path):
    path = tmp_path / "out.gz"
    writer = MemberWriter(path)
    writer.write(os.urandom(5000) + b"\n")  # stored: a cut leaves a valid prefix
    writer.end_member()
    writer.write(b"a line\n" * 100)
    writer.close()
    whole = path.read_bytes()
    path.write_bytes(whole[:100])
    with pytest.raises(ValueError, match="out.gz: the last gzip member is cut short"):
        member_digests(path)
    path.write_bytes(whole[:-8] + bytes(4) + whole[-4:])  # member 2's CRC, zeroed
    with pytest.raises(ValueError, match="out.gz: gzip member 2 is damaged"):
        member_digests(path)


@pytest.mark.parametrize("data, tail", [(b'{"a":1}\n{"a":2}', b"\n"), (b"", b"\n"),
                                        (b"x" * 100_000, b"")])
def test_a_member_made_of_data_and_tail_holds_both_in_order(data, tail):
    member = gzip_member(data, 1, tail)
    assert members(member) == 1 and gzip.decompress(member) == data + tail


def test_nothing_at_all_makes_no_member():
    assert gzip_member(b"", 1, b"") == b""
