"""TFRecord files: listing them, counting their records, catching broken files early.

The input pipeline needs each file's record count (to know where an epoch
ends, to resume at a step without replaying earlier epochs, and to pad
evaluation to full batches). Counting walks the TFRecord framing only: per
record, a uint64 length, the masked CRC-32C of those 8 bytes, the data and
its masked CRC-32C. The data is skipped, so a file costs one small read per
record; the length CRC tells a record header from garbage, and a record that
runs past the end of its file is a truncated file. Either is a one-line error
naming the file, instead of a pipeline that hangs or dies mid-training.
"""
import concurrent.futures
import struct
from typing import List, Sequence, Union

import tensorflow as tf

_HEADER_BYTES = 12  # uint64 length + uint32 masked CRC-32C of the length
_FOOTER_BYTES = 4  # uint32 masked CRC-32C of the data
_MASK_DELTA = 0xA282EAD8


class RecordFileError(ValueError):
    """A TFRecord file that cannot be read; the message names it."""


def _crc32c_table() -> List[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), the checksum of the TFRecord format."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def list_files(file_pattern: Union[str, Sequence[str]], what: str = "file pattern") -> List[str]:
    """Sorted files matching one glob or several; an error names the pattern."""
    patterns = [file_pattern] if isinstance(file_pattern, str) else list(file_pattern)
    files = sorted({f for p in patterns for f in tf.io.gfile.glob(p)})
    if not files:
        raise RecordFileError(f"{what} {file_pattern!r} matches no file.")
    return files


def count_records(path: str) -> int:
    """Number of records of one TFRecord file, reading only their headers."""
    size = tf.io.gfile.stat(path).length
    count, offset = 0, 0
    with tf.io.gfile.GFile(path, "rb") as f:
        while offset < size:
            f.seek(offset)
            header = f.read(_HEADER_BYTES)
            if len(header) < _HEADER_BYTES:
                raise RecordFileError(f"{path} is truncated: {size - offset} stray bytes "
                                      f"after record {count} (not a complete TFRecord "
                                      "header).")
            length, length_crc = struct.unpack("<QI", header)
            if masked_crc32c(header[:8]) != length_crc:
                raise RecordFileError(f"{path} is not a TFRecord file or is corrupt: bad "
                                      f"header checksum at byte {offset} (record {count}).")
            end = offset + _HEADER_BYTES + length + _FOOTER_BYTES
            if end > size:
                raise RecordFileError(f"{path} is truncated: record {count} needs "
                                      f"{end - offset} bytes, {size - offset} are left.")
            count, offset = count + 1, end
    return count


def count_all(files: Sequence[str], num_threads: int = 16) -> List[int]:
    """Record counts of several files, read in parallel threads."""
    if len(files) <= 1:
        return [count_records(f) for f in files]
    with concurrent.futures.ThreadPoolExecutor(min(num_threads, len(files))) as pool:
        return list(pool.map(count_records, files))


def file_sizes(files: Sequence[str]) -> List[int]:
    return [tf.io.gfile.stat(f).length for f in files]
