/* The compiled twin's hand-vectorised kernels (AVX2+FMA, and AVX-512F), included by
   _core.pyx.

   A direct convolution for layers with few input channels (the first layer of a network:
   RGB or grey input; and the input gradient of such a layer, which is the forward
   convolution of grad_output with the flipped kernel into those few channels), float32 and
   float64, any stride, no dilation, one group. im2col there gives GEMMs with K = C_in*kH*kW
   = 27 rows, which BLAS spends packing rather than multiplying. A work item (an image's
   block of output rows) first copies the input rows it reads, zero-padded on every side,
   into a thread-private buffer, once (so every load is in bounds and no row is copied per
   output row); at column stride s a row is stored as s phases (columns f, f + s, ...), so
   a tap's inputs for L adjacent outputs are L adjacent elements of one phase (L, the
   lanes of a vector register: 8 floats, 4 doubles on AVX2; 16, 8 on AVX-512). Each
   output row is then computed in blocks of 4 output channels x 3L output columns (x 2L
   or L at the right edge): twelve accumulators, three input loads and four broadcast
   weights per tap, one FMA per weight and L pixels; weights are laid out (C_out/4, C_in,
   kH, kW, 4) so a tap's four are adjacent. The AVX-512 build (32 registers) takes 8
   channels a block while 8 remain: 24 accumulators, the three input loads shared by
   twice the FMAs. The weight gradient reuses the padded rows: per input channel, kernel
   row and 3 taps, 4 output channels' grad_output rows times the 3 shifted input rows,
   summed over a work item's rows in twelve accumulators (masked loads for a row's last
   columns), then added into the thread's partial sum (added in thread order).

   The kernels are written once, in _direct_impl.h, and included here for float and for
   double, each compiled for AVX2+FMA and for AVX-512F (function attributes; names ending
   _float_avx2, ..., _double_avx512). The caller picks the build (wide: AVX-512, which the
   CPU must have; _core.pyx's _ISA); they run only on CPUs with AVX2 and FMA at least, and
   on other CPUs and compilers the layers stay on im2col (the stubs at the end). The
   weight gradient is built for AVX2 only: at 16 lanes its seven unaligned loads per
   twelve FMAs split cache lines, and it was slower (_core.pyx, above _direct_gw).
   AVX-512 against AVX2 (Xeon, 2 threads, the two levels alternated in one process,
   medians of 15 calls, ms): forward 3->16 @64 batch 32 float32 0.70-0.73 -> 0.44-0.46
   (4-channel blocks: 0.52), float64 1.29 -> 0.93; the classic 100x3x31x31 5x5 stride 2
   float32 0.31 -> 0.29, float64 0.49 -> 0.39. */
#ifndef CNNLAB_DIRECT_H
#define CNNLAB_DIRECT_H

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define CNNLAB_DIRECT 1
#include <string.h>
#include <immintrin.h>

/* The instruction sets these kernels are built for, the best this CPU has: 2 AVX-512F
   (with AVX2 and FMA), 1 AVX2+FMA, 0 neither (the layers stay on im2col). */
static int cnnlab_isa(void) {
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma"))
        return 0;
    return __builtin_cpu_supports("avx512f") ? 2 : 1;
}

__attribute__((target("avx2,fma"), always_inline))
static inline float cnnlab_hsum_float(__m256 a) {
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}

__attribute__((target("avx2,fma"), always_inline))
static inline double cnnlab_hsum_double(__m256d a) {
    __m128d h = _mm_add_pd(_mm256_castpd256_pd128(a), _mm256_extractf128_pd(a, 1));
    h = _mm_add_sd(h, _mm_unpackhi_pd(h, h));
    return _mm_cvtsd_f64(h);
}

#define CNNLAB_CAT_(a, b) a##_##b
#define CNNLAB_CAT(a, b) CNNLAB_CAT_(a, b)
#define FN(name) CNNLAB_CAT(CNNLAB_CAT(name, T), CNNLAB_ISA)

