"""A dependency-free progress bar for long work (conversion, training, evaluation)."""
import sys
import time
from typing import Optional, TextIO


def _format_seconds(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes:02d}:{seconds:02d}"


class Progress:
    """Prints `desc  37/120 [=====>    ] 31% 4.2 it/s ETA 00:19 extra` to stderr.

    On a terminal the line is redrawn in place; otherwise (logs, CI) a line is
    printed at most every `log_interval` seconds and at the end, so logs stay short.
    """

    def __init__(self, total: Optional[int], desc: str = "", unit: str = "it",
                 stream: Optional[TextIO] = None, log_interval: float = 10.0):
        self.total = total
        self.desc = desc
        self.unit = unit
        self.count = 0
        self.extra = ""
        self._stream = stream or sys.stderr
        self._tty = hasattr(self._stream, "isatty") and self._stream.isatty()
        self._interval = 0.1 if self._tty else log_interval
        self._start = time.monotonic()
        self._last_draw = -float("inf")
        self._drawn_count = None

    def update(self, n: int = 1, extra: str = "") -> None:
        """Advances by `n`; `extra` is appended to the line (e.g. losses)."""
        self.count += n
        if extra:
            self.extra = extra
        now = time.monotonic()
        if now - self._last_draw >= self._interval or self.count == self.total:
            self._draw(now)

    def close(self) -> None:
        """Draws the final line (unless it is already on screen) and ends it."""
        if self._drawn_count != self.count:
            self._draw(time.monotonic(), final=True)
        elif self._tty:
            self._stream.write("\n")
            self._stream.flush()

    def line(self, now: Optional[float] = None) -> str:
        """The current progress line (without carriage return)."""
        now = time.monotonic() if now is None else now
        elapsed = max(now - self._start, 1e-9)
        rate = self.count / elapsed
        parts = [self.desc] if self.desc else []
        if self.total:
            frac = min(self.count / self.total, 1.0)
            filled = int(frac * 20)
            bar = "=" * filled + (">" if filled < 20 else "") + " " * (19 - filled)
            eta = (self.total - self.count) / rate if rate > 0 else float("inf")
            eta_text = _format_seconds(eta) if eta != float("inf") else "--:--"
            parts.append(f"{self.count}/{self.total} [{bar}] {100 * frac:3.0f}%")
            parts.append(f"{rate:.2f} {self.unit}/s ETA {eta_text}")
        else:
            parts.append(f"{self.count} {self.unit} {rate:.2f} {self.unit}/s")
        parts.append(f"elapsed {_format_seconds(elapsed)}")
        if self.extra:
            parts.append(self.extra)
        return "  ".join(parts)

    def _draw(self, now: float, final: bool = False) -> None:
        self._last_draw = now
        self._drawn_count = self.count
        text = self.line(now)
        if self._tty:
            self._stream.write("\r" + text + ("\n" if final else "\x1b[K"))
        else:
            self._stream.write(text + "\n")
        self._stream.flush()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
