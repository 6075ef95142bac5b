"""Record files: CRC-32C, counting records from their headers, broken files named."""
import pytest
import tensorflow as tf

from deeplab2.data import records


def _write(path, payloads):
    with tf.io.TFRecordWriter(str(path)) as writer:
        for payload in payloads:
            writer.write(payload)


def test_crc32c_check_value():
    # The standard check value of CRC-32C (Castagnoli) is that of "123456789".
    assert records.crc32c(b"123456789") == 0xE3069283
    assert records.crc32c(b"") == 0


def test_counts_match_a_full_read(tmp_path):
    sizes = [0, 1, 5, 300, 70_000]
    _write(tmp_path / "a.tfrecord", [bytes([i % 251]) * n for i, n in enumerate(sizes)])
    _write(tmp_path / "b.tfrecord", [])
    files = [str(tmp_path / "a.tfrecord"), str(tmp_path / "b.tfrecord")]
    expected = [sum(1 for _ in tf.data.TFRecordDataset(f)) for f in files]
    assert records.count_all(files) == expected == [5, 0]


def test_broken_files_are_named(tmp_path):
    _write(tmp_path / "good.tfrecord", [b"x" * 100, b"y" * 50])
    data = (tmp_path / "good.tfrecord").read_bytes()
    cases = {
        "cut-in-data.tfrecord": (data[:-20], "is truncated: record 1 needs"),
        "cut-in-header.tfrecord": (data + data[:5], "is truncated: 5 stray bytes"),
        "garbage.tfrecord": (b"\x00" * 7 + b"not a tfrecord" * 9, "is not a TFRecord file or is corrupt: bad header checksum"),
    }
    for name, (content, message) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(records.RecordFileError, match=f"{tmp_path / name} {message}"):
            records.count_records(str(tmp_path / name))


def test_patterns_without_files_are_named(tmp_path):
    with pytest.raises(records.RecordFileError, match=r"eval files 'x-\*' matches no file"):
        records.list_files("x-*", "eval files")
    _write(tmp_path / "b.tfrecord", [b""])
    _write(tmp_path / "a.tfrecord", [b""])
    assert records.list_files([str(tmp_path / "*.tfrecord"), str(tmp_path / "a*")]) == [
        str(tmp_path / "a.tfrecord"), str(tmp_path / "b.tfrecord")]