/* AVX2+FMA: 256-bit registers. */
#define CNNLAB_ISA avx2
#define CNNLAB_DIRECT_GW 1
#define CNNLAB_DIRECT_NB 1
#define CNNLAB_DIRECT_ATTR __attribute__((target("avx2,fma")))
#define CNNLAB_DIRECT_INLINE __attribute__((target("avx2,fma"), always_inline))

#define T float
#define V __m256
#define L 8
#define VLOADU _mm256_loadu_ps
#define VSTOREU _mm256_storeu_ps
#define VSET1 _mm256_set1_ps
#define VBCAST _mm256_broadcast_ss
#define VFMA _mm256_fmadd_ps
#define VZERO _mm256_setzero_ps
#define VMASK_T __m256i
#define VMASKLOAD _mm256_maskload_ps
#define VMASK(n) _mm256_cmpgt_epi32(_mm256_set1_epi32((int) (n)), \
                                    _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
#define VMASKSTORE(p, m, v) _mm256_maskstore_ps(p, m, v)
#define VHSUM cnnlab_hsum_float
#define CNNLAB_DIRECT_GEMM 1
#include "_direct_impl.h"

#define T double
#define V __m256d
#define L 4
#define VLOADU _mm256_loadu_pd
#define VSTOREU _mm256_storeu_pd
#define VSET1 _mm256_set1_pd
#define VBCAST _mm256_broadcast_sd
#define VFMA _mm256_fmadd_pd
#define VZERO _mm256_setzero_pd
#define VMASK_T __m256i
#define VMASKLOAD _mm256_maskload_pd
#define VMASK(n) _mm256_cmpgt_epi64(_mm256_set1_epi64x((long long) (n)), \
                                    _mm256_setr_epi64x(0, 1, 2, 3))
#define VMASKSTORE(p, m, v) _mm256_maskstore_pd(p, m, v)
#define VHSUM cnnlab_hsum_double
#define CNNLAB_DIRECT_GEMM 0
#include "_direct_impl.h"
#undef CNNLAB_ISA
#undef CNNLAB_DIRECT_GW
#undef CNNLAB_DIRECT_NB
#undef CNNLAB_DIRECT_ATTR
#undef CNNLAB_DIRECT_INLINE

/* AVX-512F: 512-bit registers, twice the lanes; the same code. A row's last columns load
   under a mask register (maskz: lanes past it read as 0, and nothing past it is touched). */
#define CNNLAB_ISA avx512
#define CNNLAB_DIRECT_GW 0
#define CNNLAB_DIRECT_NB 2
#define CNNLAB_DIRECT_ATTR __attribute__((target("avx512f,avx2,fma")))
#define CNNLAB_DIRECT_INLINE __attribute__((target("avx512f,avx2,fma"), always_inline))

#define T float
#define V __m512
#define L 16
#define VLOADU _mm512_loadu_ps
#define VSTOREU _mm512_storeu_ps
#define VSET1 _mm512_set1_ps
#define VBCAST(p) _mm512_set1_ps(*(p))
#define VFMA _mm512_fmadd_ps
#define VZERO _mm512_setzero_ps
#define VMASK_T __mmask16
#define VMASKLOAD(p, m) _mm512_maskz_loadu_ps(m, p)
#define VMASK(n) ((__mmask16) ((1u << (n)) - 1u))
#define VMASKSTORE(p, m, v) _mm512_mask_storeu_ps(p, m, v)
#define VHSUM _mm512_reduce_add_ps
#define CNNLAB_DIRECT_GEMM 1
#include "_direct_impl.h"

