/* Winograd's tiles in C, included by _core.pyx (_wino_patches, _wino_output): the
   copies between the tiles in their planes and the transforms' lane-major buffers, where
   lane q (of 16) is one tile and element (i, j) of its patch is d[(i*size + j)*16 + q];
   then the transforms of those buffers (below, and _wino_impl.h).

   Element by element, a copy runs down a column of that buffer (a stride of 16) while it
   runs along a row of the plane; it took 45% of a Winograd forward (16->32 @32 and
   64->64 @56, float32, 2 threads: 1.9 and 7.2 ms with the copies, 1.1 and 4.4 without).
   On x86 (SSE2, part of x86-64: no runtime check) float32 tiles go four at a time through
   a 4x4 transpose: four tiles' rows of 4 in, the buffer's 4 columns out, one load or store
   per 4 elements. double, the last tiles of a chunk (fewer than 4), and other CPUs copy
   element by element. Tiles at the plane's edges are not the caller's concern here: it
   passes, for each tile, a pointer and a row stride of a whole patch (its own zero-padded
   copy where the patch leaves the plane) and, for outputs, how many rows and columns
   land inside. */
#ifndef CNNLAB_WINO_H
#define CNNLAB_WINO_H

#if defined(_MSC_VER) && !defined(restrict)
#define restrict __restrict
#endif

#if defined(__GNUC__) && !defined(__clang__)
#define CNNLAB_WINO_IVDEP _Pragma("GCC ivdep")
#else
#define CNNLAB_WINO_IVDEP
#endif

/* The transforms (_wino_impl.h), compiled for any CPU and, with GCC or Clang on x86, for
   AVX2+FMA and for AVX-512F too: the caller passes isa, the best build this CPU runs
   (2 AVX-512F, 1 AVX2+FMA, 0 any: _core.pyx's _ISA). FMA contraction there rounds
   differently from the portable build, within the Winograd bound the tests hold all to. */
#define T float
#define ATTR
#define FN(name) cnnlab_wino_##name##_float_any
#include "_wino_impl.h"
#define T double
#define ATTR
#define FN(name) cnnlab_wino_##name##_double_any
#include "_wino_impl.h"
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define CNNLAB_WINO_AVX2 1
#define T float
#define ATTR __attribute__((target("avx2,fma")))
#define FN(name) cnnlab_wino_##name##_float_avx2
#include "_wino_impl.h"
#define T double
#define ATTR __attribute__((target("avx2,fma")))
#define FN(name) cnnlab_wino_##name##_double_avx2
#include "_wino_impl.h"
/* 512-bit registers asked for (GCC's default tuning may keep to 256; Clang has no such
   target option): 16 lanes = 16 tiles. */
#if defined(__clang__)
#define CNNLAB_WINO_512 __attribute__((target("avx512f,avx2,fma")))
#else
#define CNNLAB_WINO_512 __attribute__((target("avx512f,avx2,fma,prefer-vector-width=512")))
#endif
#define T float
#define ATTR CNNLAB_WINO_512
#define FN(name) cnnlab_wino_##name##_float_avx512
#include "_wino_impl.h"
#define T double
#define ATTR CNNLAB_WINO_512
#define FN(name) cnnlab_wino_##name##_double_avx512
#include "_wino_impl.h"
#undef CNNLAB_WINO_512
#else
#define CNNLAB_WINO_AVX2 0
#endif

#if CNNLAB_WINO_AVX2
#define CNNLAB_WINO_PICK(T, name, isa, args)                                              \
    if (isa >= 2) cnnlab_wino_##name##_##T##_avx512 args;                                 \
    else if (isa == 1) cnnlab_wino_##name##_##T##_avx2 args;                              \
    else cnnlab_wino_##name##_##T##_any args;
#else
#define CNNLAB_WINO_PICK(T, name, isa, args) cnnlab_wino_##name##_##T##_any args;
#endif

/* v[(xi*6 + xj)*ldv + q] = (B^T d B)[xi, xj] for 16 tiles' 6x6 patches d (lane-major). */
static void cnnlab_wino_in_float(const float *d, float *v, long ldv, int isa)
{
    CNNLAB_WINO_PICK(float, in, isa, (d, v, ldv))
}

static void cnnlab_wino_in_double(const double *d, double *v, long ldv, int isa)
{
    CNNLAB_WINO_PICK(double, in, isa, (d, v, ldv))
}

/* o[(i*4 + j)*16 + q] = (A^T M A)[i, j] for 16 tiles' M[xi, xj] = m[(xi*6 + xj)*ldm + q]
   (every lane must be finite or zero: lanes past the last tile are computed too). */
static void cnnlab_wino_out_float(const float *m, long ldm, float *o, int isa)
{
    CNNLAB_WINO_PICK(float, out, isa, (m, ldm, o))
}

static void cnnlab_wino_out_double(const double *m, long ldm, double *o, int isa)
{
    CNNLAB_WINO_PICK(double, out, isa, (m, ldm, o))
}
#undef CNNLAB_WINO_PICK

#if defined(__SSE2__) || defined(_M_X64)
#define CNNLAB_WINO_SSE 1
#include <emmintrin.h>
#else
#define CNNLAB_WINO_SSE 0
#endif

