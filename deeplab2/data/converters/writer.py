"""Writes one split as sharded TFRecords, converting images in parallel.

Shards are sized by bytes unless a shard count is given: records go in order
into the current shard until their serialized sizes reach `shard_bytes`
(DEFAULT_SHARD_BYTES, ~150 MB: large sequential reads, yet enough files to
spread a big split over input pipelines), then the next shard starts. With
`num_shards`, the split is cut into that many contiguous shards instead.

Output is atomic per split: shards are written under a hidden temporary
directory inside `output_dir` (with provisional names, as their number is known
only at the end) and moved to `{split}-{i:05d}-of-{n:05d}.tfrecord` only when
every shard is complete; `{split}-summary.json` is written last and marks a
complete split. Any failure (including Ctrl-C) removes the temporary files and
leaves earlier outputs untouched; the temporary folder of a killed run is
removed by the next run of the same split.
"""
import glob
import json
import multiprocessing
import os
import shutil
import signal
import tempfile
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import tensorflow as tf

from deeplab2.data.converters.common import ConversionError, ExampleStats
from deeplab2.utils.paths import (prepare_output_dir, remove_stale_temporaries,
                                  temporary_prefix)
from deeplab2.utils.progress import Progress

DEFAULT_SHARD_BYTES = 150 * 10**6

Converter = Callable[[Any], Tuple[bytes, ExampleStats]]


def shard_name(split: str, index: int, num_shards: int) -> str:
    return f"{split}-{index:05d}-of-{num_shards:05d}.tfrecord"


def write_split(items: Sequence[Any], convert: Converter, output_dir: str, split: str,
                dataset: str, num_shards: Optional[int] = None,
                num_workers: Optional[int] = None,
                metadata: Optional[Dict[str, Any]] = None,
                shard_bytes: Optional[int] = None) -> Dict[str, Any]:
    """Converts `items` in order into the shards of `split` in `output_dir`.

    Args:
        items: one picklable work item per image (e.g. file paths).
        convert: picklable function turning one item into (serialized example,
            stats); it raises ConversionError for bad source files.
        output_dir: destination folder, created if missing.
        split: split name, the prefix of the shard and summary files.
        dataset: dataset name recorded in the summary.
        num_shards: exact number of shards (at most one per item); None sizes
            shards by bytes.
        num_workers: parallel processes; defaults to os.cpu_count().
        metadata: extra JSON-serializable facts recorded in the summary (e.g.
            the parameters a generated split was made with).
        shard_bytes: a shard ends once its serialized records reach this size;
            defaults to DEFAULT_SHARD_BYTES. Not together with `num_shards`.

    Returns:
        The summary also written to `{split}-summary.json`.
    """
    if num_shards is not None and shard_bytes is not None:
        raise ValueError("num_shards and shard_bytes are alternatives; pass at most one.")
    if num_shards is not None and num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}.")
    if shard_bytes is not None and shard_bytes < 1:
        raise ValueError(f"shard_bytes must be >= 1, got {shard_bytes}.")
    if not items:
        raise ConversionError(f"split {split!r} of {dataset} has no images to convert")
    if num_shards is None:
        shard_bytes = shard_bytes or DEFAULT_SHARD_BYTES
    else:
        num_shards = min(num_shards, len(items))
    num_workers = min(num_workers or os.cpu_count() or 1, len(items))
    prepare_output_dir(output_dir, "output_dir")
    remove_stale_temporaries(output_dir, split)
    tmp_dir = tempfile.mkdtemp(prefix=temporary_prefix(split), dir=output_dir)
    try:
        count, totals = _write_shards(items, convert, tmp_dir, num_shards, shard_bytes,
                                      num_workers, f"{dataset} {split}")
        names = [shard_name(split, i, count) for i in range(count)]
        summary = {
            "dataset": dataset,
            "split": split,
            "num_images": len(items),
            "num_segments": totals.segments,
            "num_bytes": sum(os.path.getsize(_temp_shard_path(tmp_dir, i))
                             for i in range(count)),
            "label_bytes": totals.label_bytes,
            "raw_label_bytes": totals.raw_label_bytes,
            "num_shards": count,
            "shards": names,
            **({"shard_bytes": shard_bytes} if num_shards is None else {}),
            **(metadata or {}),
        }
        _commit(tmp_dir, output_dir, split, names, summary)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    print(f"wrote {len(items)} images, {totals.segments} segments, "
          f"{_format_bytes(summary['num_bytes'])} in {count} shards to "
          f"{os.path.join(output_dir, split)}-*.tfrecord", flush=True)
    return summary


def _write_shards(items: Sequence[Any], convert: Converter, tmp_dir: str,
                  num_shards: Optional[int], shard_bytes: Optional[int], num_workers: int,
                  desc: str) -> Tuple[int, ExampleStats]:
    """Writes all shards into `tmp_dir` under provisional names (_temp_shard_path).

    A new shard starts where one of `num_shards` contiguous shards begins, or,
    without `num_shards`, after the current shard reached `shard_bytes`; so no
    shard is empty. Returns the number of shards and the summed stats.
    """
    totals = ExampleStats(0, 0, 0)
    pool = (multiprocessing.Pool(num_workers, initializer=_ignore_sigint)
            if num_workers > 1 else None)
    writer, count, size = None, 0, 0  # size: serialized bytes in the current shard
    try:
        results: Iterable = pool.imap(convert, items) if pool else map(convert, items)
        with Progress(len(items), desc=desc, unit="img") as progress:
            for j, (serialized, stats) in enumerate(results):
                if num_shards:  # item j goes to shard j * num_shards // len(items)
                    new_shard = j * num_shards // len(items) == count
                else:
                    new_shard = writer is None or size >= shard_bytes
                if new_shard:
                    if writer:
                        writer.close()
                    writer = tf.io.TFRecordWriter(_temp_shard_path(tmp_dir, count))
                    count, size = count + 1, 0
                writer.write(serialized)
                size += len(serialized)
                totals = ExampleStats(*(a + b for a, b in zip(totals, stats)))
                progress.update()
    finally:
        if writer:
            writer.close()
        if pool:
            pool.terminate()
            pool.join()
    return count, totals


def _temp_shard_path(tmp_dir: str, index: int) -> str:
    """Where shard `index` is written before the number of shards is known."""
    return os.path.join(tmp_dir, f"shard-{index:05d}.tfrecord")


def _ignore_sigint() -> None:
    """Workers leave Ctrl-C to the parent, which stops the pool and cleans up."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _commit(tmp_dir: str, output_dir: str, split: str, names: List[str],
            summary: Dict[str, Any]) -> None:
    """Moves finished shards into place under their final `names`, drops stale
    shards of `split`, then writes the summary."""
    summary_path = os.path.join(output_dir, f"{split}-summary.json")
    if os.path.exists(summary_path):  # the split is incomplete until the new one lands
        os.remove(summary_path)
    for index, name in enumerate(names):
        os.replace(_temp_shard_path(tmp_dir, index), os.path.join(output_dir, name))
    digits = "[0-9]" * 5
    pattern = os.path.join(glob.escape(output_dir),
                           f"{glob.escape(split)}-{digits}-of-{digits}.tfrecord")
    for path in glob.glob(pattern):
        if os.path.basename(path) not in names:
            os.remove(path)
    tmp_summary = os.path.join(tmp_dir, "summary.json")
    with open(tmp_summary, "w") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")
    os.replace(tmp_summary, summary_path)


def _format_bytes(num_bytes: int) -> str:
    """Human-readable size with decimal units, e.g. "1.2 GB"."""
    size = float(num_bytes)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"
