/* Max pooling's 2x2 windows at stride 2 (the course's pooling) in C, included by _core.pyx
   (_max_plane): one output row's windows whose four taps lie inside the plane, from the
   two input rows r0, r1 (r1 = r0 + w); y[q] is the window's maximum and idx[q] its flat
   index in the plane, first + 2q + the winning tap's offset (0, 1, w or w + 1), PyTorch's
   rule: the first maximum in row-major order, a NaN wins.

   The winning tap's offset is selected in a type as wide as the values (an int for float,
   a double for double: GCC vectorises neither double -> int nor double -> int64 selects
   for SSE2) and goes into the index through an int (SSE2 converts double -> int32, not
   double -> int64): the caller's rows are shorter than 2**31 (Pool.rel32). Compiled for
   any CPU and, with GCC or Clang on x86, for AVX2, which the caller picks (avx2: the CPU
   has it, _core.pyx's _AVX2). Against the Cython rows they replace (the maximum, then the
   indices in a second loop), alternated call by call, 100x3x32x32 forward, 2 threads:
   float32 130 -> 82 us, float64 185 -> 106 us. */
#ifndef CNNLAB_POOL_H
#define CNNLAB_POOL_H

#include <stdint.h>

#if defined(_MSC_VER) && !defined(restrict)
#define restrict __restrict
#endif

#define CNNLAB_MAX_ROW22(ATTR, NAME, T, TAP)                                                \
    ATTR static void NAME(const T *restrict r0, const T *restrict r1, long n, long w,     \
                          int64_t first, T *restrict y, int64_t *restrict idx)             \
    {                                                                                      \
        const TAP one = 1, tw = (TAP)w, tw1 = (TAP)(w + 1);                               \
        for (long q = 0; q < n; q++) {                                                     \
            T m = r0[2 * q], v = r0[2 * q + 1];                                            \
            TAP t = 0;                                                                     \
            int take = (v > m) | (v != v);                                                 \
            m = take ? v : m;                                                              \
            t = take ? one : t;                                                            \
            v = r1[2 * q];                                                                 \
            take = (v > m) | (v != v);                                                     \
            m = take ? v : m;                                                              \
            t = take ? tw : t;                                                             \
            v = r1[2 * q + 1];                                                             \
            take = (v > m) | (v != v);                                                     \
            m = take ? v : m;                                                              \
            t = take ? tw1 : t;                                                            \
            y[q] = m;                                                                      \
            idx[q] = first + 2 * q + (int)t;                                               \
        }                                                                                  \
    }

CNNLAB_MAX_ROW22(, cnnlab_max_row22_float_any, float, int)
CNNLAB_MAX_ROW22(, cnnlab_max_row22_double_any, double, double)

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
CNNLAB_MAX_ROW22(__attribute__((target("avx2"))), cnnlab_max_row22_float_avx2, float, int)
CNNLAB_MAX_ROW22(__attribute__((target("avx2"))), cnnlab_max_row22_double_avx2, double,
                 double)
#define CNNLAB_POOL_PICK(T, avx2, args)                                                   \
    if (avx2) cnnlab_max_row22_##T##_avx2 args;                                           \
    else cnnlab_max_row22_##T##_any args;
#else
#define CNNLAB_POOL_PICK(T, avx2, args) cnnlab_max_row22_##T##_any args;
#endif

static void cnnlab_max_row22_float(const float *r0, const float *r1, long n, long w,
                                   int64_t first, float *y, int64_t *idx, int avx2)
{
    CNNLAB_POOL_PICK(float, avx2, (r0, r1, n, w, first, y, idx))
}

static void cnnlab_max_row22_double(const double *r0, const double *r1, long n, long w,
                                    int64_t first, double *y, int64_t *idx, int avx2)
{
    CNNLAB_POOL_PICK(double, avx2, (r0, r1, n, w, first, y, idx))
}

#endif
