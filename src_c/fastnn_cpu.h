/* Whether this CPU runs the AVX2+FMA clones of fastnn's vector kernels (fastnn_small_gemm.h,
 * fastnn_direct_conv.h). Decided once, on first use. */
#ifndef FASTNN_CPU_H
#define FASTNN_CPU_H

static int fastnn_cpu_avx2_fma(void) {
    static int cached = -1;
    if (cached < 0) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
        cached = 0;
#endif
    }
    return cached;
}

#endif
