"""What the host CPU computes natively, for choosing inference precision."""
import functools
from typing import Optional

# /proc/cpuinfo flags of native bfloat16 arithmetic (AVX512-BF16, AMX).
BFLOAT16_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.lru_cache(maxsize=None)
def native_bfloat16(cpuinfo: str = "/proc/cpuinfo") -> Optional[bool]:
    """Whether an x86 CPU has bfloat16 instructions; None when unknown (no
    readable `cpuinfo`, e.g. not Linux, or no x86 flags in it)."""
    try:
        with open(cpuinfo) as f:
            text = f.read()
    except OSError:
        return None
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
    if not flags:  # e.g. ARM, whose cpuinfo lists "Features"
        return None
    return any(flag in flags for flag in BFLOAT16_FLAGS)
