/* The compiled twin's hand-vectorised kernels (AVX2+FMA), included by _core.pyx.

   A direct convolution for layers with few input channels (the first layer of a network:
   RGB or grey input; and the input gradient of such a layer, which is the forward
   convolution of grad_output with the flipped kernel into those few channels), float32 and
   float64, any stride, no dilation, one group. im2col there gives GEMMs with K = C_in*kH*kW
   = 27 rows, which BLAS spends packing rather than multiplying. A work item (an image's
   block of output rows) first copies the input rows it reads, zero-padded on every side,
   into a thread-private buffer, once (so every load is in bounds and no row is copied per
   output row); at column stride s a row is stored as s phases (columns f, f + s, ...), so
   a tap's inputs for L adjacent outputs are L adjacent elements of one phase (L, the
   lanes of an AVX register: 8 floats, 4 doubles). Each output row is then computed in
   blocks of 4 output channels x 3L output columns (x 2L or L at the right edge): twelve
   accumulators, three input loads and four broadcast weights per tap, one FMA per weight
   and L pixels; weights are laid out (C_out/4, C_in, kH, kW, 4) so a tap's four are
   adjacent. The weight gradient reuses the padded rows: per input channel, kernel row and
   3 taps, 4 output channels' grad_output rows times the 3 shifted input rows, summed over
   a work item's rows in twelve accumulators (masked loads for a row's last columns), then
   added into the thread's partial sum (added in thread order).

   The kernels are written once, in _direct_impl.h, and included here for float and for
   double (names ending _float, _double). They are compiled for AVX2+FMA (a function
   attribute) and used only when the CPU has them; on other CPUs and compilers the layers
   stay on im2col (the stubs at the end). */
#ifndef CNNLAB_DIRECT_H
#define CNNLAB_DIRECT_H

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define CNNLAB_DIRECT 1
#include <string.h>
#include <immintrin.h>

static int cnnlab_direct_available(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
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
#define FN(name) CNNLAB_CAT(name, T)

#define T float
#define V __m256
#define L 8
#define VLOADU _mm256_loadu_ps
#define VSTOREU _mm256_storeu_ps
#define VSET1 _mm256_set1_ps
#define VBCAST _mm256_broadcast_ss
#define VFMA _mm256_fmadd_ps
#define VZERO _mm256_setzero_ps
#define VMASKLOAD _mm256_maskload_ps
#define VMASK(n) _mm256_cmpgt_epi32(_mm256_set1_epi32((int) (n)), \
                                    _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
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
#define VMASKLOAD _mm256_maskload_pd
#define VMASK(n) _mm256_cmpgt_epi64(_mm256_set1_epi64x((long long) (n)), \
                                    _mm256_setr_epi64x(0, 1, 2, 3))
#include "_direct_impl.h"
#undef FN

/* Winograd's element-wise products for one xi: m (k x nt, row stride ldm) = u (k x c,
   rows of c) times v (c x nt, row stride ldv), nt rounded up to 8 (v's columns up to
   there must be readable and finite; m's get written). Blocks of 4 rows x 24 columns
   (x 16 or 8 at the right edge): the direct kernel's twelve accumulators, three loads
   of v and four broadcasts of u per c. A last block of fewer than 4 rows repeats its
   last row and stores only its own. No packing: u (k x c) and a block's c x 24 of v
   stay in L1 for thin GEMMs (c of a few dozen), where BLAS spends as long packing as
   multiplying. */