#define T double
#define V __m512d
#define L 8
#define VLOADU _mm512_loadu_pd
#define VSTOREU _mm512_storeu_pd
#define VSET1 _mm512_set1_pd
#define VBCAST(p) _mm512_set1_pd(*(p))
#define VFMA _mm512_fmadd_pd
#define VZERO _mm512_setzero_pd
#define VMASK_T __mmask8
#define VMASKLOAD(p, m) _mm512_maskz_loadu_pd(m, p)
#define VMASK(n) ((__mmask8) ((1u << (n)) - 1u))
#define VMASKSTORE(p, m, v) _mm512_mask_storeu_pd(p, m, v)
#define VHSUM _mm512_reduce_add_pd
#define CNNLAB_DIRECT_GEMM 0
#include "_direct_impl.h"
#undef CNNLAB_ISA
#undef CNNLAB_DIRECT_GW
#undef CNNLAB_DIRECT_NB
#undef CNNLAB_DIRECT_ATTR
#undef CNNLAB_DIRECT_INLINE
#undef FN

/* The kernels _core.pyx calls: wide picks the AVX-512 build (the CPU has it), else AVX2.
   Their row buffers' phases (ps) hold the output row rounded up to the wider lanes. */
#define CNNLAB_DIRECT_PICK(T)                                                             \
static void cnnlab_direct_rows_##T(const T *x, long c, long h, long w, const T *wk,       \
                                   const T *bias, long k, long kh, long kw, long sh,      \
                                   long sw, long ph, long pw, long ho, long wo, T *y,     \
                                   long oh0, long oh1, T *pad, long ps, int wide)         \
{                                                                                        \
    (wide ? cnnlab_direct_rows_##T##_avx512 : cnnlab_direct_rows_##T##_avx2)(            \
        x, c, h, w, wk, bias, k, kh, kw, sh, sw, ph, pw, ho, wo, y, oh0, oh1, pad, ps);   \
}                                                                                        \
static void cnnlab_direct_gw_rows_##T(const T *x, long c, long h, long w, const T *gy,   \
                                      long k, long kh, long kw, long sh, long sw,        \
                                      long ph, long pw, long ho, long wo, long oh0,      \
                                      long oh1, T *pad, long ps, T *part)                \
{                                                                                        \
    cnnlab_direct_gw_rows_##T##_avx2(x, c, h, w, gy, k, kh, kw, sh, sw, ph, pw, ho, wo,  \
                                     oh0, oh1, pad, ps, part);                           \
}
CNNLAB_DIRECT_PICK(float)
CNNLAB_DIRECT_PICK(double)
#undef CNNLAB_DIRECT_PICK

/* Winograd's element-wise products for one xi (_direct_impl.h's cnnlab_wino_gemm_T_isa,
   float only); wide picks the AVX-512 build (the CPU has it). */
static void cnnlab_wino_gemm(const float *u, const float *v, float *m, long k, long c,
                             long nt, long ldv, long ldm, int wide)
{
    (wide ? cnnlab_wino_gemm_float_avx512 : cnnlab_wino_gemm_float_avx2)(u, v, m, k, c, nt,
                                                                         ldv, ldm);
}
#else
#define CNNLAB_DIRECT 0
static int cnnlab_isa(void) { return 0; }
static void cnnlab_wino_gemm(const float *u, const float *v, float *m, long k, long c,
                             long nt, long ldv, long ldm, int wide) {}
#define CNNLAB_STUBS(T)                                                                   \
    static void cnnlab_direct_gw_rows_##T(const T *x, long c, long h, long w, const T *gy, \
        long k, long kh, long kw, long sh, long sw, long ph, long pw, long ho, long wo,   \
        long oh0, long oh1, T *pad, long ps, T *part) {}                                  \
    static void cnnlab_direct_rows_##T(const T *x, long c, long h, long w, const T *wk,   \
        const T *bias, long k, long kh, long kw, long sh, long sw, long ph, long pw,      \
        long ho, long wo, T *y, long oh0, long oh1, T *pad, long ps, int wide) {}
CNNLAB_STUBS(float)
CNNLAB_STUBS(double)
#undef CNNLAB_STUBS
#endif
#endif
