/* Max pooling's 2x2 windows at stride 2 (the course's pooling) in C, included by _core.pyx
   (_max_plane): one output row's windows whose four taps lie inside the plane, from the
   two input rows r0, r1 (r1 = r0 + w); y[q] is the window's maximum and idx[q] its flat
   index in the plane, first + 2q + the winning tap's offset (0, 1, w or w + 1), PyTorch's
   rule: the first maximum in row-major order, a NaN wins.

   The winning tap's offset is selected in a type as wide as the values (TAP: why, see
   _core.pyx's tapoff) and goes into the index through an int (SSE2 converts double ->
   int32, not double -> int64): the caller's rows are shorter than 2**31 (Pool.rel32).
   Compiled for any CPU and, with GCC or Clang on x86, for AVX2, which the caller picks
   (avx2: the CPU has it, _core.pyx's _AVX2). Against the Cython rows they replace (the
   maximum, then the indices in a second loop), alternated call by call, 100x3x32x32
   forward, 2 threads: float32 130 -> 82 us, float64 185 -> 106 us.

   The float32 backward of those windows when they tile the plane (_checks.tiles), a plane
   at a time, built the same two ways: each window writes its four cells once, its
   gradient at the tap its index names and 0 at the others, where the general backward
   zeroes the plane and adds each gradient at its index. That holds only while every index
   names a tap of its own window (as max_pool2d's do): the plane function returns 1 if one
   does not, and the caller then zeroes the plane and adds as usual. A gradient goes in as
   0 + g, the general backward's sum (-0.0 becomes 0.0 in both). The offsets are compared
   as ints, so the plane must hold fewer than 2**31 cells (the caller checks). In float64
   it was no faster than zeroing and adding (alternated process by process, 2 threads:
   100x3x32x32 1.17x the time, 16@64 0.94x), so float64 keeps those. */
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

#define CNNLAB_MAX_BACK22(ATTR, NAME)                                                      \
    ATTR static int NAME(const float *restrict g, const int64_t *restrict idx, long ho,    \
                         long wo, float *restrict plane)                                   \
    {                                                                                      \
        const long w = 2 * wo;                                                             \
        const int tw = (int)w, tw1 = (int)(w + 1);                                         \
        int bad = 0;                                                                       \
        for (long oh = 0; oh < ho; oh++) {                                                 \
            const float *restrict gr = g + oh * wo;                                        \
            const int64_t *restrict ir = idx + oh * wo;                                    \
            float *restrict r0 = plane + 2 * oh * w, *restrict r1 = r0 + w;                \
            const int64_t first = 2 * oh * w;                                              \
            for (long q = 0; q < wo; q++) {                                                \
                const int off = (int)(ir[q] - (first + 2 * q));                            \
                const float z = 0, v = z + gr[q];                                          \
                r0[2 * q] = off == 0 ? v : z;                                              \
                r0[2 * q + 1] = off == 1 ? v : z;                                          \
                r1[2 * q] = off == tw ? v : z;                                             \
                r1[2 * q + 1] = off == tw1 ? v : z;                                        \
                bad |= (off != 0) & (off != 1) & (off != tw) & (off != tw1);               \
            }                                                                              \
        }                                                                                  \
        return bad;                                                                        \
    }

CNNLAB_MAX_BACK22(, cnnlab_max_back22_any)
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
CNNLAB_MAX_BACK22(__attribute__((target("avx2"))), cnnlab_max_back22_avx2)
#endif

/* One float32 plane (2*ho, 2*wo) of the backward from its gradients g and indices idx (ho,
   wo): 0, or 1 when an index lies outside its window (the plane is then partly written). */
static int cnnlab_max_back22_float(const float *g, const int64_t *idx, long ho, long wo,
                                   float *plane, int avx2)
{
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    if (avx2)
        return cnnlab_max_back22_avx2(g, idx, ho, wo, plane);
#endif
    (void)avx2;
    return cnnlab_max_back22_any(g, idx, ho, wo, plane);
}

#endif
