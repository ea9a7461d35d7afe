/* Max pooling's 2x2 windows at stride 2 (the course's pooling) in C, included by _core.pyx
   (_max_plane): one output row's windows whose four taps lie inside the plane, from the
   two input rows r0, r1 (r1 = r0 + w); y[q] is the window's maximum and idx[q] its flat
   index in the plane, first + 2q + the winning tap's offset (0, 1, w or w + 1), PyTorch's
   rule: the first maximum in row-major order, a NaN wins.

   The winning tap's offset is selected in a type as wide as the values (TAP: why, see
   _core.pyx's tapoff) and goes into the index through an int (SSE2 converts double ->
   int32, not double -> int64): the caller's rows are shorter than 2**31 (Pool.rel32).
   Compiled for any CPU and, with GCC or Clang on x86, for AVX2, which the caller picks
   (avx2: nonzero where the CPU has it, _core.pyx's _ISA). Against the Cython rows they
   replace (the maximum, then the indices in a second loop), alternated call by call,
   100x3x32x32
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

/* Each kernel is a macro KERNEL(ATTR, SFX, T, ...) defining NAME_T##SFX; CNNLAB_BUILD
   defines it twice, _any for any CPU and, with GCC or Clang on x86, _avx2 (a function
   attribute); CNNLAB_PICK calls the build the caller picks (_core.pyx's _ISA, nonzero: AVX2). */
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define CNNLAB_BUILD(KERNEL, ...)                                                          \
    KERNEL(, _any, __VA_ARGS__)                                                            \
    KERNEL(__attribute__((target("avx2"))), _avx2, __VA_ARGS__)
#define CNNLAB_PICK(NAME, avx2, args) ((avx2) ? NAME##_avx2 args : NAME##_any args)
#else
#define CNNLAB_BUILD(KERNEL, ...) KERNEL(, _any, __VA_ARGS__)
#define CNNLAB_PICK(NAME, avx2, args) ((void)(avx2), NAME##_any args)
#endif

#define CNNLAB_MAX_ROW22(ATTR, SFX, T, TAP)                                                \
    ATTR static void cnnlab_max_row22_##T##SFX(const T *restrict r0, const T *restrict r1, \
                                               long n, long w, int64_t first,             \
                                               T *restrict y, int64_t *restrict idx)       \
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

CNNLAB_BUILD(CNNLAB_MAX_ROW22, float, int)
CNNLAB_BUILD(CNNLAB_MAX_ROW22, double, double)

static void cnnlab_max_row22_float(const float *r0, const float *r1, long n, long w,
                                   int64_t first, float *y, int64_t *idx, int avx2)
{
    CNNLAB_PICK(cnnlab_max_row22_float, avx2, (r0, r1, n, w, first, y, idx));
}

static void cnnlab_max_row22_double(const double *r0, const double *r1, long n, long w,
                                    int64_t first, double *y, int64_t *idx, int avx2)
{
    CNNLAB_PICK(cnnlab_max_row22_double, avx2, (r0, r1, n, w, first, y, idx));
}

/* A whole plane (2*ho, 2*wo) whose windows tile it, row after row, in one call: on narrow
   planes the caller's per-row work (its window's rows, the call) cost as much as a row
   (float32 forward, 5 processes each alternated, 2 threads, ms: 64@16 0.30 -> 0.19, 32@32
   0.44 -> 0.30, 16@64 0.61 -> 0.53, 100x3x32x32 0.123 -> 0.094; float64 0.73-1.00x). */
#define CNNLAB_MAX_PLANE22(ATTR, SFX, T)                                                   \
    ATTR static void cnnlab_max_plane22_##T##SFX(const T *restrict x, long ho, long wo,    \
                                                 T *restrict y, int64_t *restrict idx)     \
    {                                                                                      \
        const long w = 2 * wo;                                                             \
        for (long oh = 0; oh < ho; oh++)                                                   \
            cnnlab_max_row22_##T##SFX(x + 2 * oh * w, x + (2 * oh + 1) * w, wo, w,         \
                                      2 * oh * w, y + oh * wo, idx + oh * wo);             \
    }

CNNLAB_BUILD(CNNLAB_MAX_PLANE22, float)
CNNLAB_BUILD(CNNLAB_MAX_PLANE22, double)

static void cnnlab_max_plane22_float(const float *x, long ho, long wo, float *y,
                                     int64_t *idx, int avx2)
{
    CNNLAB_PICK(cnnlab_max_plane22_float, avx2, (x, ho, wo, y, idx));
}

static void cnnlab_max_plane22_double(const double *x, long ho, long wo, double *y,
                                      int64_t *idx, int avx2)
{
    CNNLAB_PICK(cnnlab_max_plane22_double, avx2, (x, ho, wo, y, idx));
}

