"""The progress bar: rate, ETA and one final line in logs."""
import io

from deeplab2.utils.progress import Progress


def test_line_shows_count_percent_rate_and_eta():
    stream = io.StringIO()
    progress = Progress(total=4, desc="convert", unit="img", stream=stream, log_interval=1e9)
    progress._start -= 2.0  # pretend two seconds have passed
    progress.count = 1
    line = progress.line()
    assert line.startswith("convert  1/4 [")
    assert " 25%" in line and "0.50 img/s" in line and "ETA 00:06" in line


def test_logs_print_the_last_line_once():
    stream = io.StringIO()
    with Progress(total=3, stream=stream, log_interval=1e9) as progress:
        for _ in range(3):
            progress.update(extra="loss 1.0")
    lines = stream.getvalue().splitlines()
    # The first update draws (no previous draw), the completing update draws, close adds nothing.
    assert len(lines) == 2
    assert lines[-1].startswith("3/3") and lines[-1].endswith("loss 1.0")


def test_unknown_total_shows_count_and_rate():
    stream = io.StringIO()
    progress = Progress(total=None, unit="step", stream=stream)
    progress.update(5)
    progress.close()
    assert stream.getvalue().splitlines()[-1].startswith("5 step")
