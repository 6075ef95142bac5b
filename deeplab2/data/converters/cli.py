"""Command-line flags shared by the converter scripts (output folder and sharding)."""
import sys

from absl import flags

from deeplab2.data.converters.common import ConversionError
from deeplab2.data.converters.writer import DEFAULT_SHARD_BYTES


def define_output_flags():
    """Defines --output_dir, --num_shards, --shard_bytes and --num_workers."""
    flags.DEFINE_string("output_dir", None, "Folder of the TFRecord shards.")
    flags.DEFINE_integer("num_shards", None, "Exact number of output shards per split, at "
                         "most one per image (default: sized by --shard_bytes).",
                         lower_bound=1)
    flags.DEFINE_integer("shard_bytes", None, "Target shard size: a shard ends once its "
                         f"records reach this many bytes (default {DEFAULT_SHARD_BYTES} = "
                         f"{DEFAULT_SHARD_BYTES / 10**6:g} MB). Not with --num_shards.",
                         lower_bound=1)
    flags.DEFINE_integer("num_workers", None, "Parallel processes (default: all cores).",
                         lower_bound=1)
    flags.mark_flag_as_required("output_dir")


def run_conversion(convert, *args, **kwargs):
    """Calls `convert(*args, output options..., **kwargs)`; exits with a one-line error."""
    values = flags.FLAGS
    if values.num_shards is not None and values.shard_bytes is not None:
        sys.exit("error: --num_shards and --shard_bytes are alternatives; pass at most one")
    try:
        convert(*args, num_shards=values.num_shards, shard_bytes=values.shard_bytes,
                num_workers=values.num_workers, **kwargs)
    except (ConversionError, ValueError) as e:  # bad sources, names, folders or counts
        sys.exit(f"error: {e}")
