# fastnn_cpu.h: which build of the vector kernels runs (FASTNN_ISA_*), decided once per module
# at first use from the CPU and $FASTNN_ISA. Every module that includes the header has its own
# decision; fastnn._runtime makes each take it at import, after checking $FASTNN_ISA.
cdef extern from "fastnn_cpu.h" nogil:
    int FASTNN_ISA_BASELINE, FASTNN_ISA_AVX2, FASTNN_ISA_AVX512
    int fastnn_isa()
    int fastnn_cpu_isa_best()
    int fastnn_isa_forced()
    const char* fastnn_isa_name(int isa)
    const char* fastnn_isa_simd_name(int isa)
