/* The direct kernels for one element type and instruction set; included by _direct.h once
   per pair, with T (float, double), V (its vector register), L (its lanes: 8, 4 on AVX2;
   16, 8 on AVX-512), FN(name) (name_T_isa), CNNLAB_DIRECT_ATTR and CNNLAB_DIRECT_INLINE
   (the target attributes) and the V* intrinsics defined; the end of this file undefines T,
   V, L and the V* names. How the kernels work: see _direct.h. */

/* One block: output channels [0, nk) (nk <= 4 nb) of y0 (channel stride ys), columns
   [ow, ow + L nv) of one output row (those < wo are stored), nv in 1..3 and nb in 1..2
   constants after inlining (the unused accumulators vanish). rows: the row's first padded
   input row of channel 0 (channel stride cs, row stride rs), stored as sw phases of ps
   elements (phase f holds padded columns f, f + sw, ...: tap j of output column q is phase
   j % sw, index q + j / sw); wp: the first 4 channels' weights (c, kh, kw, 4), the next
   4's (nb = 2) wg further on. nb = 2 (AVX-512's 32 registers hold its 24 accumulators)
   loads each input vector once for 8 channels. */
CNNLAB_DIRECT_INLINE
static inline void FN(cnnlab_direct_block)(const T *rows, long cs, long rs, long ps, long sw,
                                           long c, long kh, long kw, const T *wp, long wg,
                                           const T *bias, long ow, long wo, T *y0, long ys,
                                           long nk, const int nv, const int nb)
{
    V b0 = VSET1(bias[0]), b1 = VSET1(bias[1]), b2 = VSET1(bias[2]), b3 = VSET1(bias[3]);
    V b4 = b0, b5 = b0, b6 = b0, b7 = b0;
    if (nb > 1) {
        b4 = VSET1(bias[4]); b5 = VSET1(bias[5]); b6 = VSET1(bias[6]); b7 = VSET1(bias[7]);
    }
    V a00 = b0, a10 = b1, a20 = b2, a30 = b3, a01 = b0, a11 = b1, a21 = b2, a31 = b3,
      a02 = b0, a12 = b1, a22 = b2, a32 = b3;
    V a40 = b4, a50 = b5, a60 = b6, a70 = b7, a41 = b4, a51 = b5, a61 = b6, a71 = b7,
      a42 = b4, a52 = b5, a62 = b6, a72 = b7;
    for (long ci = 0; ci < c; ci++)
        for (long i = 0; i < kh; i++) {
            const T *row = rows + ci * cs + i * rs + ow, *xj = row;
            const T *wr = wp + (ci * kh + i) * kw * 4;
            for (long j = 0, f = 0; j < kw; j++, wr += 4) {
                V x0 = VLOADU(xj), x1, x2, s;
                if (nv > 1) x1 = VLOADU(xj + L);
                if (nv > 2) x2 = VLOADU(xj + 2 * L);
                if (++f < sw) xj += ps;                   /* the next phase */
                else { f = 0; row += 1; xj = row; }       /* phase 0, one further */
                #define CNNLAB_TAP(t, w)                                              \
                    s = VBCAST(w);                                                    \
                    a##t##0 = VFMA(s, x0, a##t##0);                                   \
                    if (nv > 1) a##t##1 = VFMA(s, x1, a##t##1);                       \
                    if (nv > 2) a##t##2 = VFMA(s, x2, a##t##2);
                CNNLAB_TAP(0, wr) CNNLAB_TAP(1, wr + 1) CNNLAB_TAP(2, wr + 2)
                CNNLAB_TAP(3, wr + 3)
                if (nb > 1) {
                    CNNLAB_TAP(4, wr + wg) CNNLAB_TAP(5, wr + wg + 1)
                    CNNLAB_TAP(6, wr + wg + 2) CNNLAB_TAP(7, wr + wg + 3)
                }
                #undef CNNLAB_TAP
            }
        }
    if (nk == 4 * nb && ow + L * nv <= wo) {  /* a whole block: straight from registers */
        #define CNNLAB_STORE(t)                                                       \
            VSTOREU(y0 + t * ys + ow, a##t##0);                                       \
            if (nv > 1) VSTOREU(y0 + t * ys + ow + L, a##t##1);                       \
            if (nv > 2) VSTOREU(y0 + t * ys + ow + 2 * L, a##t##2);
        CNNLAB_STORE(0) CNNLAB_STORE(1) CNNLAB_STORE(2) CNNLAB_STORE(3)
        if (nb > 1) {
            CNNLAB_STORE(4) CNNLAB_STORE(5) CNNLAB_STORE(6) CNNLAB_STORE(7)
        }
        #undef CNNLAB_STORE
        return;
    }
    V acc[8][3] = {{a00, a01, a02}, {a10, a11, a12}, {a20, a21, a22}, {a30, a31, a32},
                   {a40, a41, a42}, {a50, a51, a52}, {a60, a61, a62}, {a70, a71, a72}};
    for (long t = 0; t < nk; t++) {
        T *out = y0 + t * ys + ow, tmp[3 * L];
        int full = ow + L * nv <= wo;
        T *dst = full ? out : tmp;
        for (int v = 0; v < nv; v++)
            VSTOREU(dst + L * v, acc[t][v]);
        if (!full)
            for (long q = 0; q < wo - ow; q++) out[q] = tmp[q];
    }
}

/* One output row's blocks of channels [ko, ko + 4 nb) (see cnnlab_direct_block). */
CNNLAB_DIRECT_INLINE
static inline void FN(cnnlab_direct_row)(const T *rows, long cs, long rs, long ps, long sw,
                                         long c, long kh, long kw, const T *wp,
                                         const T *bias, long wo, long wv, T *y0, long ys,
                                         long nk, const int nb)
{
    long ow = 0, wg = c * kh * kw * 4;
    for (; ow + 3 * L <= wv; ow += 3 * L)
        FN(cnnlab_direct_block)(rows, cs, rs, ps, sw, c, kh, kw, wp, wg, bias, ow, wo, y0,
                                ys, nk, 3, nb);
    if (wv - ow == 2 * L)
        FN(cnnlab_direct_block)(rows, cs, rs, ps, sw, c, kh, kw, wp, wg, bias, ow, wo, y0,
                                ys, nk, 2, nb);
    else if (wv - ow == L)
        FN(cnnlab_direct_block)(rows, cs, rs, ps, sw, c, kh, kw, wp, wg, bias, ow, wo, y0,
                                ys, nk, 1, nb);
}

/* The prow padded rows that output rows oh0, ... read, per channel of x (c, h, w): pad
   holds c * prow rows of sw phases of ps elements (see cnnlab_direct_rows). */
static void FN(cnnlab_direct_pad)(const T *x, long c, long h, long w, long sh, long sw,
                                  long ph, long pw, long oh0, long prow, T *pad, long ps)
{
    long rs = sw * ps;
    for (long ci = 0; ci < c; ci++)
        for (long pr = 0; pr < prow; pr++) {
            T *dst = pad + (ci * prow + pr) * rs;
            long r = oh0 * sh - ph + pr;
            const T *src = x + (ci * h + (r < 0 || r >= h ? 0 : r)) * w;
            if (r < 0 || r >= h) {
                memset(dst, 0, rs * sizeof(T));
            } else if (sw == 1) {          /* pw + w <= wo + kw - 1 <= rs */
                memset(dst, 0, pw * sizeof(T));
                memcpy(dst + pw, src, w * sizeof(T));
                memset(dst + pw + w, 0, (rs - pw - w) * sizeof(T));
            } else {
                for (long f = 0; f < sw; f++)
                    for (long q = 0; q < ps; q++) {
                        long col = q * sw + f - pw;
                        dst[f * ps + q] = col >= 0 && col < w ? src[col] : (T) 0;
                    }
            }
        }
}

/* Output rows [oh0, oh1) of one image: y (k, ho, wo) from x (c, h, w), strides sh, sw,
   weights wk (k4/4, c, kh, kw, 4), k4 = k rounded up to 4 (zeros past k), and bias (k4,).
   pad holds c * ((oh1 - oh0 - 1) sh + kh) padded rows of sw phases of ps = wv + (kw - 1)
   / sw elements each, wv = wo rounded up to L. Inlined into cnnlab_direct_rows twice: for
   3x3 windows at stride 1 with kh, kw, sw constants (the tap loop unrolled, no phase
   test), and for any other window. Measured against the general body alone (2 threads,
   alternated call by call, median time ratio): 3->16 @64 batch 32 forward 0.77-0.94
   float32, 0.92 float64; its weight gradient 0.98-0.99. */
CNNLAB_DIRECT_INLINE
static inline void FN(cnnlab_direct_rows_of)(const T *x, long c, long h, long w,
                                             const T *wk, const T *bias, long k, long kh,
                                             long kw, long sh, long sw, long ph, long pw,
                                             long ho, long wo, T *y, long oh0, long oh1,
                                             T *pad, long ps)
{
    long wv = (wo + L - 1) / L * L, rs = sw * ps, prow = (oh1 - oh0 - 1) * sh + kh;
    long taps = kh * kw;
    FN(cnnlab_direct_pad)(x, c, h, w, sh, sw, ph, pw, oh0, prow, pad, ps);
    for (long oh = oh0; oh < oh1; oh++) {
        const T *rows = pad + (oh - oh0) * sh * rs;
        long ko = 0;
        if (CNNLAB_DIRECT_NB > 1)            /* 8 channels a block while 8 remain */
            for (; ko + 8 <= k; ko += 8)
                FN(cnnlab_direct_row)(rows, prow * rs, rs, ps, sw, c, kh, kw,
                                      wk + ko * c * taps, bias + ko, wo, wv,
                                      y + (ko * ho + oh) * wo, ho * wo, 8, 2);
        for (; ko < k; ko += 4)
            FN(cnnlab_direct_row)(rows, prow * rs, rs, ps, sw, c, kh, kw, wk + ko * c * taps,
                                  bias + ko, wo, wv, y + (ko * ho + oh) * wo, ho * wo,
                                  k - ko < 4 ? k - ko : 4, 1);
    }
}

CNNLAB_DIRECT_ATTR
static void FN(cnnlab_direct_rows)(const T *x, long c, long h, long w, const T *wk,
                                   const T *bias, long k, long kh, long kw, long sh, long sw,
                                   long ph, long pw, long ho, long wo, T *y, long oh0,
                                   long oh1, T *pad, long ps)
{
    if (kh == 3 && kw == 3 && sw == 1)
        FN(cnnlab_direct_rows_of)(x, c, h, w, wk, bias, k, 3, 3, sh, 1, ph, pw, ho, wo, y,
                                  oh0, oh1, pad, ps);
    else
        FN(cnnlab_direct_rows_of)(x, c, h, w, wk, bias, k, kh, kw, sh, sw, ph, pw, ho, wo,
                                  y, oh0, oh1, pad, ps);
}

#if CNNLAB_DIRECT_GW
/* The weight gradient of the same layers, one block: output channels k0 + t (t < nk <= 4;
   g0 is channel k0's first row, channel stride gs) and taps j0 + jj (jj < nj <= 3) of
   kernel row i of one input channel (rows: its padded row for the first output row; rstep
   to the next output row's), summed over nrows output rows of wo columns:
   out[t][jj] = sum gy[k0 + t, oh, ow] * xpad[oh*sh + i, ow*sw + j0 + jj]. Twelve
   accumulators, L columns at a time (the last few under a mask, x too, so that nothing
   past the row enters a sum), then one horizontal sum each. */
CNNLAB_DIRECT_INLINE
static inline void FN(cnnlab_direct_gw_block)(const T *rows, long rstep, long ps, long sw,
                                              long j0, const T *g0, long gs, long nk,
                                              long nrows, long wo, T out[4][3], const int nj)
{
    V z = VZERO();
    V a00 = z, a10 = z, a20 = z, a30 = z, a01 = z, a11 = z, a21 = z, a31 = z, a02 = z,
      a12 = z, a22 = z, a32 = z;
    const T *xo[3];                           /* tap j's phase and offset in a row */
    for (int jj = 0; jj < nj; jj++)
        xo[jj] = rows + ((j0 + jj) % sw) * ps + (j0 + jj) / sw;
    long g1 = nk > 1 ? gs : 0, g2 = nk > 2 ? 2 * gs : g1, g3 = nk > 3 ? 3 * gs : g2;
    long tail = wo % L;
    VMASK_T mask = VMASK(tail);
    for (long r = 0; r < nrows; r++) {
        const T *gr = g0 + r * wo;
        long xr = r * rstep, ow = 0;
        #define CNNLAB_GW(LOADG, LOADX)                                               \
            {                                                                         \
                V y0 = LOADG(gr + ow), y1 = LOADG(gr + g1 + ow), y2 = LOADG(gr + g2 + ow), \
                  y3 = LOADG(gr + g3 + ow), x;                                        \
                x = LOADX(xo[0] + xr + ow);                                           \
                a00 = VFMA(y0, x, a00); a10 = VFMA(y1, x, a10);                       \
                a20 = VFMA(y2, x, a20); a30 = VFMA(y3, x, a30);                       \
                if (nj > 1) {                                                         \
                    x = LOADX(xo[1] + xr + ow);                                       \
                    a01 = VFMA(y0, x, a01); a11 = VFMA(y1, x, a11);                   \
                    a21 = VFMA(y2, x, a21); a31 = VFMA(y3, x, a31);                   \
                }                                                                     \
                if (nj > 2) {                                                         \
                    x = LOADX(xo[2] + xr + ow);                                       \
                    a02 = VFMA(y0, x, a02); a12 = VFMA(y1, x, a12);                   \
                    a22 = VFMA(y2, x, a22); a32 = VFMA(y3, x, a32);                   \
                }                                                                     \
            }
        #define CNNLAB_MASKED(p) VMASKLOAD(p, mask)
        for (; ow + L <= wo; ow += L)
            CNNLAB_GW(VLOADU, VLOADU)
        if (tail)
            CNNLAB_GW(CNNLAB_MASKED, CNNLAB_MASKED)
        #undef CNNLAB_GW
        #undef CNNLAB_MASKED
    }
    V acc[4][3] = {{a00, a01, a02}, {a10, a11, a12}, {a20, a21, a22}, {a30, a31, a32}};
    for (int t = 0; t < 4; t++)
        for (int jj = 0; jj < nj; jj++)
            out[t][jj] = VHSUM(acc[t][jj]);
}

/* Output rows [oh0, oh1) of one image's weight gradient, added into part (k, c, kh, kw):
   x (c, h, w), gy (k, ho, wo); pad as in cnnlab_direct_rows, which also shows why the body
   is inlined twice. */
CNNLAB_DIRECT_INLINE
static inline void FN(cnnlab_direct_gw_rows_of)(const T *x, long c, long h, long w,
                                                const T *gy, long k, long kh, long kw,
                                                long sh, long sw, long ph, long pw, long ho,
                                                long wo, long oh0, long oh1, T *pad, long ps,
                                                T *part)
{
    long rs = sw * ps, prow = (oh1 - oh0 - 1) * sh + kh;
    T out[4][3];
    FN(cnnlab_direct_pad)(x, c, h, w, sh, sw, ph, pw, oh0, prow, pad, ps);
    for (long ci = 0; ci < c; ci++)
        for (long i = 0; i < kh; i++)
            for (long j0 = 0; j0 < kw; j0 += 3) {
                const T *rows = pad + (ci * prow + i) * rs;
                long nj = kw - j0 < 3 ? kw - j0 : 3;
                for (long k0 = 0; k0 < k; k0 += 4) {
                    const T *g0 = gy + (k0 * ho + oh0) * wo;
                    long nk = k - k0 < 4 ? k - k0 : 4;
                    if (nj == 3)
                        FN(cnnlab_direct_gw_block)(rows, sh * rs, ps, sw, j0, g0, ho * wo,
                                                   nk, oh1 - oh0, wo, out, 3);
                    else if (nj == 2)
                        FN(cnnlab_direct_gw_block)(rows, sh * rs, ps, sw, j0, g0, ho * wo,
                                                   nk, oh1 - oh0, wo, out, 2);
                    else
                        FN(cnnlab_direct_gw_block)(rows, sh * rs, ps, sw, j0, g0, ho * wo,
                                                   nk, oh1 - oh0, wo, out, 1);
                    for (long t = 0; t < nk; t++)
                        for (long jj = 0; jj < nj; jj++)
                            part[(((k0 + t) * c + ci) * kh + i) * kw + j0 + jj] +=
                                out[t][jj];
                }
            }
}

CNNLAB_DIRECT_ATTR
static void FN(cnnlab_direct_gw_rows)(const T *x, long c, long h, long w, const T *gy, long k,
                                      long kh, long kw, long sh, long sw, long ph, long pw,
                                      long ho, long wo, long oh0, long oh1, T *pad, long ps,
                                      T *part)
{
    if (kh == 3 && kw == 3 && sw == 1)
        FN(cnnlab_direct_gw_rows_of)(x, c, h, w, gy, k, 3, 3, sh, 1, ph, pw, ho, wo, oh0,
                                     oh1, pad, ps, part);
    else
        FN(cnnlab_direct_gw_rows_of)(x, c, h, w, gy, k, kh, kw, sh, sw, ph, pw, ho, wo, oh0,
                                     oh1, pad, ps, part);
}

#endif

#if CNNLAB_DIRECT_GEMM
/* Winograd's element-wise products for one xi: m (k x nt, row stride ldm) = u (k x c,
   rows of c) times v (c x nt, row stride ldv), nt rounded up to 8 (v's columns up to
   there must be readable and finite; m's get written). Blocks of 4 rows x 3L columns
   (x 2L or L at the right edge; at 16 lanes the last register of the last block may hold
   8 columns, loaded and stored under a mask): the direct kernel's twelve accumulators,
   three loads of v and four broadcasts of u per c. A last block of fewer than 4 rows
   repeats its last row and stores only its own. No packing: u (k x c) and a block's c x
   3L of v stay in L1 for thin GEMMs (c of a few dozen), where BLAS spends as long packing
   as multiplying. */
CNNLAB_DIRECT_INLINE
static inline void FN(cnnlab_wino_block)(const T *a0, const T *a1, const T *a2,
                                         const T *a3, const T *b, long ldv, long c, T *m,
                                         long ldm, long nk, const int nv, const int masked,
                                         VMASK_T last)
{
    V z = VZERO();
    V a00 = z, a10 = z, a20 = z, a30 = z, a01 = z, a11 = z, a21 = z, a31 = z,
      a02 = z, a12 = z, a22 = z, a32 = z;
    #define CNNLAB_LOAD(v, p) (masked && nv == v + 1 ? VMASKLOAD(p, last) : VLOADU(p))
    for (long i = 0; i < c; i++, b += ldv) {
        V x0 = CNNLAB_LOAD(0, b), x1, x2, s;
        if (nv > 1) x1 = CNNLAB_LOAD(1, b + L);
        if (nv > 2) x2 = CNNLAB_LOAD(2, b + 2 * L);
        #define CNNLAB_ROW(t)                                                     \
            s = VBCAST(a##t + i);                                                 \
            a##t##0 = VFMA(s, x0, a##t##0);                                       \
            if (nv > 1) a##t##1 = VFMA(s, x1, a##t##1);                           \
            if (nv > 2) a##t##2 = VFMA(s, x2, a##t##2);
        CNNLAB_ROW(0) CNNLAB_ROW(1) CNNLAB_ROW(2) CNNLAB_ROW(3)
        #undef CNNLAB_ROW
    }
    #undef CNNLAB_LOAD
    #define CNNLAB_PUT(v, p, a)                                                   \
        if (masked && nv == v + 1) VMASKSTORE(p, last, a); else VSTOREU(p, a);
    if (nk == 4) {                          /* straight from registers */
        #define CNNLAB_STORE(t)                                                   \
            CNNLAB_PUT(0, m + t * ldm, a##t##0)                                   \
            if (nv > 1) { CNNLAB_PUT(1, m + t * ldm + L, a##t##1) }               \
            if (nv > 2) { CNNLAB_PUT(2, m + t * ldm + 2 * L, a##t##2) }
        CNNLAB_STORE(0) CNNLAB_STORE(1) CNNLAB_STORE(2) CNNLAB_STORE(3)
        #undef CNNLAB_STORE
        return;
    }
    V acc[4][3] = {{a00, a01, a02}, {a10, a11, a12}, {a20, a21, a22}, {a30, a31, a32}};
    for (long t = 0; t < nk; t++)
        for (int v = 0; v < nv; v++) {
            CNNLAB_PUT(v, m + t * ldm + L * v, acc[t][v])
        }
    #undef CNNLAB_PUT
}

CNNLAB_DIRECT_ATTR
static void FN(cnnlab_wino_gemm)(const T *u, const T *v, T *m, long k, long c, long nt,
                                 long ldv, long ldm)
{
    long n8 = (nt + 7) / 8 * 8;
    for (long t0 = 0; t0 < n8; t0 += 3 * L) {
        long rest = n8 - t0 < 3 * L ? n8 - t0 : 3 * L, tail = rest % L;
        int nv = (int) ((rest + L - 1) / L);
        VMASK_T last = VMASK(tail);
        for (long k0 = 0; k0 < k; k0 += 4) {
            long nk = k - k0 < 4 ? k - k0 : 4;
            const T *a0 = u + k0 * c;
            const T *a1 = u + (k0 + (nk > 1 ? 1 : 0)) * c;
            const T *a2 = u + (k0 + (nk > 2 ? 2 : nk - 1)) * c;
            const T *a3 = u + (k0 + (nk > 3 ? 3 : nk - 1)) * c;
            T *mo = m + k0 * ldm + t0;
            #define CNNLAB_BLOCK(nv, masked)                                          \
                FN(cnnlab_wino_block)(a0, a1, a2, a3, v + t0, ldv, c, mo, ldm, nk, nv, \
                                      masked, last)
            if (tail) {                     /* 8 columns in a register of 16 */
                if (nv == 3) CNNLAB_BLOCK(3, 1);
                else if (nv == 2) CNNLAB_BLOCK(2, 1);
                else CNNLAB_BLOCK(1, 1);
            } else if (nv == 3) CNNLAB_BLOCK(3, 0);
            else if (nv == 2) CNNLAB_BLOCK(2, 0);
            else CNNLAB_BLOCK(1, 0);
            #undef CNNLAB_BLOCK
        }
    }
}
#endif

#undef T
#undef V
#undef L
#undef VLOADU
#undef VSTOREU
#undef VSET1
#undef VBCAST
#undef VFMA
#undef VZERO
#undef VMASKLOAD
#undef VMASK
#undef VMASK_T
#undef VMASKSTORE
#undef VHSUM
#undef CNNLAB_DIRECT_GEMM
