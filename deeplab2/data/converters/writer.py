"""Writes one split as sharded TFRecords, converting images in parallel.

Output is atomic per split: shards are written under a hidden temporary
directory inside `output_dir` and moved to `{split}-{i:05d}-of-{n:05d}.tfrecord`
only when every shard is complete; `{split}-summary.json` is written last and
marks a complete split. Any failure (including Ctrl-C) removes the temporary
files and leaves earlier outputs untouched.
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
from deeplab2.utils.progress import Progress


Converter = Callable[[Any], Tuple[bytes, ExampleStats]]


def shard_name(split: str, index: int, num_shards: int) -> str:
    return f"{split}-{index:05d}-of-{num_shards:05d}.tfrecord"


def write_split(items: Sequence[Any], convert: Converter, output_dir: str, split: str,
                dataset: str, num_shards: int = 1,
                num_workers: Optional[int] = None,
                metadata: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Converts `items` in order into `num_shards` shards of `output_dir`.

    Args:
        items: one picklable work item per image (e.g. file paths).
        convert: picklable function turning one item into (serialized example,
            stats); it raises ConversionError for bad source files.
        output_dir: destination folder, created if missing.
        split: split name, the prefix of the shard and summary files.
        dataset: dataset name recorded in the summary.
        num_shards: number of shards (at most one per item).
        num_workers: parallel processes; defaults to os.cpu_count().
        metadata: extra JSON-serializable facts recorded in the summary (e.g.
            the parameters a generated split was made with).

    Returns:
        The summary also written to `{split}-summary.json`.
    """
    if not items:
        raise ConversionError(f"split {split!r} of {dataset} has no images to convert")
    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}.")
    num_shards = min(num_shards, len(items))
    num_workers = min(num_workers or os.cpu_count() or 1, len(items))
    os.makedirs(output_dir, exist_ok=True)
    tmp_dir = tempfile.mkdtemp(prefix=f".{split}-incomplete-", dir=output_dir)
    try:
        names, totals = _write_shards(items, convert, tmp_dir, split, num_shards,
                                      num_workers, f"{dataset} {split}")
        summary = {
            "dataset": dataset,
            "split": split,
            "num_images": len(items),
            "num_segments": totals.segments,
            "num_bytes": sum(os.path.getsize(os.path.join(tmp_dir, n)) for n in names),
            "label_bytes": totals.label_bytes,
            "raw_label_bytes": totals.raw_label_bytes,
            "num_shards": num_shards,
            "shards": names,
            **(metadata or {}),
        }
        _commit(tmp_dir, output_dir, split, names, summary)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    print(f"wrote {len(items)} images, {totals.segments} segments, "
          f"{_format_bytes(summary['num_bytes'])} in {num_shards} shards to "
          f"{os.path.join(output_dir, split)}-*.tfrecord", flush=True)
    return summary


def _write_shards(items: Sequence[Any], convert: Converter, tmp_dir: str, split: str,
                  num_shards: int, num_workers: int,
                  desc: str) -> Tuple[List[str], ExampleStats]:
    """Writes all shards into `tmp_dir`; returns their names and summed stats."""
    names = [shard_name(split, i, num_shards) for i in range(num_shards)]
    totals = ExampleStats(0, 0, 0)
    pool = (multiprocessing.Pool(num_workers, initializer=_ignore_sigint)
            if num_workers > 1 else None)
    writer, current = None, -1
    try:
        results: Iterable = pool.imap(convert, items) if pool else map(convert, items)
        with Progress(len(items), desc=desc, unit="img") as progress:
            for j, (serialized, stats) in enumerate(results):
                shard = j * num_shards // len(items)  # contiguous, every shard non-empty
                if shard != current:
                    if writer:
                        writer.close()
                    writer = tf.io.TFRecordWriter(os.path.join(tmp_dir, names[shard]))
                    current = shard
                writer.write(serialized)
                totals = ExampleStats(*(a + b for a, b in zip(totals, stats)))
                progress.update()
    finally:
        if writer:
            writer.close()
        if pool:
            pool.terminate()
            pool.join()
    return names, totals


def _ignore_sigint() -> None:
    """Workers leave Ctrl-C to the parent, which stops the pool and cleans up."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _commit(tmp_dir: str, output_dir: str, split: str, names: List[str],
            summary: Dict[str, Any]) -> None:
    """Moves finished shards into place, drops stale shards of `split`, then the summary."""
    summary_path = os.path.join(output_dir, f"{split}-summary.json")
    if os.path.exists(summary_path):  # the split is incomplete until the new one lands
        os.remove(summary_path)
    for name in names:
        os.replace(os.path.join(tmp_dir, name), os.path.join(output_dir, name))
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
