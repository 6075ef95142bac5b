"""Reading the CPU's bfloat16 support from /proc/cpuinfo."""
from deeplab2.utils.cpu_features import native_bfloat16


def _cpuinfo(tmp_path, flags):
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nmodel name\t: test\nflags\t\t: {flags}\n\n")
    return str(path)


def test_avx512_bf16_or_amx_means_native_bfloat16(tmp_path):
    assert native_bfloat16(_cpuinfo(tmp_path, "fpu sse2 avx2 avx512f avx512_bf16")) is True
    assert native_bfloat16(_cpuinfo(tmp_path, "fpu avx2 amx_bf16 amx_tile")) is True


def test_without_the_flags_or_the_file(tmp_path):
    # avx512_bf16 must be a whole flag: avx512bw is not it.
    assert native_bfloat16(_cpuinfo(tmp_path, "fpu sse2 avx2 avx512f avx512bw")) is False
    assert native_bfloat16(str(tmp_path / "missing")) is None
