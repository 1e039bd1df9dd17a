/* The machine's float32 FMA peak, per vector width: a register-resident loop of independent
 * fused multiply-adds (no loads, no stores), on 1..T threads.
 *
 *   fma_peak THREADS SECONDS REPEATS  ->  one line per width: "width threads gflops" or
 *                                         "width unsupported", then the same for "bf16":
 *                                         AVX512-BF16's vdpbf16ps (32 bfloat16 products summed
 *                                         pairwise into 16 float32 lanes: 64 flops an
 *                                         instruction), the ceiling of a bfloat16 kernel
 *
 * Built and run by bench/fma_peak.py (gcc at run time, no -march: each width's loop carries its
 * own target attribute and runs only where __builtin_cpu_supports says the CPU has it).
 * ACC independent accumulators hide the FMA latency (4-5 cycles) on two FMA pipes: 2 * 5 = 10
 * are needed, 12 leave slack. The best of REPEATS runs is reported: noise only lowers a peak.
 */
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define ACC 12
#define UNROLL_FMAS(OP) OP(0) OP(1) OP(2) OP(3) OP(4) OP(5) OP(6) OP(7) OP(8) OP(9) OP(10) OP(11)

static volatile float sink;  /* keeps the accumulators observable */

/* One loop per width, written once: VEC the register type; SET1, FMADD and FIRST (its
 * intrinsics) are defined before each use. */
#define FMA_LOOP(NAME, TARGET, VEC)                                                       \
    __attribute__((target(TARGET))) static void NAME(long iters) {                        \
        VEC a = SET1(0.999999f), b = SET1(1e-7f);                                         \
        VEC acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7, acc8, acc9, acc10, acc11;     \
        UNROLL_FMAS(INIT)                                                                 \
        for (long it = 0; it < iters; it++) { UNROLL_FMAS(STEP) }                         \
        float s = 0.f;                                                                    \
        UNROLL_FMAS(SUM)                                                                  \
        sink = s;                                                                         \
    }
#define INIT(i) acc##i = SET1((float)(i));
#define STEP(i) acc##i = FMADD(acc##i, a, b);
#define SUM(i) s += FIRST(acc##i);

#define SET1 _mm_set1_ps
#define FMADD _mm_fmadd_ps
#define FIRST _mm_cvtss_f32
FMA_LOOP(loop128, "fma", __m128)
#undef SET1
#undef FMADD
#undef FIRST
#define SET1 _mm256_set1_ps
#define FMADD _mm256_fmadd_ps
#define FIRST _mm256_cvtss_f32
FMA_LOOP(loop256, "avx2,fma", __m256)
#undef SET1
#undef FMADD
#undef FIRST
#define SET1 _mm512_set1_ps
#define FMADD _mm512_fmadd_ps
#define FIRST _mm512_cvtss_f32
FMA_LOOP(loop512, "avx512f", __m512)
#if __GNUC__ >= 10  /* the first gcc with AVX512-BF16 intrinsics */
#define HAVE_BF16_LOOP 1
#undef FMADD
#define FMADD(acc, a, b) _mm512_dpbf16_ps(acc, (__m512bh)_mm512_castps_si512(a), \
                                         (__m512bh)_mm512_castps_si512(b))
FMA_LOOP(loop512bf16, "avx512f,avx512bf16", __m512)
#endif

typedef struct { void (*loop)(long); long iters; } job_t;

static void *run_job(void *arg) {
    job_t *job = arg;
    job->loop(job->iters);
    return NULL;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

/* Wall seconds for `threads` threads each running loop(iters). */
static double timed(void (*loop)(long), long iters, int threads) {
    pthread_t tid[64];
    job_t job = {loop, iters};
    double start = now();
    for (int t = 1; t < threads; t++) pthread_create(&tid[t], NULL, run_job, &job);
    loop(iters);
    for (int t = 1; t < threads; t++) pthread_join(tid[t], NULL);
    return now() - start;
}

static double best_gflops(void (*loop)(long), int lanes, int threads, double seconds, int repeats) {
    long iters = 1000;
    while (timed(loop, iters, 1) < 0.01 && iters < (1L << 40)) iters *= 2;  /* calibrate */
    iters = (long)(iters * seconds / timed(loop, iters, 1)) + 1;
    double best = 0.0;
    for (int r = 0; r < repeats; r++) {
        double flops = 2.0 * ACC * lanes * (double)iters * threads;  /* an FMA is 2 flops per lane */
        double g = flops / timed(loop, iters, threads) / 1e9;
        if (g > best) best = g;
    }
    return best;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: fma_peak THREADS SECONDS REPEATS\n");
        return 2;
    }
    int threads = atoi(argv[1]), repeats = atoi(argv[3]);
    double seconds = atof(argv[2]);
    if (threads < 1 || threads > 64 || repeats < 1 || !(seconds > 0)) {
        fprintf(stderr, "fma_peak: THREADS in 1..64, SECONDS > 0, REPEATS >= 1\n");
        return 2;
    }
    __builtin_cpu_init();
    /* __builtin_cpu_supports takes string literals only: one flag per width, spelled out */
    int fma = __builtin_cpu_supports("fma");
    struct { int width, ok; void (*loop)(long); } widths[] = {
        {128, fma, loop128}, {256, fma && __builtin_cpu_supports("avx2"), loop256},
        {512, fma && __builtin_cpu_supports("avx512f"), loop512}};
    for (int i = 0; i < 3; i++) {
        int ok = widths[i].ok;
        if (!ok) {
            printf("%d unsupported\n", widths[i].width);
            continue;
        }
        printf("%d %d %.2f\n", widths[i].width, threads,
               best_gflops(widths[i].loop, widths[i].width / 32, threads, seconds, repeats));
        fflush(stdout);
    }
#ifdef HAVE_BF16_LOOP
    if (__builtin_cpu_supports("avx512bf16"))  /* 32 lanes of products a 512-bit instruction */
        printf("bf16 %d %.2f\n", threads, best_gflops(loop512bf16, 32, threads, seconds, repeats));
    else
#endif
        printf("bf16 unsupported\n");
    return 0;
}
