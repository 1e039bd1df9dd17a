/* Which build of fastnn's vector kernels runs here (fastnn_small_gemm.h, fastnn_direct_conv.h,
 * fastnn_pool2x2.h, fastnn_elementwise.h): the ISA level, decided once per process at first use.
 *
 *   FASTNN_ISA_AVX512    16-lane clones: target("avx512f,avx512vl,avx2,fma")
 *   FASTNN_ISA_AVX2      8-lane clones: target("avx2,fma")
 *   FASTNN_ISA_BASELINE  the build's own flags (-march=native, or x86-64 with FASTNN_PORTABLE=1)
 *
 * By default the best level this CPU runs. The environment variable FASTNN_ISA (avx512, avx2 or
 * baseline) lowers it, so tests and benchmarks can force each path on one machine. Here an
 * unknown value, or one above what the CPU runs, falls back to the CPU's best: kernels must never
 * execute an instruction the CPU lacks (SIGILL). fastnn/_runtime.py checks the same variable
 * when fastnn is imported and raises ValueError for those values, so a user never silently gets
 * another path than the one asked for; it also makes every kernel module take its decision then.
 *
 * The default prefers AVX-512 only where it measured at least as fast: with FASTNN_ISA unset, a
 * kernel whose AVX-512 clone was slower than its AVX2 clone on the machine it was measured on runs
 * the AVX2 clone (each header's *_AVX512_BY_DEFAULT constant). On that machine (AMD EPYC, 512-bit
 * FMAs double-pumped: 114 GFLOP/s per core at 256 and at 512 bits, bench/fma_peak.py) only the
 * small GEMM's axpy shape (1.1-1.5x) and max-pool's rows of >= 16 outputs (1.4x) gained; the
 * direct convolution, the dot shape and the activations run AVX2 (docs/kernels.md has the
 * numbers and commands). FASTNN_ISA=avx512 runs the AVX-512 clone of
 * every kernel that has one, for tests and for measuring on other CPUs.
 */
#ifndef FASTNN_CPU_H
#define FASTNN_CPU_H
#include <stdlib.h>
#include <string.h>

enum { FASTNN_ISA_BASELINE = 0, FASTNN_ISA_AVX2 = 1, FASTNN_ISA_AVX512 = 2 };

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define FASTNN_HAVE_X86_CLONES 1
#define FASTNN_TARGET_AVX2 __attribute__((target("avx2,fma")))
#define FASTNN_TARGET_AVX512 __attribute__((target("avx512f,avx512vl,avx2,fma")))
#endif

/* The best level this CPU runs (and this compiler built clones for). */
static int fastnn_cpu_isa_best(void) {
#ifdef FASTNN_HAVE_X86_CLONES
    __builtin_cpu_init();
    if (!(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")))
        return FASTNN_ISA_BASELINE;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl"))
        return FASTNN_ISA_AVX512;
    return FASTNN_ISA_AVX2;
#else
    return FASTNN_ISA_BASELINE;
#endif
}

/* FASTNN_ISA's level, or -1 when unset, empty or unknown. */
static int fastnn_isa_requested(void) {
    const char *env = getenv("FASTNN_ISA");
    if (env == NULL || !*env)
        return -1;
    if (!strcmp(env, "avx512")) return FASTNN_ISA_AVX512;
    if (!strcmp(env, "avx2")) return FASTNN_ISA_AVX2;
    if (!strcmp(env, "baseline")) return FASTNN_ISA_BASELINE;
    return -1;
}

/* 1 when FASTNN_ISA chose the level (then every kernel runs that level's clone). */
static int fastnn_isa_forced(void) {
    static int cached = -1;
    if (cached < 0) {
        int want = fastnn_isa_requested();
        cached = want >= 0 && want <= fastnn_cpu_isa_best();
    }
    return cached;
}

static int fastnn_isa(void) {
    static int cached = -1;
    if (cached < 0)
        cached = fastnn_isa_forced() ? fastnn_isa_requested() : fastnn_cpu_isa_best();
    return cached;
}

/* Whether a kernel runs its AVX-512 clone: at that level, and either forced there or measured
 * at least as fast as its AVX2 clone (by_default, the kernel's own constant). */
static inline int fastnn_isa_use_avx512(int by_default) {
    return fastnn_isa() == FASTNN_ISA_AVX512 && (by_default || fastnn_isa_forced());
}

static inline const char *fastnn_isa_name(int isa) {
    return isa == FASTNN_ISA_AVX512 ? "avx512" : isa == FASTNN_ISA_AVX2 ? "avx2" : "baseline";
}

/* The same level as fastnn.info() names a kernel family's build. */
static inline const char *fastnn_isa_simd_name(int isa) {
    return isa == FASTNN_ISA_AVX512 ? "avx512f+fma" : isa == FASTNN_ISA_AVX2 ? "avx2+fma" : "baseline";
}

#endif
