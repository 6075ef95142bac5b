"""The quickstart's data stage: converts once, reuses after, summarizes, renders."""
import os

from deeplab2 import quickstart


def test_prepare_data_converts_once_then_reuses(tmp_path, capsys):
    data_dir = str(tmp_path / "synthetic")
    summaries = quickstart.prepare_data(data_dir, num_train=3, num_val=2, seed=7)
    assert summaries["train"]["num_images"] == 3 and summaries["val"]["num_images"] == 2
    shard = os.path.join(data_dir, summaries["val"]["shards"][0])
    mtime = os.path.getmtime(shard)
    quickstart.prepare_data(data_dir, num_train=3, num_val=2, seed=7)
    assert os.path.getmtime(shard) == mtime
    assert "Reusing" in capsys.readouterr().out
    # Another seed is another dataset: converted again.
    again = quickstart.prepare_data(data_dir, num_train=3, num_val=2, seed=8)
    assert again["val"]["seed"] == 8

    pattern = os.path.join(data_dir, "val-*.tfrecord")
    stats = quickstart.class_statistics(pattern)
    assert sum(stats["segments"].values()) == again["val"]["num_segments"]
    assert sum(stats["pixels"].values()) == 2 * 192 * 256
    paths = quickstart.render_samples(pattern, str(tmp_path / "out"), num_samples=1)
    assert len(paths) == 1 and os.path.getsize(paths[0]) > 1000