#define CNNLAB_MAX_BACK22(ATTR, SFX, T)                                                    \
    ATTR static int cnnlab_max_back22_##T##SFX(const T *restrict g,                        \
                                               const int64_t *restrict idx, long ho,       \
                                               long wo, T *restrict plane)                 \
    {                                                                                      \
        const long w = 2 * wo;                                                             \
        const int tw = (int)w, tw1 = (int)(w + 1);                                         \
        int bad = 0;                                                                       \
        for (long oh = 0; oh < ho; oh++) {                                                 \
            const T *restrict gr = g + oh * wo;                                            \
            const int64_t *restrict ir = idx + oh * wo;                                    \
            T *restrict r0 = plane + 2 * oh * w, *restrict r1 = r0 + w;                    \
            const int64_t first = 2 * oh * w;                                              \
            for (long q = 0; q < wo; q++) {                                                \
                const int off = (int)(ir[q] - (first + 2 * q));                            \
                const T z = 0, v = z + gr[q];                                              \
                r0[2 * q] = off == 0 ? v : z;                                              \
                r0[2 * q + 1] = off == 1 ? v : z;                                          \
                r1[2 * q] = off == tw ? v : z;                                             \
                r1[2 * q + 1] = off == tw1 ? v : z;                                        \
                bad |= (off != 0) & (off != 1) & (off != tw) & (off != tw1);               \
            }                                                                              \
        }                                                                                  \
        return bad;                                                                        \
    }

CNNLAB_BUILD(CNNLAB_MAX_BACK22, float)

/* One float32 plane (2*ho, 2*wo) of the backward from its gradients g and indices idx (ho,
   wo): 0, or 1 when an index lies outside its window (the plane is then partly written). */
static int cnnlab_max_back22_float(const float *g, const int64_t *idx, long ho, long wo,
                                   float *plane, int avx2)
{
    return CNNLAB_PICK(cnnlab_max_back22_float, avx2, (g, idx, ho, wo, plane));
}

/* Average pooling's 2x2 windows at stride 2 when they tile the plane (_checks.tiles), a
   plane at a time, built the same two ways. Forward: x (2*ho, 2*wo) -> y (ho, wo), each
   window's sum in row-major order over div, as the Cython rows sum. Backward: each cell of
   gx (2*ho, 2*wo) written once, its window's gradient over div, + 0 (the sums into zeros
   elsewhere give +0.0 for a -0.0 gradient; so does torch). The Cython loops they replace
   paid per output row (its window and divisor, a vector loop's set-up) as much as for the
   row itself on narrow planes: 32x64x16x16 forward at a third of the bytes per second of
   32x16x64x64. Against them, 5 processes each alternated, 2 threads, medians in ms,
   float32 forward / backward: 16@64 0.36 -> 0.31 / 0.35 -> 0.13, 32@32 0.26 -> 0.12 /
   0.28 -> 0.09, 64@16 0.24 -> 0.07 / 0.20 -> 0.10, 100x3x32x32 0.075 -> 0.043 / 0.073 ->
   0.035; float64 0.25-0.87x the time. */
#define CNNLAB_AVG_PLANE22(ATTR, SFX, T)                                                   \
    ATTR static void cnnlab_avg_plane22_##T##SFX(const T *restrict x, long ho, long wo,    \
                                                 T div, T *restrict y)                     \
    {                                                                                      \
        const long w = 2 * wo;                                                             \
        for (long oh = 0; oh < ho; oh++) {                                                 \
            const T *restrict r0 = x + 2 * oh * w, *restrict r1 = r0 + w;                  \
            T *restrict yr = y + oh * wo;                                                  \
            for (long q = 0; q < wo; q++)                                                  \
                yr[q] = (((r0[2 * q] + r0[2 * q + 1]) + r1[2 * q]) + r1[2 * q + 1]) / div; \
        }                                                                                  \
    }

#define CNNLAB_AVG_BACK22(ATTR, SFX, T)                                                    \
    ATTR static void cnnlab_avg_back22_##T##SFX(const T *restrict g, long ho, long wo,     \
                                                T div, T *restrict gx)                     \
    {                                                                                      \
        const long w = 2 * wo;                                                             \
        const T z = 0;                                                                     \
        for (long oh = 0; oh < ho; oh++) {                                                 \
            const T *restrict gr = g + oh * wo;                                            \
            T *restrict r0 = gx + 2 * oh * w, *restrict r1 = r0 + w;                       \
            for (long q = 0; q < wo; q++) {                                                \
                const T v = gr[q] / div + z;                                               \
                r0[2 * q] = v;                                                             \
                r0[2 * q + 1] = v;                                                         \
                r1[2 * q] = v;                                                             \
                r1[2 * q + 1] = v;                                                         \
            }                                                                              \
        }                                                                                  \
    }

#define CNNLAB_AVG22(T)                                                                    \
    CNNLAB_BUILD(CNNLAB_AVG_PLANE22, T)                                                    \
    CNNLAB_BUILD(CNNLAB_AVG_BACK22, T)                                                     \
    static void cnnlab_avg_plane22_##T(const T *x, long ho, long wo, T div, T *y, int a)  \
    {                                                                                      \
        CNNLAB_PICK(cnnlab_avg_plane22_##T, a, (x, ho, wo, div, y));                       \
    }                                                                                      \
    static void cnnlab_avg_back22_##T(const T *g, long ho, long wo, T div, T *gx, int a)  \
    {                                                                                      \
        CNNLAB_PICK(cnnlab_avg_back22_##T, a, (g, ho, wo, div, gx));                       \
    }

CNNLAB_AVG22(float)
CNNLAB_AVG22(double)

#endif
