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


def test_each_model_has_its_config_and_folder():
    from deeplab2.training.config import CONFIGS_DIR

    for gin_config, output_dir in quickstart.MODELS.values():
        assert os.path.exists(os.path.join(CONFIGS_DIR, gin_config))
    assert len({folder for _, folder in quickstart.MODELS.values()}) == len(quickstart.MODELS)


def test_summary_line_prints_the_ap_the_evaluation_computed():
    result = {"All": {"pq": 0.5, "sq": 0.8, "rq": 0.625}, "miou": 0.9, "AP": 0.25,
              "box_AP": None}
    assert quickstart.summary_line(result) == (
        "PQ 50.0  SQ 80.0  RQ 62.5  mIoU 90.0  mask AP 25.0")
    result["box_AP"] = 0.3
    assert quickstart.summary_line(result).endswith("mask AP 25.0  box AP 30.0")


def test_summary_line_puts_pq_dagger_next_to_pq():
    result = {"All": {"pq": 0.5, "sq": 0.8, "rq": 0.625}, "miou": 0.9,
              "pq_dagger": {"All": 0.55, "Things": 0.4, "Stuff": 0.7}}
    assert quickstart.summary_line(result) == (
        "PQ 50.0  SQ 80.0  RQ 62.5  PQ-dagger 55.0  mIoU 90.0")