__attribute__((target("avx2,fma"), always_inline))
static inline void cnnlab_wino_block(const float *a0, const float *a1, const float *a2,
                                     const float *a3, const float *b, long ldv, long c,
                                     float *m, long ldm, long nk, const int nv)
{
    __m256 z = _mm256_setzero_ps();
    __m256 a00 = z, a10 = z, a20 = z, a30 = z, a01 = z, a11 = z, a21 = z, a31 = z,
           a02 = z, a12 = z, a22 = z, a32 = z;
    for (long i = 0; i < c; i++, b += ldv) {
        __m256 x0 = _mm256_loadu_ps(b), x1, x2, s;
        if (nv > 1) x1 = _mm256_loadu_ps(b + 8);
        if (nv > 2) x2 = _mm256_loadu_ps(b + 16);
        #define CNNLAB_ROW(t)                                                     \
            s = _mm256_broadcast_ss(a##t + i);                                    \
            a##t##0 = _mm256_fmadd_ps(s, x0, a##t##0);                            \
            if (nv > 1) a##t##1 = _mm256_fmadd_ps(s, x1, a##t##1);                \
            if (nv > 2) a##t##2 = _mm256_fmadd_ps(s, x2, a##t##2);
        CNNLAB_ROW(0) CNNLAB_ROW(1) CNNLAB_ROW(2) CNNLAB_ROW(3)
        #undef CNNLAB_ROW
    }
    if (nk == 4) {                          /* straight from registers */
        #define CNNLAB_STORE(t)                                                   \
            _mm256_storeu_ps(m + t * ldm, a##t##0);                               \
            if (nv > 1) _mm256_storeu_ps(m + t * ldm + 8, a##t##1);               \
            if (nv > 2) _mm256_storeu_ps(m + t * ldm + 16, a##t##2);
        CNNLAB_STORE(0) CNNLAB_STORE(1) CNNLAB_STORE(2) CNNLAB_STORE(3)
        #undef CNNLAB_STORE
        return;
    }
    __m256 acc[4][3] = {{a00, a01, a02}, {a10, a11, a12}, {a20, a21, a22},
                        {a30, a31, a32}};
    for (long t = 0; t < nk; t++)
        for (int v = 0; v < nv; v++)
            _mm256_storeu_ps(m + t * ldm + 8 * v, acc[t][v]);
}

__attribute__((target("avx2,fma")))
static void cnnlab_wino_gemm(const float *u, const float *v, float *m, long k, long c,
                             long nt, long ldv, long ldm)
{
    long n8 = (nt + 7) / 8 * 8, t0 = 0;
    for (; t0 < n8; t0 += 24) {
        int nv = n8 - t0 >= 24 ? 3 : (int) ((n8 - t0) / 8);
        for (long k0 = 0; k0 < k; k0 += 4) {
            long nk = k - k0 < 4 ? k - k0 : 4;
            const float *a0 = u + k0 * c;
            const float *a1 = u + (k0 + (nk > 1 ? 1 : 0)) * c;
            const float *a2 = u + (k0 + (nk > 2 ? 2 : nk - 1)) * c;
            const float *a3 = u + (k0 + (nk > 3 ? 3 : nk - 1)) * c;
            float *mo = m + k0 * ldm + t0;
            if (nv == 3)
                cnnlab_wino_block(a0, a1, a2, a3, v + t0, ldv, c, mo, ldm, nk, 3);
            else if (nv == 2)
                cnnlab_wino_block(a0, a1, a2, a3, v + t0, ldv, c, mo, ldm, nk, 2);
            else
                cnnlab_wino_block(a0, a1, a2, a3, v + t0, ldv, c, mo, ldm, nk, 1);
        }
    }
}
#else
#define CNNLAB_DIRECT 0
static int cnnlab_direct_available(void) { return 0; }
static void cnnlab_wino_gemm(const float *u, const float *v, float *m, long k, long c,
                             long nt, long ldv, long ldm) {}
#define CNNLAB_STUBS(T)                                                                   \
    static void cnnlab_direct_gw_rows_##T(const T *x, long c, long h, long w, const T *gy, \
        long k, long kh, long kw, long sh, long sw, long ph, long pw, long ho, long wo,   \
        long oh0, long oh1, T *pad, long ps, T *part) {}                                  \
    static void cnnlab_direct_rows_##T(const T *x, long c, long h, long w, const T *wk,   \
        const T *bias, long k, long kh, long kw, long sh, long sw, long ph, long pw,      \
        long ho, long wo, T *y, long oh0, long oh1, T *pad, long ps) {}
CNNLAB_STUBS(float)
CNNLAB_STUBS(double)
#undef CNNLAB_STUBS
#endif
#endif
