"""The FMA peak benchmark the kernel benchmarks divide by (bench/fma_peak.py) builds, runs and
reports one number per vector width the CPU has, and 'unsupported' exactly where it lacks one.

    python bench/fma_peak.py            (the real peaks, README-ready)
"""
import pytest

import fma_peak


def _cpu_flags():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    return set()


def test_fma_peak_reports_each_width_the_cpu_has():
    try:
        peak = fma_peak.measure(1, seconds=0.005, repeats=1)
    except fma_peak.PeakUnavailable as e:
        pytest.skip(str(e))
    flags, peaks = _cpu_flags(), peak.gflops
    assert 0 <= peak.others_cpu <= 1
    assert sorted(peaks) == list(fma_peak.WIDTHS)
    expected = {128: "fma" in flags, 256: {"fma", "avx2"} <= flags, 512: {"fma", "avx512f"} <= flags}
    for width, has in expected.items():
        assert (peaks[width] is not None) == has, (width, peaks)
        assert peaks[width] is None or peaks[width] > 0
    if any(expected.values()):
        assert fma_peak.widest(peaks)[0] == max(w for w, has in expected.items() if has)
    assert (peak.bf16 is not None) == ("avx512_bf16" in flags) and (peak.bf16 is None or peak.bf16 > 0)


def test_fma_peak_table_and_errors():
    text = fma_peak.table({1: fma_peak.Peak({128: 10.0, 256: 20.0, 512: None}, 0.5, None)})
    assert "| 1 | 10.0 | 20.0 | unsupported | unsupported | others used 50% of the CPUs  NOISY: peak too low |" in text
    assert fma_peak.parse("128 1 4.50\n512 unsupported\nbf16 unsupported\n") == ({128: 4.5, 512: None}, None)
    assert fma_peak.parse("512 2 9.00\nbf16 2 18.00\n") == ({512: 9.0}, 18.0)
    with pytest.raises(ValueError, match="threads"):
        fma_peak.measure(0)
    assert fma_peak.main(["--threads", "0"]) == 2


def test_kernel_table_reads_pytest_benchmark_json(tmp_path):
    import json
    import kernel_table
    info = {"threads": 2, "gflops": 120.0, "ratio": 1.5, "fraction_of_fma_peak": 0.375,
            "fma_peak_width": 512, "fma_peak_others_cpu": 0.2}
    report = {"benchmarks": [{"fullname": "bench/bench_conv.py::test_x[lenet2-2]", "extra_info": info},
                             {"fullname": "bench/bench_pool.py::test_pool", "extra_info": {"GB/s": 3}}]}
    path = tmp_path / "k.json"
    path.write_text(json.dumps(report))
    text = kernel_table.table(json.loads(path.read_text()))
    assert "| test_x[lenet2-2] | 2 | 120.0 | 1.50 | 38% (512-bit) NOISY peak (others 20%) |" in text
    assert "test_pool" not in text  # no GFLOP/s: a memory-bound kernel has no FMA fraction
    assert kernel_table.main([str(tmp_path / "missing.json")]) == 2
