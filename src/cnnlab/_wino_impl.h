/* Winograd F(4x4, 3x3)'s input and output transforms of one channel for 16 tiles side by
   side (lane q is tile q); included by _wino.h once per element type and instruction set,
   with T (float, double), ATTR (a target attribute or nothing) and FN(name) defined; the
   end of this file undefines them. The loops over the 16 lanes have a constant trip count
   and restrict pointers, so the compiler vectorises them for ATTR's registers; the outputs'
   rows (os apart) never overlap, which GCC is told (CNNLAB_WINO_IVDEP): with a row stride
   known only at run time it kept the stores into V scalar. */

/* B^T d: o[i*os + q] from s[k*ss + q], k < 6 (6 -> 6). */
ATTR static inline void FN(bt6)(const T *restrict s, long ss, T *restrict o, long os)
{
    const T h = 0.5, one5 = 1.5, two = 2, two5 = 2.5;
    CNNLAB_WINO_IVDEP
    for (int q = 0; q < 16; q++) {
        T d0 = s[q], d1 = s[ss + q], d2 = s[2 * ss + q], d3 = s[3 * ss + q],
          d4 = s[4 * ss + q], d5 = s[5 * ss + q];
        o[q] = d0 - one5 * d1 - two * d2 + one5 * d3 + d4;
        o[os + q] = d4 - d1 + h * d2 + two5 * d3;
        o[2 * os + q] = d4 + d1 - two5 * d2 + h * d3;
        o[3 * os + q] = d4 - d2 + two * (d3 - d1);
        o[4 * os + q] = d4 - d2 + h * (d1 - d3);
        o[5 * os + q] = d1 - one5 * d2 - two * d3 + one5 * d4 + d5;
    }
}

/* A^T m: o[i*os + q] from s[k*ss + q] (6 -> 4). */
ATTR static inline void FN(at6)(const T *restrict s, long ss, T *restrict o, long os)
{
    const T h = 0.5, q4 = 0.25, e8 = 0.125, two = 2, four = 4, eight = 8;
    CNNLAB_WINO_IVDEP
    for (int q = 0; q < 16; q++) {
        T m0 = s[q], a = s[ss + q] + s[2 * ss + q], b = s[ss + q] - s[2 * ss + q],
          m3 = s[3 * ss + q], m4 = s[4 * ss + q], m5 = s[5 * ss + q];
        o[q] = m0 + a + m3 + m4;
        o[os + q] = b + h * m3 - two * m4;
        o[2 * os + q] = a + q4 * m3 + four * m4;
        o[3 * os + q] = b + e8 * m3 - eight * m4 + m5;
    }
}

/* v[(xi*6 + xj)*ldv + q] = (B^T d B)[xi, xj] of the patches d[(i*6 + j)*16 + q]. */
ATTR static void FN(in)(const T *restrict d, T *restrict v, long ldv)
{
    T e[36 * 16];
    for (int i = 0; i < 6; i++)          /* along each row i: d[i, j] -> e[i, xj] */
        FN(bt6)(d + i * 6 * 16, 16, e + i * 6 * 16, 16);
    for (int j = 0; j < 6; j++)          /* along each column xj: e[., xj] -> v[xi, xj] */
        FN(bt6)(e + j * 16, 6 * 16, v + j * ldv, 6 * ldv);
}

/* o[(i*4 + j)*16 + q] = (A^T M A)[i, j] of M[xi, xj] = m[(xi*6 + xj)*ldm + q]. */
ATTR static void FN(out)(const T *restrict m, long ldm, T *restrict o)
{
    T e[24 * 16];
    for (int j = 0; j < 6; j++)          /* along each column xj: m[., xj] -> e[i, xj] */
        FN(at6)(m + j * ldm, 6 * ldm, e + j * 16, 6 * 16);
    for (int i = 0; i < 4; i++)          /* along each row i: e[i, .] -> o[i, j] */
        FN(at6)(e + i * 6 * 16, 16, o + i * 4 * 16, 16);
}

#undef T
#undef ATTR
#undef FN