/* Tiles q0 .. n-1 element by element; shared by both types. */
#define CNNLAB_WINO_COPIES(T)                                                             \
static void cnnlab_wino_gather6_from_##T(const T *const *src, const long *ld, long q0,   \
                                         long n, T *d)                                   \
{                                                                                        \
    for (long q = q0; q < n; q++)                                                        \
        for (int i = 0; i < 6; i++)                                                      \
            for (int j = 0; j < 6; j++)                                                  \
                d[(i * 6 + j) * 16 + q] = src[q][i * ld[q] + j];                         \
}                                                                                        \
static void cnnlab_wino_scatter4_from_##T(const T *o, T *const *dst, long ld,            \
                                          const int *rows, const int *cols, long q0,     \
                                          long n, T b)                                   \
{                                                                                        \
    for (long q = q0; q < n; q++)                                                        \
        for (int i = 0; i < rows[q]; i++)                                                \
            for (int j = 0; j < cols[q]; j++)                                            \
                dst[q][i * ld + j] = o[(i * 4 + j) * 16 + q] + b;                        \
}
CNNLAB_WINO_COPIES(float)
CNNLAB_WINO_COPIES(double)
#undef CNNLAB_WINO_COPIES

/* d[(i*6 + j)*16 + q] = src[q][i*ld[q] + j] for i, j < 6 and tiles q < n <= 16: their 6x6
   input patches. */
static void cnnlab_wino_gather6_float(const float *const *src, const long *ld, long n,
                                      float *d)
{
    long q = 0;
#if CNNLAB_WINO_SSE
    for (; q + 4 <= n; q += 4) {
        const float *s0 = src[q], *s1 = src[q + 1], *s2 = src[q + 2], *s3 = src[q + 3];
        for (int i = 0; i < 6; i++) {
            float *o = d + i * 6 * 16 + q;
            __m128 a0 = _mm_loadu_ps(s0), a1 = _mm_loadu_ps(s1), a2 = _mm_loadu_ps(s2),
                   a3 = _mm_loadu_ps(s3);              /* columns 0-3 */
            __m128 b0 = _mm_loadu_ps(s0 + 2), b1 = _mm_loadu_ps(s1 + 2),
                   b2 = _mm_loadu_ps(s2 + 2), b3 = _mm_loadu_ps(s3 + 2);   /* 2-5 */
            _MM_TRANSPOSE4_PS(a0, a1, a2, a3);
            _MM_TRANSPOSE4_PS(b0, b1, b2, b3);
            _mm_storeu_ps(o, a0);
            _mm_storeu_ps(o + 16, a1);
            _mm_storeu_ps(o + 32, a2);
            _mm_storeu_ps(o + 48, a3);
            _mm_storeu_ps(o + 64, b2);
            _mm_storeu_ps(o + 80, b3);
            s0 += ld[q];
            s1 += ld[q + 1];
            s2 += ld[q + 2];
            s3 += ld[q + 3];
        }
    }
#endif
    cnnlab_wino_gather6_from_float(src, ld, q, n, d);
}

static void cnnlab_wino_gather6_double(const double *const *src, const long *ld, long n,
                                       double *d)
{
    cnnlab_wino_gather6_from_double(src, ld, 0, n, d);
}

/* dst[q][i*ld + j] = o[(i*4 + j)*16 + q] + b for i < rows[q], j < cols[q] and tiles
   q < n <= 16: their 4x4 outputs, clipped to the plane. */
static void cnnlab_wino_scatter4_float(const float *o, float *const *dst, long ld,
                                       const int *rows, const int *cols, long n, float b)
{
    long q = 0;
#if CNNLAB_WINO_SSE
    __m128 vb = _mm_set1_ps(b);
    for (; q + 4 <= n; q += 4) {
        int whole = 1;
        for (int t = 0; t < 4; t++)
            whole &= rows[q + t] == 4 && cols[q + t] == 4;
        if (!whole) {
            cnnlab_wino_scatter4_from_float(o, dst, ld, rows, cols, q, q + 4, b);
            continue;
        }
        for (int i = 0; i < 4; i++) {
            const float *s = o + i * 4 * 16 + q;
            __m128 a0 = _mm_loadu_ps(s), a1 = _mm_loadu_ps(s + 16),
                   a2 = _mm_loadu_ps(s + 32), a3 = _mm_loadu_ps(s + 48);
            _MM_TRANSPOSE4_PS(a0, a1, a2, a3);          /* now tile q + t's row i */
            _mm_storeu_ps(dst[q] + i * ld, _mm_add_ps(a0, vb));
            _mm_storeu_ps(dst[q + 1] + i * ld, _mm_add_ps(a1, vb));
            _mm_storeu_ps(dst[q + 2] + i * ld, _mm_add_ps(a2, vb));
            _mm_storeu_ps(dst[q + 3] + i * ld, _mm_add_ps(a3, vb));
        }
    }
#endif
    cnnlab_wino_scatter4_from_float(o, dst, ld, rows, cols, q, n, b);
}

static void cnnlab_wino_scatter4_double(const double *o, double *const *dst, long ld,
                                        const int *rows, const int *cols, long n, double b)
{
    cnnlab_wino_scatter4_from_double(o, dst, ld, rows, cols, 0, n, b);
}

#endif
