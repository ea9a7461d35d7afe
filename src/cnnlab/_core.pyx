# Design note: the compiled twin of the kernel contract (see _fallback.py's docstring).
#
# Each ``def`` unpacks a checked spec into a C struct (Conv, Pool, Wino), allocates the
# result with NumPy and hands raw pointers to a ``nogil`` fused-type (float/double) kernel.
# A convolution takes one of three algorithms (``_algorithm`` tells which):
#   Winograd F(4x4, 3x3)  3x3 stride 1, one group, >= 8 channels each side (section
#                         "Winograd"): forward and input gradient (the flipped-kernel
#                         forward); 36 GEMMs per block. Not the weight gradient: its
#                         exact zeros (all products zero) must stay zero (see
#                         conv2d_grad_weight).
#   direct                forward and weight gradient of layers with <= 4 input channels,
#                         any stride, float32 and float64, on AVX2+FMA CPUs, AVX-512F
#                         builds where the CPU has it (the C in _direct.h, written once
#                         in _direct_impl.h; section "direct" here); their stride-1 input
#                         gradient into 3 or 4 channels, as the flipped kernel's direct
#                         forward. Also, on AVX2-only CPUs, the weight gradient of float32
#                         layers with <= 32 input channels and rows of >= 32 outputs.
#                         _direct.h also holds Winograd's float32 GEMM kernel.
#   im2col + GEMM         everything else. Work items (image, group, tile of output rows),
#                         tiles sized from the L2 cache (``_tiles_*``), each thread with its
#                         own column buffer. grad_input: GEMM then col2im per (image, group,
#                         block of channels). 1x1 stride-1 unpadded convolutions skip im2col;
#                         stride-1 'same'-width ones copy whole shifted planes (``_flat``).
#                         Windows that tile the input (kernel = stride, ``_patches``: the
#                         transposed convolution that upsamples): grad_input scatters each
#                         tile's GEMM into its cells, no col2im; float32 with W_out a
#                         multiple of 8 multiplies on cnnlab_wino_gemm, forward too.
# GEMMs go through scipy.linalg.cython_blas (row-major by swapping A and B, ``_gemm``), one
# BLAS call per OpenMP thread, BLAS held to one thread meanwhile (``_OneBlasThread``); but
# Winograd's thin float32 products (and those of ``_patches``) run on a kernel of our own
# (``cnnlab_wino_gemm``). The hand-vectorised C (_direct.h, _wino.h, _pool.h) is built for
# several instruction sets in one extension (function attributes: portable, AVX2+FMA,
# AVX-512F), and ``_isa`` picks the builds from what the CPU runs, when this module loads.
# Forward and input-gradient work items go to whichever thread is free (schedule='dynamic');
# weight gradients add into per-thread partial sums over a static split, reduced in thread
# order (deterministic for a thread count). Pooling: direct loops over the N*C planes;
# windows wholly inside a row go tap by tap in vectorisable loops over the columns (2x2
# stride 2 fused into one loop), border windows one by one; average pooling's backward
# writes each cell once where the windows tile the input; 2x2 stride-2 windows that tile
# the plane go a plane at a time to _pool.h. OpenMP: ``#ifdef`` shim below;
# its wait policy is set when this module loads (cnnlab._parallel.load_compiled).
# Sizes, indices and offsets are Py_ssize_t (planes of 2**31 elements and more); only the
# BLAS arguments (checked in Python to fit) and max pooling's per-row tap offsets (where a
# plane's rows allow, ``Pool.rel32``: they vectorise wider) are C ints.
from cython.parallel cimport parallel, prange, threadid
from libc.stdlib cimport malloc, free
from libc.string cimport memset, memcpy
from libc.math cimport INFINITY
from libc.stdint cimport int64_t, uint64_t
from libc.limits cimport INT_MAX
from cython cimport floating
from scipy.linalg.cython_blas cimport sgemm, dgemm

import contextlib
import os
import threading

import numpy as np

from cnnlab._checks import (check_buffer, check_gemm_sizes, check_matmul_sizes,
                            indices_out_of_range, tiles)
from cnnlab._parallel import kernel_threads as _num_threads

__all__ = ["conv2d", "conv2d_grad_input", "conv2d_grad_weight", "bias_grad",
           "max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward",
           "matmul", "relu", "relu_backward", "openmp_enabled"]

cdef extern from *:
    """
    #ifdef _OPENMP
    #define CNNLAB_OPENMP 1
    #else
    #define CNNLAB_OPENMP 0
    #endif
    """
    const int CNNLAB_OPENMP


def openmp_enabled():
    """True when this extension was compiled with OpenMP (else every loop is serial)."""
    return bool(CNNLAB_OPENMP)


# --------------------------------------------------------------------------- cache sizes

def _cache_bytes(level, default):
    """Size in bytes of this CPU's data (or unified) cache of ``level``: sysconf, then
    sysfs, else ``default``. Read once, at import; it sizes the kernels' work blocks."""
    try:
        n = os.sysconf(f"SC_LEVEL{level}_CACHE_SIZE" if level > 1 else "SC_LEVEL1_DCACHE_SIZE")
        if n > 0:
            return n
    except (ValueError, OSError):
        pass
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for d in sorted(os.listdir(base)):
            with open(f"{base}/{d}/level") as f:
                if int(f.read()) != level:
                    continue
            with open(f"{base}/{d}/type") as f:
                if f.read().strip() == "Instruction":
                    continue
            with open(f"{base}/{d}/size") as f:
                size = f.read().strip()
            return int(size.rstrip("KMG")) << {"K": 10, "M": 20, "G": 30}.get(size[-1], 0)
    except (OSError, ValueError):
        pass
    return default


_L2_BYTES = _cache_bytes(2, 1 << 20)


# --------------------------------------------------------------------------- BLAS

class _OneBlasThread:
    """Context manager: BLAS runs on one thread while any kernel of this module runs.

    The GEMMs inside our OpenMP loops must not start BLAS threads of their own. BLAS
    thread counts are process-wide, so a counter makes overlapping kernels from several
    Python threads set the limit once and restore the user's setting when the last one
    leaves (whichever thread that is: threadpoolctl >= 3.6 lets only its "controlling
    thread" set OpenBLAS's pthreads pool, so control is handed back after each change).
    threadpoolctl finds the libraries once (scipy's BLAS is loaded by then: this module
    cimports it); each call then costs a few ctypes calls, not the ~25 us of
    ``ThreadpoolController.limit``.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._depth = 0
        self._saved = ()

    def __enter__(self):
        with self._lock:
            if self._depth == 0:
                saved = []
                for lib in _blas_libraries():
                    n = lib.get_num_threads()
                    if n is not None and n != 1:
                        _set_blas_threads(lib, 1)
                        saved.append((lib, n))
                self._saved = saved
            self._depth += 1
        return self

    def __exit__(self, *exc):
        with self._lock:
            self._depth -= 1
            if self._depth == 0:
                for lib, n in self._saved:
                    _set_blas_threads(lib, n)
                self._saved = ()
        return False

    def _after_fork_in_child(self):
        """A fork while another thread ran a kernel: the child runs none, so it gives the
        BLAS libraries their saved thread counts back and starts from a fresh lock."""
        self._lock = threading.Lock()
        if self._depth:
            for lib, n in self._saved:
                _set_blas_threads(lib, n)
        self._depth = 0
        self._saved = ()


def _set_blas_threads(lib, n):
    """Set a BLAS library's pool size, then give up threadpoolctl's OpenBLAS control
    so that the thread which restores it later may be another one."""
    lib.set_num_threads(n)
    clear = getattr(lib, "clear_controlling_thread", None)
    if clear is not None:
        clear()


_one_blas_thread = _OneBlasThread()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_one_blas_thread._after_fork_in_child)
_blas = None


def _blas_libraries():
    """threadpoolctl's controllers of the BLAS libraries loaded, found on first use (~20 ms)."""
    global _blas
    if _blas is None:
        from threadpoolctl import ThreadpoolController
        _blas = ThreadpoolController().select(user_api="blas").lib_controllers
    return _blas


cdef inline void _gemm(bint ta, bint tb, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                       floating alpha, const floating* a, Py_ssize_t lda, const floating* b,
                       Py_ssize_t ldb, floating beta, floating* c,
                       Py_ssize_t ldc) noexcept nogil:
    """Row-major C (m x n, ldc) = alpha op(A) op(B) + beta C; op(A) is m x k, op(B) k x n.

    Column-major BLAS sees a row-major matrix as its transpose, so it computes
    C^T = op(B)^T op(A)^T: the operands are swapped (scikit-learn's _cython_blas trick).
    BLAS takes C ``int`` sizes: the callers' sizes were checked to fit
    (``_checks.check_gemm_sizes``).
    """
    cdef char transa = b'T' if ta else b'N'
    cdef char transb = b'T' if tb else b'N'
    cdef Py_ssize_t i, j
    cdef int im = <int> m, jn = <int> n, kk = <int> k
    cdef int la = <int> lda, lb = <int> ldb, lc = <int> ldc
    if m <= 0 or n <= 0:
        return
    if k <= 0:                       # BLAS refuses lda = 0; the product is empty
        for i in range(m):
            for j in range(n):
                c[i * ldc + j] = 0 if beta == 0 else beta * c[i * ldc + j]
        return
    if floating is float:
        sgemm(&transb, &transa, &jn, &im, &kk, &alpha, <float*> b, &lb, <float*> a, &la,
              &beta, c, &lc)
    else:
        dgemm(&transb, &transa, &jn, &im, &kk, &alpha, <double*> b, &lb, <double*> a, &la,
              &beta, c, &lc)


# --------------------------------------------------------------------------- matmul

# Products with fewer multiply-adds than this run as one BLAS call on one thread; larger ones
# are cut into one block of rows (or columns) per thread of this module's OpenMP pool. Either
# way BLAS's own pool stays idle, so a training loop never has two pools fighting over cores.
cdef Py_ssize_t _PARALLEL_GEMM = 1 << 18


def matmul(a, b, trans_a, trans_b):
    """C (M, N) = op(a) @ op(b) for 2-D C-contiguous a, b of one float dtype; op(a) is
    a.T when trans_a (a is then (K, M)), op(b) is b.T when trans_b (b is then (N, K))."""
    cdef bint ta = trans_a, tb = trans_b
    cdef Py_ssize_t m = a.shape[1] if ta else a.shape[0]
    cdef Py_ssize_t k = a.shape[0] if ta else a.shape[1]
    cdef Py_ssize_t n = b.shape[0] if tb else b.shape[1]
    check_matmul_sizes(m, n, k)
    c = np.empty((m, n), a.dtype)
    cdef int nt = _num_threads() if m * n * k >= _PARALLEL_GEMM else 1
    guard = _unguarded if m * n * k < _TINY_GEMM else _one_blas_thread
    with guard:
        if a.dtype == np.float32:
            _matmul[float](ta, tb, m, n, k, a, b, c, nt)
        else:
            _matmul[double](ta, tb, m, n, k, a, b, c, nt)
    return c


cdef int _matmul(bint ta, bint tb, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                 const floating[:, ::1] a, const floating[:, ::1] b, floating[:, ::1] c,
                 int n_threads) except -1:
    cdef const floating* pa = NULL
    cdef const floating* pb = NULL
    if m == 0 or n == 0:
        return 0
    if k > 0:                        # else the product is zeros, and a, b have no elements
        pa = &a[0, 0]
        pb = &b[0, 0]
    _matmul_run(ta, tb, <int> m, <int> n, <int> k, pa, pb, &c[0, 0], n_threads)
    return 0


cdef void _matmul_run(bint ta, bint tb, int m, int n, int k, const floating* a,
                      const floating* b, floating* c, int n_threads) noexcept:
    """Row-major C (m x n) = op(A) op(B), cut along the larger of m and n into one block
    per thread (multiples of 16 rows or columns), each block one single-threaded GEMM."""
    cdef int lda = m if ta else k
    cdef int ldb = k if tb else n
    cdef bint by_rows = m >= n
    cdef int size = m if by_rows else n
    cdef int step = (size + n_threads - 1) // n_threads
    cdef int blocks, i, lo, hi
    step = ((step + 15) // 16) * 16
    blocks = (size + step - 1) // step
    with nogil:
        for i in prange(blocks, schedule='static', num_threads=blocks):
            lo = i * step
            hi = min(lo + step, size)
            if by_rows:
                _gemm(ta, tb, hi - lo, n, k, <floating> 1,
                      a + (lo if ta else <Py_ssize_t> lo * lda), lda, b, ldb, <floating> 0,
                      c + <Py_ssize_t> lo * n, n)
            else:
                _gemm(ta, tb, m, hi - lo, k, <floating> 1, a, lda,
                      b + (<Py_ssize_t> lo * ldb if tb else lo), ldb, <floating> 0, c + lo, n)


# --------------------------------------------------------------------------- convolution

# Threads: the work items of a forward convolution or an input gradient (tiles, images,
# blocks of rows: each writes its own outputs) go to whichever thread is free
# (schedule='dynamic'), so a thread on a slower core takes fewer. Alternated call by call
# on 2 threads (ms, static -> dynamic): 32->64 @16 forward 1.71 -> 1.40, input gradient
# 1.82 -> 1.58; 64->64 @56 batch 8 8.73 -> 8.35 and 10.48 -> 9.08; 3->16 @64 and 16->32
# @32 within +-5%. A weight gradient adds its items into one partial sum per thread: it
# keeps the static split, so its sums come in the same order on every call.

cdef struct Conv:
    Py_ssize_t n, c_in, h, w, c_out, groups, cg, og, kh, kw
    Py_ssize_t sh, sw, ph, pw, dh, dw, ho, wo
    Py_ssize_t k         # rows of the column matrix: cg * kh * kw
    Py_ssize_t rows      # output rows per tile
    Py_ssize_t tiles     # tiles per image
    bint direct          # 1x1, stride 1, no padding: the input is its own column matrix


cdef Conv _conv_geometry(tuple shape, Py_ssize_t c_out, spec):
    cdef Conv p
    p.n, p.c_in, p.h, p.w = shape
    p.c_out = c_out
    p.sh, p.sw = spec.stride
    p.ph, p.pw = spec.padding
    p.dh, p.dw = spec.dilation
    p.kh, p.kw = spec.kernel_size
    p.ho, p.wo = spec.out_size
    p.groups = spec.groups
    p.cg = p.c_in // p.groups
    p.og = p.c_out // p.groups
    p.k = p.cg * p.kh * p.kw
    p.direct = (p.kh == 1 and p.kw == 1 and p.sh == 1 and p.sw == 1 and p.ph == 0
                and p.pw == 0 and p.ho == p.h and p.wo == p.w
                and p.h * p.w <= INT_MAX)     # the plane is a GEMM's leading dimension
    p.rows = p.ho
    p.tiles = 1
    return p


# GEMMs below this many multiply-adds run on one thread in any BLAS we know (OpenBLAS
# threads from 65536*4): calls made only of such GEMMs skip _OneBlasThread's ~10 us.
cdef Py_ssize_t _TINY_GEMM = 32768
_unguarded = contextlib.nullcontext()


cdef object _blas_guard(const Conv* p):
    """The context to run a convolution kernel in: BLAS held to one thread, unless all of
    its GEMMs (at most og x k x one tile) are tiny."""
    if <Py_ssize_t> p.og * p.k * p.rows * p.wo < _TINY_GEMM:
        return _unguarded
    return _one_blas_thread


cdef void _set_tiles(Conv* p, Py_ssize_t rows) noexcept:
    """Balanced tiles of at most ``rows`` output rows."""
    if p.ho <= 0:                   # no output rows: no tiles (and no division by 0)
        p.rows = 1
        p.tiles = 0
        return
    rows = max(1, min(rows, p.ho))
    p.tiles = (p.ho + rows - 1) // rows
    p.rows = (p.ho + p.tiles - 1) // p.tiles
    p.tiles = (p.ho + p.rows - 1) // p.rows


cdef _check_columns(const Conv* p, Py_ssize_t itemsize):
    """Each thread's column buffer (K x one tile) fits a size_t of bytes."""
    if not p.direct:
        check_buffer("the im2col buffer (C_in/groups*kH*kW x one tile of output rows)",
                     (p.k, p.rows * p.wo), itemsize)


cdef inline Py_ssize_t _rows_for(const Conv* p, Py_ssize_t columns) noexcept:
    return (columns + p.wo - 1) // max(1, p.wo)


# Tiles of output rows: each thread's column buffer (K rows x one tile) takes at most
# _TILE_BYTES, half of L2 (read at import), and a tile has at least 256 output pixels; the
# weight gradient's GEMMs reduce over the tile, so their tiles may take all of L2 but no
# more than 1024 pixels.
cdef Py_ssize_t _TILE_BYTES = _L2_BYTES // 2


cdef void _tiles_forward(Conv* p, Py_ssize_t itemsize) noexcept:
    _set_tiles(p, max(_rows_for(p, 256),
                      _TILE_BYTES // max(1, p.k * p.wo * itemsize)))


cdef void _tiles_grad_input(Conv* p, Py_ssize_t itemsize) noexcept:
    _set_tiles(p, max(_rows_for(p, 256),
                      _TILE_BYTES // max(1, p.k * p.wo * itemsize)))


cdef void _tiles_grad_weight(Conv* p, Py_ssize_t itemsize) noexcept:
    _set_tiles(p, max(1, min(2 * _TILE_BYTES // max(1, p.k * p.wo * itemsize),
                             _rows_for(p, 1024))))


cdef inline void _col_span(const Conv* p, Py_ssize_t j, Py_ssize_t* lo,
                           Py_ssize_t* hi) noexcept nogil:
    """Output columns [lo, hi) whose tap j reads inside the input row."""
    cdef Py_ssize_t iw0 = j * p.dw - p.pw
    cdef Py_ssize_t a = 0, b
    if iw0 < 0:
        a = (-iw0 + p.sw - 1) // p.sw
    b = 0 if p.w - 1 - iw0 < 0 else (p.w - 1 - iw0) // p.sw + 1
    if b > p.wo:
        b = p.wo
    if a > b:
        a = b
    lo[0] = a
    hi[0] = b


cdef inline bint _flat(const Conv* p) noexcept nogil:
    """Stride 1 and as wide as the input ('same'-like): the rows of one column-matrix row
    are a contiguous stretch of the input plane, shifted (the fast path)."""
    return p.sh == 1 and p.sw == 1 and p.wo == p.w


cdef inline void _zero(floating* d, Py_ssize_t n) noexcept nogil:
    if n > 0:
        memset(d, 0, n * sizeof(floating))


cdef inline void _zero_edges(floating* d, Py_ssize_t rows, Py_ssize_t width, Py_ssize_t lo,
                             Py_ssize_t hi) noexcept nogil:
    """Zero columns [0, lo) and [hi, width) of ``rows`` rows of ``width`` (column by column:
    a few stores each, where a memset call per row would cost more than the stores)."""
    cdef Py_ssize_t r, q
    for q in range(lo):
        for r in range(rows):
            d[r * width + q] = 0
    for q in range(hi, width):
        for r in range(rows):
            d[r * width + q] = 0


cdef void _im2col(const Conv* p, const floating* x, Py_ssize_t r0, Py_ssize_t r1,
                  floating* col) noexcept nogil:
    """Columns of output rows [r0, r1) from one group's input x (cg, h, w):
    col[(c*kh + i)*kw + j, (oh - r0)*wo + ow] = x[c, oh*sh - ph + i*dh, ow*sw - pw + j*dw]
    (zero outside the input)."""
    cdef Py_ssize_t t = <Py_ssize_t> (r1 - r0) * p.wo, hw = <Py_ssize_t> p.h * p.w
    cdef Py_ssize_t off, q0, q1, s0, s1, base
    cdef Py_ssize_t c, i, j, oh, ih, ow, lo, hi, iw0, a, b
    cdef floating* d
    cdef const floating* s
    for c in range(p.cg):
        for i in range(p.kh):
            for j in range(p.kw):
                _col_span(p, j, &lo, &hi)
                iw0 = j * p.dw - p.pw
                d = col + ((c * p.kh + i) * p.kw + j) * t
                s = x + c * hw
                if _flat(p):
                    # rows [a, b) read inside: one shifted copy of x[c] (index oh*w + ow + off),
                    # clipped to the plane, then the columns outside [lo, hi) set to zero
                    a = max(r0, p.ph - i * p.dh)
                    b = min(r1, p.h + p.ph - i * p.dh)
                    if b <= a:
                        _zero(d, t)
                        continue
                    off = <Py_ssize_t> (i * p.dh - p.ph) * p.w + iw0
                    base = off + <Py_ssize_t> r0 * p.w      # d[q - base] <- s[q]
                    q0 = <Py_ssize_t> a * p.w + off
                    q1 = <Py_ssize_t> b * p.w + off
                    # clipped to the plane and kept inside [q0, q1): with padding wider than
                    # the input the two ranges can miss each other (then nothing is copied)
                    s0 = min(max(q0, 0), q1)
                    s1 = max(min(q1, hw), s0)
                    _zero(d, s0 - base)
                    memcpy(d + (s0 - base), s + s0, (s1 - s0) * sizeof(floating))
                    _zero(d + (s1 - base), t - (s1 - base))
                    _zero_edges(d + (a - r0) * p.wo, b - a, p.wo, lo, hi)
                    continue
                for oh in range(r0, r1):
                    ih = oh * p.sh - p.ph + i * p.dh
                    if ih < 0 or ih >= p.h:
                        _zero(d, p.wo)
                    else:
                        for ow in range(lo):
                            d[ow] = 0
                        if p.sw == 1:
                            for ow in range(lo, hi):
                                d[ow] = s[ih * p.w + iw0 + ow]
                        else:
                            for ow in range(lo, hi):
                                d[ow] = s[ih * p.w + iw0 + ow * p.sw]
                        for ow in range(hi, p.wo):
                            d[ow] = 0
                    d += p.wo


cdef void _col2im(const Conv* p, floating* col, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t nc,
                  floating* x) noexcept nogil:
    """The adjoint of _im2col: add the columns of output rows [r0, r1) into x (nc, h, w)
    (``nc`` channels: all of a group's or a block of them). ``col`` is scratch: the flat
    path zeroes its entries that fall outside the input."""
    cdef Py_ssize_t t = <Py_ssize_t> (r1 - r0) * p.wo, hw = <Py_ssize_t> p.h * p.w
    cdef Py_ssize_t off, s0, s1, base, q
    cdef Py_ssize_t c, i, j, oh, ih, ow, lo, hi, iw0, a, b
    cdef floating* s
    cdef floating* d
    for c in range(nc):
        for i in range(p.kh):
            for j in range(p.kw):
                _col_span(p, j, &lo, &hi)
                iw0 = j * p.dw - p.pw
                s = col + ((c * p.kh + i) * p.kw + j) * t
                d = x + c * hw
                if _flat(p):
                    a = max(r0, p.ph - i * p.dh)
                    b = min(r1, p.h + p.ph - i * p.dh)
                    if b <= a:
                        continue
                    off = <Py_ssize_t> (i * p.dh - p.ph) * p.w + iw0
                    base = off + <Py_ssize_t> r0 * p.w
                    _zero_edges(s + (a - r0) * p.wo, b - a, p.wo, lo, hi)
                    s0 = max(<Py_ssize_t> a * p.w + off, 0)
                    s1 = min(<Py_ssize_t> b * p.w + off, hw)
                    for q in range(s0, s1):
                        d[q] += s[q - base]
                    continue
                for oh in range(r0, r1):
                    ih = oh * p.sh - p.ph + i * p.dh
                    if ih >= 0 and ih < p.h:
                        if p.sw == 1:
                            for ow in range(lo, hi):
                                d[ih * p.w + iw0 + ow] += s[ow]
                        else:
                            for ow in range(lo, hi):
                                d[ih * p.w + iw0 + ow * p.sw] += s[ow]
                    s += p.wo


cdef struct Tile:
    Py_ssize_t n, g, r0, nr     # image, group, first output row, output rows


cdef inline Tile _tile(const Conv* p, Py_ssize_t item) noexcept nogil:
    """Work item -> its tile of the (image, group, tile of output rows) grid."""
    cdef Tile t
    t.n = item // (p.groups * p.tiles)
    t.g = (item // p.tiles) % p.groups
    t.r0 = (item % p.tiles) * p.rows
    t.nr = min(p.rows, p.ho - t.r0)
    return t


cdef inline const floating* _columns(const Conv* p, const floating* x, Tile t,
                                     floating* col) noexcept nogil:
    """Tile t's column matrix (k rows, leading dimension ``_ld``): x itself for a direct
    convolution, else its im2col copy in ``col``."""
    cdef const floating* src = x + (t.n * p.c_in + t.g * p.cg) * p.h * p.w
    if p.direct:
        return src + t.r0 * p.wo
    _im2col(p, src, t.r0, t.r0 + t.nr, col)
    return col


cdef inline Py_ssize_t _ld(const Conv* p, Tile t) noexcept nogil:
    return p.h * p.w if p.direct else t.nr * p.wo


cdef int _conv2d_run(Conv p, const floating* x, const floating* wt, const floating* b,
                 floating* y, int n_threads, bint own=False) except -1:
    """y (n, c_out, ho, wo) = conv(x (n, c_in, h, w), wt (c_out, cg, kh, kw)) + b; own
    (float32, see _patch_own_forward): the GEMMs on cnnlab_wino_gemm."""
    cdef Py_ssize_t items = <Py_ssize_t> p.n * p.groups * p.tiles, item
    cdef Py_ssize_t hwo = <Py_ssize_t> p.ho * p.wo
    cdef int failed = 0
    cdef int* failed_p = &failed
    cdef int nt = <int> min(n_threads, items)
    cdef Py_ssize_t o, ldb
    cdef Tile tl
    cdef floating* col
    cdef const floating* bmat
    cdef floating* yt
    cdef floating bias
    cdef Py_ssize_t q
    if items == 0:
        return 0
    col = NULL                          # thread-private below; set here to quiet -Wall
    with nogil, parallel(num_threads=nt):
        col = NULL
        if not p.direct:
            col = <floating*> malloc(max(1, p.k * p.rows * p.wo) * sizeof(floating))
            if col == NULL:
                failed_p[0] = 1
        for item in prange(items, schedule='dynamic'):
            if col == NULL and not p.direct:
                continue
            tl = _tile(&p, item)         # assigned here, so thread-private
            bmat = _columns(&p, x, tl, col)
            ldb = _ld(&p, tl)
            yt = y + (tl.n * p.c_out + tl.g * p.og) * hwo + tl.r0 * p.wo
            if floating is float:
                if own:
                    cnnlab_wino_gemm(wt + tl.g * p.og * p.k, bmat, yt, p.og, p.k,
                                     tl.nr * p.wo, ldb, hwo, _ISA >= 2)
                    for o in range(p.og):
                        bias = b[tl.g * p.og + o]
                        for q in range(tl.nr * p.wo):
                            yt[o * hwo + q] += bias
                    continue
            for o in range(p.og):
                bias = b[tl.g * p.og + o]
                for q in range(tl.nr * p.wo):
                    yt[o * hwo + q] = bias
            _gemm(False, False, p.og, tl.nr * p.wo, p.k, <floating> 1,
                  wt + tl.g * p.og * p.k, p.k, bmat, ldb, <floating> 1, yt, hwo)
        free(col)
    if failed:
        raise MemoryError("conv2d: cannot allocate the im2col buffer")
    return 0


cdef inline void _fill_planes(floating* planes, const floating* values, Py_ssize_t count,
                              Py_ssize_t size) noexcept nogil:
    """Plane c of count planes of size cells (consecutive) all values[c]."""
    cdef Py_ssize_t c, q
    cdef floating v
    cdef floating* d
    for c in range(count):
        v = values[c]
        d = planes + c * size
        for q in range(size):
            d[q] = v


cdef int _conv2d_grad_input_run(Conv p, const floating* gy, const floating* wt,
                                const floating* b, floating* gx, int n_threads) except -1:
    """gx (n, c_in, h, w) from gy (n, c_out, ho, wo): col = W^T gy, then col2im into planes
    that start from b[c] (b: (c_in,) or NULL for zeros).

    Items are (image, group, block of input channels): col2im writes a channel from its
    own rows of col only, so blocks are independent. There is more than one block only
    when images x groups are fewer than the threads (batch 1)."""
    cdef Py_ssize_t blocks = 1
    if 0 < p.n * p.groups < n_threads and not p.direct:
        blocks = min(p.cg, (n_threads + p.n * p.groups - 1) // (p.n * p.groups))
    cdef Py_ssize_t per_block = (p.cg + blocks - 1) // max(blocks, 1)
    cdef Py_ssize_t items = <Py_ssize_t> p.n * p.groups * blocks, item
    cdef Py_ssize_t hw = <Py_ssize_t> p.h * p.w, hwo = <Py_ssize_t> p.ho * p.wo
    cdef Py_ssize_t khw = p.kh * p.kw
    cdef int failed = 0
    cdef int* failed_p = &failed
    cdef int nt = <int> min(n_threads, items)
    cdef Py_ssize_t n, g, t, r0, nr, c0, nc
    cdef floating* col
    cdef floating* gxt
    cdef const floating* gyt
    cdef const floating* wg
    if items == 0:
        return 0
    col = NULL                          # thread-private below; set here to quiet -Wall
    with nogil, parallel(num_threads=nt):
        col = NULL
        if not p.direct:
            col = <floating*> malloc(max(1, p.k * p.rows * p.wo) * sizeof(floating))
            if col == NULL:
                failed_p[0] = 1
        for item in prange(items, schedule='dynamic'):
            if col == NULL and not p.direct:
                continue
            n = item // (p.groups * blocks)
            g = (item // blocks) % p.groups
            c0 = (item % blocks) * per_block
            nc = min(per_block, p.cg - c0)
            if nc <= 0:
                continue
            gyt = gy + (n * p.c_out + g * p.og) * hwo
            wg = wt + g * p.og * p.k
            if p.direct:
                gxt = gx + (n * p.c_in + g * p.cg) * hw
                if b != NULL:
                    _fill_planes(gxt, b + g * p.cg, p.cg, hw)
                _gemm(True, False, p.cg, hw, p.og, <floating> 1, wg, p.k, gyt,
                      hwo, <floating> (0 if b == NULL else 1), gxt, hw)
                continue
            gxt = gx + (n * p.c_in + g * p.cg + c0) * hw
            if b == NULL:
                memset(gxt, 0, nc * hw * sizeof(floating))
            else:
                _fill_planes(gxt, b + g * p.cg + c0, nc, hw)
            for t in range(p.tiles):
                r0 = t * p.rows
                nr = min(p.rows, p.ho - r0)
                # rows [c0*khw, (c0+nc)*khw) of col = those columns of W_g, transposed
                _gemm(True, False, nc * khw, nr * p.wo, p.og, <floating> 1,
                      wg + c0 * khw, p.k, gyt + r0 * p.wo, hwo,
                      <floating> 0, col, nr * p.wo)
                _col2im(&p, col, r0, r0 + nr, nc, gxt)
        free(col)
    if failed:
        raise MemoryError("conv2d_grad_input: cannot allocate the column buffer")
    return 0


cdef int _conv2d_grad_weight_run(Conv p, const floating* gy, const floating* x,
                             floating* part, floating* gw, int n_threads) except -1:
    """gw (c_out, cg, kh, kw) = sum over images of gy col^T. ``part`` holds one zeroed
    partial sum per thread, transposed per group, (groups, k, og): col gy^T packs faster
    in BLAS than gy col^T. The partials are added in thread order at the end."""
    cdef Py_ssize_t items = <Py_ssize_t> p.n * p.groups * p.tiles, item
    cdef Py_ssize_t hwo = <Py_ssize_t> p.ho * p.wo
    cdef Py_ssize_t size = <Py_ssize_t> p.c_out * p.k, q
    cdef int failed = 0
    cdef int* failed_p = &failed
    cdef int nt = <int> min(n_threads, items)
    cdef Py_ssize_t g, ldb, t, o
    cdef Tile tl
    cdef floating* col
    cdef floating* mine
    cdef const floating* bmat
    if size == 0:
        return 0
    memset(gw, 0, size * sizeof(floating))
    if items == 0:
        return 0
    col = mine = NULL                   # thread-private below; set here to quiet -Wall
    with nogil, parallel(num_threads=nt):
        col = NULL
        mine = part + threadid() * size
        if not p.direct:
            col = <floating*> malloc(max(1, p.k * p.rows * p.wo) * sizeof(floating))
            if col == NULL:
                failed_p[0] = 1
        for item in prange(items, schedule='static'):
            if col == NULL and not p.direct:
                continue
            tl = _tile(&p, item)         # assigned here, so thread-private
            bmat = _columns(&p, x, tl, col)
            ldb = _ld(&p, tl)
            _gemm(False, True, p.k, p.og, tl.nr * p.wo, <floating> 1, bmat, ldb,
                  gy + (tl.n * p.c_out + tl.g * p.og) * hwo + tl.r0 * p.wo,
                  hwo, <floating> 1, mine + tl.g * p.og * p.k, p.og)
        free(col)
    if failed:
        raise MemoryError("conv2d_grad_weight: cannot allocate the im2col buffer")
    with nogil:
        for t in range(nt):
            for g in range(p.groups):
                for q in range(p.k):
                    for o in range(p.og):
                        gw[(g * p.og + o) * p.k + q] += \
                            part[t * size + (g * p.k + q) * p.og + o]
    return 0


# --------------------------------------------------------------------------- Winograd

# F(4x4, 3x3) (Lavin & Gray, 2016) for 3x3 stride-1 convolutions, interpolation points 0, 1,
# -1, 1/2, -2 and infinity (half the float32 rounding error of 0, +-1, +-2). An output tile
# of 4x4 is Y = A^T [U . V] A, with V = B^T d B the transform of its 6x6 input patch d (per
# input channel) and U = G g G^T that of a 3x3 filter g (per output/input channel pair).
# Summed over input channels, the 36 element-wise products are 36 GEMMs over a block of T
# tiles, M[xi] (K x T) = U[xi] (K x C) @ V[xi] (C x T): 36 K C multiply-adds per tile where a
# direct method does 144 K C. A work item is a block of tiles: its thread transforms the
# input into V (C, 36, T), runs the 36 GEMMs into M (K, 36, T) and transforms M into the
# output, adding the bias. The input gradient of a stride-1 3x3 convolution is the forward
# convolution of grad_output with the flipped, transposed kernel (padding 2 - p): the same
# code. The weight gradient stays on im2col or the direct kernel: Winograd's leaves rounding
# noise where the exact gradient is 0 (README, Speed). Transforms run on _LANES tiles (or
# filters) side by side; the tiles' copies and transforms are C (_wino.h), the filters'
# transform is below.

cdef enum:
    _LANES = 16


# The tiles' copies and transforms (C, _wino.h: see its opening note).
cdef extern from "_wino.h":
    void cnnlab_wino_in_float(const float* d, float* v, long ldv, int isa) nogil
    void cnnlab_wino_in_double(const double* d, double* v, long ldv, int isa) nogil
    void cnnlab_wino_out_float(const float* m, long ldm, float* o, int isa) nogil
    void cnnlab_wino_out_double(const double* m, long ldm, double* o, int isa) nogil
    void cnnlab_wino_gather6_float(const float** src, const long* ld, long n,
                                   float* d) nogil
    void cnnlab_wino_gather6_double(const double** src, const long* ld, long n,
                                    double* d) nogil
    void cnnlab_wino_scatter4_float(const float* o, float** dst, long ld, const int* rows,
                                    const int* cols, long n, float b) nogil
    void cnnlab_wino_scatter4_double(const double* o, double** dst, long ld,
                                     const int* rows, const int* cols, long n,
                                     double b) nogil


# On BLAS, a block holds 64 to 256 tiles: as many as keep its V and M buffers within half
# of L2, but at least 64 (smaller blocks lose more to BLAS's packing than they gain in
# cache; one thread, measured on the lab and ResNet-like layers). Layers with fewer than 8
# channels on either side stay on im2col or the direct kernel (their GEMMs would be too
# thin; products fused into the output transform instead were measured slower than both).
cdef Py_ssize_t _wino_block_bytes = _L2_BYTES // 2
cdef Py_ssize_t _WINO_MAX_BLOCK = 256
cdef Py_ssize_t _WINO_MIN_BLOCK = 64
cdef Py_ssize_t _WINO_MIN_CHANNELS = 8
# On cnnlab_wino_gemm (no packing) a block is 48 tiles, two of the kernel's 24-column
# register blocks: alternated call by call on 2 threads (ms, 64-80 tiles -> 48), forward
# 16->32 @32 2.60 -> 2.33 and 1.96 -> 1.69, 32->64 @16 1.50 -> 1.20, 64->64 @56 batch 8
# 8.97 -> 8.06, 128->128 @14 10.10 -> 9.03 and 7.49 -> 6.58; 96 and 144 tiles were slower.
cdef Py_ssize_t _WINO_OWN_BLOCK = 48
# Its AVX-512 build against the AVX2 one (with the transforms', Xeon, 2 threads, the levels
# alternated in one process, float32 forward, ms): 16->32 @32 1.13 -> 1.00, 32->64 @16
# 0.74 -> 0.63, 64->64 @56 batch 8 4.03 -> 3.21, 128->128 @14 5.03 -> 4.31.
# float32 on AVX2+FMA CPUs: the 36 products run on cnnlab_wino_gemm (_direct.h)
# rather than BLAS when the input side has at most this many channels (2 threads, against
# BLAS: 16->32 @32 forward 1.59 vs 2.29 ms, 64->64 @56 7.1 vs 8.9, 128->128 @14 7.0 vs
# 8.8; 256->256 @14 the same, where a block's 256 x 24 of V fills L1).
cdef Py_ssize_t _WINO_OWN_GEMM_CHANNELS = 128
cdef int _ISA       # the builds of _wino.h's, _direct.h's and _pool.h's C that run; set
                    # below, with _DIRECT_AVAILABLE (see _isa)


cdef inline bint _wino_own_gemm(Py_ssize_t c) noexcept:
    """float32 Winograd products on cnnlab_wino_gemm (else BLAS): c input channels."""
    return _DIRECT_AVAILABLE and c <= _WINO_OWN_GEMM_CHANNELS


cdef struct Wino:
    Py_ssize_t n, c, k       # images, input channels, output channels
    Py_ssize_t h, w          # input plane
    Py_ssize_t ho, wo        # output plane
    Py_ssize_t ph, pw        # zero rows/columns before the input (may be negative)
    Py_ssize_t tw, plane     # tiles per row of tiles, tiles per image
    Py_ssize_t tiles         # n * plane
    Py_ssize_t block         # tiles per work item, a multiple of _LANES
    Py_ssize_t items         # work items


cdef Wino _wino_geometry(Py_ssize_t n, Py_ssize_t c, Py_ssize_t k, Py_ssize_t h, Py_ssize_t w,
                         Py_ssize_t ho, Py_ssize_t wo, Py_ssize_t ph, Py_ssize_t pw,
                         int n_threads, Py_ssize_t itemsize, bint own_gemm):
    """Tiles of 4x4 outputs, in blocks whose V and M buffers fit half of L2 (at least
    _LANES tiles; _WINO_OWN_BLOCK on our own GEMM kernel), and at least two blocks per
    thread when the batch allows."""
    cdef Wino p
    cdef Py_ssize_t fit, even
    p.n, p.c, p.k, p.h, p.w, p.ho, p.wo, p.ph, p.pw = n, c, k, h, w, ho, wo, ph, pw
    p.tw = (wo + 3) // 4
    p.plane = ((ho + 3) // 4) * p.tw
    p.tiles = n * p.plane
    even = (p.tiles + 2 * n_threads - 1) // (2 * n_threads)
    if own_gemm:
        fit = _WINO_OWN_BLOCK
    else:
        fit = _wino_block_bytes // max(1, 36 * (c + k) * itemsize)
        fit = min(max(fit, _WINO_MIN_BLOCK), _WINO_MAX_BLOCK)
    p.block = max(1, min(fit, even))
    p.block = ((p.block + _LANES - 1) // _LANES) * _LANES
    p.items = (p.tiles + p.block - 1) // p.block
    return p


cdef inline bint _winograd(const Conv* p) noexcept:
    """A convolution the Winograd kernels take: 3x3, stride 1, no dilation, one group, and
    enough channels on both sides for the GEMMs to pay for the transforms."""
    return (p.kh == 3 and p.kw == 3 and p.sh == 1 and p.sw == 1 and p.dh == 1
            and p.dw == 1 and p.groups == 1 and p.c_in >= _WINO_MIN_CHANNELS
            and p.c_out >= _WINO_MIN_CHANNELS and min(p.h, p.w, p.ho, p.wo) >= 4)


# The filters' 1-D transform, on _LANES filters side by side: input i of lane q is
# s[i*ss + q], output i goes to o[i*os + q]. Callers pass local arrays, so the compiler
# knows they do not overlap and vectorises the fixed-length loop over the lanes.

cdef inline void _g3(const floating* s, Py_ssize_t ss, floating* o,
                     Py_ssize_t os) noexcept nogil:
    """G g: 3 -> 6 (filters)."""
    cdef floating third = 1.0 / 3.0, c16 = 16.0 / 15.0, c8 = 8.0 / 15.0, c4 = 4.0 / 15.0
    cdef floating c2 = 2.0 / 15.0, c1 = 1.0 / 15.0
    cdef floating g0, g1, g2
    cdef Py_ssize_t q
    for q in range(_LANES):
        g0 = s[q]
        g1 = s[ss + q]
        g2 = s[2 * ss + q]
        o[q] = g0
        o[os + q] = third * (g0 + g1 + g2)
        o[2 * os + q] = third * (g1 - g0 - g2)
        o[3 * os + q] = -(c16 * g0 + c8 * g1 + c4 * g2)
        o[4 * os + q] = c1 * g0 - c2 * g1 + c4 * g2
        o[5 * os + q] = g2


cdef inline void _rows_out(const floating* d, Py_ssize_t rows, Py_ssize_t n, floating* dst,
                           Py_ssize_t stride) noexcept nogil:
    """dst[r*stride + q] = d[r*_LANES + q] for r < rows, q < n."""
    cdef Py_ssize_t r, q
    if n == _LANES:
        for r in range(rows):
            for q in range(_LANES):
                dst[r * stride + q] = d[r * _LANES + q]
        return
    for r in range(rows):
        for q in range(n):
            dst[r * stride + q] = d[r * _LANES + q]


cdef struct Lanes:
    Py_ssize_t n                 # lanes in use
    Py_ssize_t row[_LANES]       # first output row of each tile
    Py_ssize_t col[_LANES]       # first output column of each tile
    Py_ssize_t at[_LANES]        # index of the tile's first patch element, in its image's
                                 # first plane (negative or past the plane at borders)
    int r0[_LANES]               # patch rows [r0, r1) and columns [c0, c1) that lie
    int r1[_LANES]               # inside the plane
    int c0[_LANES]
    int c1[_LANES]
    Py_ssize_t img[_LANES]       # image of each tile


cdef inline void _lanes(const Wino* p, Py_ssize_t t0, Py_ssize_t n, Py_ssize_t top,
                        Py_ssize_t left, Py_ssize_t h, Py_ssize_t w, Py_ssize_t size,
                        Py_ssize_t channels, Lanes* ln) noexcept nogil:
    """Tiles t0 .. t0+n-1 and their patches: ``size`` x ``size`` elements of planes h x w
    (``channels`` per image), starting at row ``row - top``, column ``col - left``."""
    cdef Py_ssize_t q, t, r, c
    ln.n = n
    for q in range(n):
        t = t0 + q
        ln.img[q] = t // p.plane
        ln.row[q] = ((t % p.plane) // p.tw) * 4
        ln.col[q] = (t % p.tw) * 4
        r = ln.row[q] - top
        c = ln.col[q] - left
        ln.at[q] = ln.img[q] * channels * h * w + r * w + c
        ln.r0[q] = <int> min(max(-r, 0), size)
        ln.r1[q] = <int> max(min(h - r, size), ln.r0[q])
        ln.c0[q] = <int> min(max(-c, 0), size)
        ln.c1[q] = <int> max(min(w - c, size), ln.c0[q])


cdef inline void _edge_patch(const Lanes* ln, Py_ssize_t q, const floating* plane,
                             Py_ssize_t w, int size, floating* d) noexcept nogil:
    """d[i*size + j] = plane[at_q + i*w + j] for tile q's patch elements inside the plane;
    d's other elements are left as they are (zero: set once per chunk of lanes)."""
    cdef Py_ssize_t i, j
    cdef const floating* src = plane + ln.at[q]
    for i in range(ln.r0[q], ln.r1[q]):
        for j in range(ln.c0[q], ln.c1[q]):
            d[i * size + j] = src[i * w + j]


cdef void _wino_patches(const Wino* p, const floating* src, Py_ssize_t t0, Py_ssize_t nt,
                        floating* v, Py_ssize_t ldv) noexcept nogil:
    """Transformed input patches of the tiles t0 + q (q < nt), v[(c*36 + xi)*ldv + q]: for
    x (n, c, h, w) and the 6x6 patch d of a tile's outputs, (B^T d B)[xi]. What lies outside
    the plane is zero."""
    cdef floating d[36 * _LANES]
    cdef floating edge[36 * _LANES]      # own copies of the patches that leave the plane
    cdef const floating* at[_LANES]      # each tile's patch (_wino.h gathers them) ...
    cdef long ld[_LANES]                 # ... and its row stride
    cdef bint inside[_LANES]
    cdef Lanes ln
    cdef Py_ssize_t q0_, q0, q, c
    cdef const floating* plane
    for q0_ in range((nt + _LANES - 1) // _LANES):
        q0 = q0_ * _LANES
        _lanes(p, t0 + q0, min(<Py_ssize_t> _LANES, nt - q0), p.ph, p.pw, p.h, p.w, 6, p.c,
               &ln)
        memset(d, 0, sizeof(d))          # lanes past the last tile
        memset(edge, 0, sizeof(edge))    # what lies outside the plane, for every channel
        for q in range(ln.n):
            inside[q] = (ln.r0[q] == 0 and ln.c0[q] == 0 and ln.r1[q] == 6
                         and ln.c1[q] == 6)
            ld[q] = p.w if inside[q] else 6
        for c in range(p.c):
            plane = src + c * p.h * p.w
            for q in range(ln.n):
                if inside[q]:
                    at[q] = plane + ln.at[q]
                else:
                    _edge_patch(&ln, q, plane, p.w, 6, edge + q * 36)
                    at[q] = edge + q * 36
            if floating is float:         # lanes past nt: 0
                cnnlab_wino_gather6_float(at, ld, ln.n, d)
                cnnlab_wino_in_float(d, v + c * 36 * ldv + q0, ldv, _ISA)
            else:
                cnnlab_wino_gather6_double(at, ld, ln.n, d)
                cnnlab_wino_in_double(d, v + c * 36 * ldv + q0, ldv, _ISA)


cdef void _wino_output(const Wino* p, const floating* m, Py_ssize_t ldm, Py_ssize_t t0,
                       Py_ssize_t nt, const floating* bias, floating* y) noexcept nogil:
    """y[img, k, row + i, col + j] = (A^T M A)[i, j] + bias[k] for the tiles t0 + q
    (q < nt), M[xi] = m[(k*36 + xi)*ldm + q]; clipped to the output plane."""
    cdef floating o[16 * _LANES]
    cdef floating* dst[_LANES]
    cdef Lanes ln
    cdef Py_ssize_t q0_, q0, q, k, howo = p.ho * p.wo
    cdef floating b
    for q0_ in range((nt + _LANES - 1) // _LANES):
        q0 = q0_ * _LANES
        _lanes(p, t0 + q0, min(<Py_ssize_t> _LANES, nt - q0), 0, 0, p.ho, p.wo, 4, p.k, &ln)
        for k in range(p.k):              # (all _LANES lanes of m: see _wino_conv)
            if floating is float:
                cnnlab_wino_out_float(m + k * 36 * ldm + q0, ldm, o, _ISA)
            else:
                cnnlab_wino_out_double(m + k * 36 * ldm + q0, ldm, o, _ISA)
            b = 0 if bias == NULL else bias[k]
            for q in range(ln.n):
                dst[q] = y + k * howo + ln.at[q]
            if floating is float:
                cnnlab_wino_scatter4_float(o, dst, p.wo, ln.r1, ln.c1, ln.n, b)
            else:
                cnnlab_wino_scatter4_double(o, dst, p.wo, ln.r1, ln.c1, ln.n, b)


cdef void _wino_filters_of(const floating* wt, Py_ssize_t k, Py_ssize_t c, bint flip,
                           floating* u, Py_ssize_t o) noexcept nogil:
    """u[(xi*k + o)*c + i] = (G g G^T)[xi] for the filter g of output o, input i: wt[o, i]
    (wt is (k, c, 3, 3)), or when ``flip`` wt[i, o] rotated by 180 degrees (wt is
    (c, k, 3, 3): the input gradient's convolution)."""
    cdef floating g[9 * _LANES]
    cdef floating e[18 * _LANES]
    cdef floating f[36 * _LANES]
    cdef Py_ssize_t i0_, i0, q, n, a
    memset(g, 0, sizeof(g))              # lanes past the last filter stay zero
    for i0_ in range((c + _LANES - 1) // _LANES):
        i0 = i0_ * _LANES
        n = min(<Py_ssize_t> _LANES, c - i0)
        for q in range(n):
            for a in range(9):
                if flip:
                    g[a * _LANES + q] = wt[((i0 + q) * k + o) * 9 + 8 - a]
                else:
                    g[a * _LANES + q] = wt[(o * c + i0 + q) * 9 + a]
        for a in range(3):                # along each row a: g[a, .] -> e[a, xj]
            _g3(g + a * 3 * _LANES, _LANES, e + a * 6 * _LANES, _LANES)
        for a in range(6):                # along each column xj: e[., xj] -> f[xi, xj]
            _g3(e + a * _LANES, 6 * _LANES, f + a * _LANES, 6 * _LANES)
        _rows_out(f, 36, n, u + o * c + i0, k * c)


cdef int _wino_conv(Wino p, const floating* x, const floating* wt, bint flip, floating* u,
                    const floating* bias, floating* y, int n_threads) except -1:
    """y (n, k, ho, wo) = the convolution of x (n, c, h, w) with the filters wt (see
    _wino_filters_of; transformed into u (36, k, c) first), plus bias (k,) or NULL."""
    cdef Py_ssize_t item, t0, nt, xi, o, r
    cdef Py_ssize_t ldb = p.block
    cdef int failed = 0
    cdef int* failed_p = &failed
    cdef int threads = <int> min(<Py_ssize_t> n_threads, p.items)
    cdef bint own_gemm = _wino_own_gemm(p.c)
    cdef floating* v
    cdef floating* m
    if p.items == 0:
        return 0
    v = m = NULL                        # thread-private below; set here to quiet -Wall
    with nogil, parallel(num_threads=threads):
        v = <floating*> malloc(36 * p.c * ldb * sizeof(floating))
        m = <floating*> malloc(36 * p.k * ldb * sizeof(floating))
        if v == NULL or m == NULL:
            failed_p[0] = 1
        for o in prange(p.k, schedule='static'):     # the filters, then (after the loop's
            _wino_filters_of(wt, p.k, p.c, flip, u, o)   # barrier) the tiles
        for item in prange(p.items, schedule='dynamic'):
            if v == NULL or m == NULL:
                continue
            t0 = item * ldb
            nt = min(ldb, p.tiles - t0)
            _wino_patches(&p, x, t0, nt, v, ldb)
            for xi in range(36):
                if floating is float and own_gemm:
                    cnnlab_wino_gemm(u + xi * p.k * p.c, v + xi * ldb, m + xi * ldb, p.k,
                                     p.c, nt, 36 * ldb, 36 * ldb, _ISA >= 2)
                else:
                    _gemm(False, False, <int> p.k, <int> nt, <int> p.c, <floating> 1,
                          u + xi * p.k * p.c, <int> p.c, v + xi * ldb, <int> (36 * ldb),
                          <floating> 0, m + xi * ldb, <int> (36 * ldb))
            if nt % _LANES:               # the output transform reads all of the last
                for r in range(36 * p.k):  # chunk's lanes: zeros past the last tile
                    _zero(m + r * ldb + nt, _LANES - nt % _LANES)
            _wino_output(&p, m, ldb, t0, nt, bias, y)
        free(v)
        free(m)
    if failed:
        raise MemoryError("conv2d: cannot allocate the Winograd buffers")
    return 0


# --------------------------------------------------------------------------- direct

# A direct convolution for layers with few input channels, and the weight gradient of such
# layers and of wide rows; float32 and float64, AVX2+FMA and AVX-512F (see _direct.h, which
# also holds the Winograd GEMM's own float kernel). The C is written once for both types
# and both instruction sets; _isa picks the build.
cdef extern from "_direct.h":
    int cnnlab_isa() nogil
    void cnnlab_wino_gemm(const float* u, const float* v, float* m, long k, long c, long nt,
                          long ldv, long ldm, int wide) nogil
    void cnnlab_direct_rows_float(const float* x, long c, long h, long w, const float* wk,
                                  const float* bias, long k, long kh, long kw, long sh,
                                  long sw, long ph, long pw, long ho, long wo, float* y,
                                  long oh0, long oh1, float* pad, long ps, int wide) nogil
    void cnnlab_direct_rows_double(const double* x, long c, long h, long w, const double* wk,
                                   const double* bias, long k, long kh, long kw, long sh,
                                   long sw, long ph, long pw, long ho, long wo, double* y,
                                   long oh0, long oh1, double* pad, long ps, int wide) nogil
    void cnnlab_direct_gw_rows_float(const float* x, long c, long h, long w, const float* gy,
                                     long k, long kh, long kw, long sh, long sw, long ph,
                                     long pw, long ho, long wo, long oh0, long oh1,
                                     float* pad, long ps, float* part) nogil
    void cnnlab_direct_gw_rows_double(const double* x, long c, long h, long w,
                                      const double* gy, long k, long kh, long kw, long sh,
                                      long sw, long ph, long pw, long ho, long wo, long oh0,
                                      long oh1, double* pad, long ps, double* part) nogil


_CPU_ISA = cnnlab_isa()    # 2 AVX-512F, 1 AVX2+FMA, 0 neither
_DIRECT_AVAILABLE = _CPU_ISA > 0
_ISA = _CPU_ISA


def _isa(level=None):
    """The builds of the hand-vectorised C that run (2 AVX-512F, 1 AVX2+FMA, 0 portable C):
    Winograd's tile transforms (_wino.h) and the pooling rows (_pool.h: AVX2 at 1 and 2)
    take this level; the direct kernels and cnnlab_wino_gemm (_direct.h, which need AVX2)
    their AVX-512 build at 2, else AVX2. ``level`` (for the tests) switches down to a
    build and back, never above what this CPU runs."""
    global _ISA
    if level is not None:
        _ISA = max(0, min(int(level), _CPU_ISA))
    return _ISA


cdef Py_ssize_t _DIRECT_MAX_CHANNELS = 4
cdef Py_ssize_t _DIRECT_PAD_BYTES = 256 * 1024   # a thread's padded rows, at most


cdef inline bint _direct_dtype(object dtype) noexcept:
    return _DIRECT_AVAILABLE and (dtype == np.float32 or dtype == np.float64)


cdef inline bint _direct(const Conv* p, object dtype) noexcept:
    """A forward convolution the direct kernel takes (see _direct.h)."""
    return (_direct_dtype(dtype) and p.groups == 1 and p.dh == 1 and p.dw == 1
            and p.c_in <= _DIRECT_MAX_CHANNELS and p.c_out >= 4 and p.wo >= 8)


# The weight-gradient kernel also beats im2col on wider layers with rows of 32 outputs or
# more, up to 32 input channels (float32, 2 threads, ms, im2col -> direct: 16->32 @32 2.77
# -> 2.20, 32->32 @32 4.91 -> 4.12, 16->16 @64 6.76 -> 4.85); not on narrow rows (32->64
# @16 2.38 -> 3.21: a block's sums cost more than its 2 vectors a row) or more channels
# (64->64 @32 17.4 -> 18.2, 128->128 @28 13.5 -> 22.4). Those were an AVX2 CPU (AMD Zen 3,
# whose BLAS runs AVX2 kernels); where the CPU has AVX-512, so has BLAS, and im2col wins
# (Xeon, 2 threads, 16->32 @32: 2.46 ms direct, 1.91 im2col), so wide rows stay there.
# The weight gradient runs the AVX2 build on AVX-512 CPUs too (_direct.h): at 16 lanes its
# seven unaligned loads per twelve FMAs split cache lines (3->16 @64 float32 1.02 AVX2,
# 1.21 AVX-512, 0.95-0.97 im2col; float64 1.62, 1.77, 1.83-1.96).
cdef Py_ssize_t _DIRECT_GW_MAX_CHANNELS = 32
cdef Py_ssize_t _DIRECT_GW_MIN_WIDTH = 32


cdef inline bint _direct_gw(const Conv* p, object dtype) noexcept:
    """A weight gradient the direct kernel takes: the forward's layers, and wide rows
    (not where the AVX-512 builds run: see above)."""
    return _direct(p, dtype) or (
        _ISA == 1 and dtype == np.float32 and p.groups == 1 and p.dh == 1
        and p.dw == 1 and p.c_in <= _DIRECT_GW_MAX_CHANNELS and p.wo >= _DIRECT_GW_MIN_WIDTH)


# The input gradient of a stride-1 layer into 3 or 4 channels is the forward convolution of
# grad_output with the flipped kernel, into those channels: the direct kernel with 3 or 4 of
# a block's 4 output channels used. Measured (2 threads, batch 32, ms, im2col -> direct):
# float32 3->16 @64 3.29 -> 2.18, 4->16 @64 3.36 -> 2.03, 3->16 @28 0.62 -> 0.58; float64
# 5.45 -> 3.87, 5.64 -> 4.65, 0.79 -> 0.74. Not at 1 or 2 channels (float64 1->16 @64 1.86
# -> 3.83, 2->16 4.36 -> 4.84) nor from more than 16 (BLAS's GEMM, K = C_out, catches up:
# float32 3->64 @32 1.18 -> 1.29, float64 3->32 @32 2.09 -> 2.26).
cdef Py_ssize_t _DIRECT_GI_MIN_CHANNELS = 3
cdef Py_ssize_t _DIRECT_GI_MAX_OUT = 16


cdef inline bint _direct_gi(const Conv* p, object dtype) noexcept:
    return (_direct_dtype(dtype) and p.groups == 1 and p.sh == 1 and p.sw == 1
            and p.dh == 1 and p.dw == 1
            and _DIRECT_GI_MIN_CHANNELS <= p.c_in <= _DIRECT_MAX_CHANNELS
            and p.c_out <= _DIRECT_GI_MAX_OUT and p.ph < p.kh and p.pw < p.kw and p.w >= 8)


cdef Conv _flipped(const Conv* p):
    """The forward convolution that computes p's input gradient (stride 1, no dilation, one
    group): grad_output (n, c_out, ho, wo) -> (n, c_in, h, w), padding k - 1 - p."""
    cdef Conv q = p[0]
    q.c_in, q.h, q.w, q.c_out, q.ho, q.wo = p.c_out, p.ho, p.wo, p.c_in, p.h, p.w
    q.cg, q.og = q.c_in, q.c_out
    q.ph, q.pw = p.kh - 1 - p.ph, p.kw - 1 - p.pw
    q.k = q.cg * q.kh * q.kw
    q.direct = False
    return q


cdef inline void _direct_item(const Conv* p, const floating* x, const floating* wk,
                              const floating* b, floating* out, bint grad_weight,
                              Py_ssize_t img, Py_ssize_t r0, Py_ssize_t per, floating* pad,
                              Py_ssize_t ps) noexcept nogil:
    """Output rows [r0, r0 + per) of image img (see _direct_run)."""
    cdef Py_ssize_t r1 = min(r0 + per, p.ho)
    cdef Py_ssize_t xs = p.c_in * p.h * p.w, ys = p.c_out * p.ho * p.wo
    if floating is float:
        if grad_weight:
            cnnlab_direct_gw_rows_float(x + img * xs, p.c_in, p.h, p.w, wk + img * ys,
                                        p.c_out, p.kh, p.kw, p.sh, p.sw, p.ph, p.pw, p.ho,
                                        p.wo, r0, r1, pad, ps, out)
        else:
            cnnlab_direct_rows_float(x + img * xs, p.c_in, p.h, p.w, wk, b, p.c_out, p.kh,
                                     p.kw, p.sh, p.sw, p.ph, p.pw, p.ho, p.wo, out + img * ys,
                                     r0, r1, pad, ps, _ISA >= 2)
    else:
        if grad_weight:
            cnnlab_direct_gw_rows_double(x + img * xs, p.c_in, p.h, p.w, wk + img * ys,
                                         p.c_out, p.kh, p.kw, p.sh, p.sw, p.ph, p.pw, p.ho,
                                         p.wo, r0, r1, pad, ps, out)
        else:
            cnnlab_direct_rows_double(x + img * xs, p.c_in, p.h, p.w, wk, b, p.c_out, p.kh,
                                      p.kw, p.sh, p.sw, p.ph, p.pw, p.ho, p.wo,
                                      out + img * ys, r0, r1, pad, ps, _ISA >= 2)


cdef int _direct_run(Conv p, const floating* x, const floating* wk, const floating* b,
                     floating* out, Py_ssize_t out_stride, bint grad_weight,
                     int n_threads) except -1:
    """The direct kernel's work items (image, block of output rows), at least a few per
    thread, each block's padded rows within _DIRECT_PAD_BYTES. Forward: out = y (N, C_out,
    H_out, W_out) = conv(x) + b (wk: the laid-out weights). Weight gradient (wk: grad_output,
    b unused): the items in _direct_runs(items, n_threads) runs of consecutive items, run
    j adding into out + j * out_stride; returns how many runs. A run goes to whichever
    thread is free, and its sum does not depend on which thread that is."""
    cdef Py_ssize_t lanes = 64 // sizeof(floating)  # of an AVX-512 register (AVX2's divide it)
    cdef Py_ssize_t ps = (p.wo + lanes - 1) // lanes * lanes + (p.kw - 1) // p.sw
    cdef Py_ssize_t rs = p.sw * ps, budget = _DIRECT_PAD_BYTES // sizeof(floating)
    cdef Py_ssize_t parts = max(1, min(p.ho, (4 * n_threads + p.n - 1) // max(1, p.n)))
    cdef Py_ssize_t per = min((p.ho + parts - 1) // parts,
                              max(1, (budget // (p.c_in * rs) - p.kh) // p.sh + 1))
    cdef Py_ssize_t blocks = (p.ho + per - 1) // per, items = p.n * blocks, item, j
    cdef Py_ssize_t runs = _direct_runs(items, n_threads)
    cdef int failed = 0
    cdef int* failed_p = &failed
    cdef floating* pad
    pad = NULL                          # thread-private below; set here to quiet -Wall
    with nogil, parallel(num_threads=<int> min(<Py_ssize_t> n_threads, items)):
        pad = <floating*> malloc(p.c_in * ((per - 1) * p.sh + p.kh) * rs * sizeof(floating))
        if pad == NULL:
            failed_p[0] = 1
        if grad_weight:     # a partial sum per run: a fixed split, a fixed order of sums
            for j in prange(runs, schedule='dynamic'):
                if pad != NULL:
                    for item in range(j * items // runs, (j + 1) * items // runs):
                        _direct_item(&p, x, wk, b, out + j * out_stride, True,
                                     item // blocks, (item % blocks) * per, per, pad, ps)
        else:               # each item its own outputs: to whichever thread is free
            for item in prange(items, schedule='dynamic'):
                if pad != NULL:
                    _direct_item(&p, x, wk, b, out, False, item // blocks,
                                 (item % blocks) * per, per, pad, ps)
        free(pad)
    if failed:
        raise MemoryError("conv2d: cannot allocate the direct kernel's row buffer")
    return <int> runs if grad_weight else 0


# The weight gradient's runs: 4 per thread, so that a thread slowed by the machine hands
# the others its later runs (a static split of the items over the threads waited for it).
cdef Py_ssize_t _DIRECT_GW_RUNS = 4


cdef inline Py_ssize_t _direct_runs(Py_ssize_t items, int n_threads) noexcept nogil:
    return max(1, min(items, _DIRECT_GW_RUNS * n_threads))


cdef int _direct_flat(Conv p, const floating[::1] x, const floating[::1] wk,
                      const floating[::1] b, floating[::1] out, Py_ssize_t out_stride,
                      bint grad_weight, int n_threads) except -1:
    """_direct_run on flat arrays (x, wk, out with elements: p.n > 0; b may be empty), on
    n_threads: the count the caller sized out's partial sums for."""
    cdef const floating* xp = &x[0]
    cdef const floating* wp = &wk[0]
    cdef const floating* bp = NULL
    cdef floating* op = &out[0]
    if b.shape[0]:
        bp = &b[0]
    return _direct_run(p, xp, wp, bp, op, out_stride, grad_weight, n_threads)


def _direct_forward(x, weight, bias, Conv p):
    """conv2d on the direct kernel: weights (C_out, C_in, kH, kW) laid out as
    (C_out/4, C_in, kH, kW, 4) and bias padded, both with zeros past C_out."""
    k4 = (p.c_out + 3) // 4 * 4
    lanes = 64 // x.itemsize     # the widest build's (_direct_run's row buffers)
    check_buffer("conv2d: the direct kernel's padded rows",
                 (p.c_in, p.kh, (p.wo + lanes) * p.sw + p.kw), x.itemsize)
    wk = np.zeros((k4,) + weight.shape[1:], x.dtype)
    wk[:p.c_out] = weight
    wk = np.ascontiguousarray(wk.reshape((k4 // 4, 4) + weight.shape[1:])
                              .transpose(0, 2, 3, 4, 1)).reshape(-1)
    b = np.zeros(k4, x.dtype)
    if bias is not None:
        b[:p.c_out] = bias
    y = np.empty((p.n, p.c_out, p.ho, p.wo), x.dtype)
    if p.n:
        args = (x.reshape(-1), wk, b, y.reshape(-1), 0, False, _num_threads())
        if x.dtype == np.float32:
            _direct_flat[float](p, *args)
        else:
            _direct_flat[double](p, *args)
    return y


def _direct_grad_input(grad_output, weight, bias, Conv p):
    """conv2d_grad_input on the direct kernel: the forward convolution of grad_output with
    weight flipped in both axes and transposed to (C_in, C_out, kH, kW), plus bias."""
    flipped = np.ascontiguousarray(weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
    return _direct_forward(grad_output, flipped, bias, _flipped(&p))


def _direct_grad_weight(grad_output, x, Conv p):
    """conv2d_grad_weight on the direct kernel's layers: a partial sum per run of work items
    (runs, C_out, C_in, kH, kW), added in run order. One thread count sizes the partial
    sums and runs the kernel (another Python thread may change the setting between)."""
    nt = _num_threads()
    part = np.zeros((_DIRECT_GW_RUNS * max(1, nt), p.c_out, p.c_in, p.kh, p.kw), x.dtype)
    runs = 1
    if p.n:
        args = (x.reshape(-1), grad_output.reshape(-1), np.empty(0, x.dtype),
                part.reshape(-1), part[0].size, True, nt)
        if x.dtype == np.float32:
            runs = _direct_flat[float](p, *args)
        else:
            runs = _direct_flat[double](p, *args)
    gw = part[0]
    for t in range(1, runs):
        gw += part[t]
    return gw


# Typed entry points: C-contiguous memoryviews (``const`` lets read-only arrays in) checked
# by Cython on the way in, then raw pointers. A pointer is only taken of a non-empty view.

cdef inline const floating* _ptr(const floating[:, :, :, ::1] a) noexcept:
    if a.shape[0] == 0 or a.shape[1] == 0 or a.shape[2] == 0 or a.shape[3] == 0:
        return NULL
    return &a[0, 0, 0, 0]


cdef inline floating* _wptr(floating[:, :, :, ::1] a) noexcept:
    if a.shape[0] == 0 or a.shape[1] == 0 or a.shape[2] == 0 or a.shape[3] == 0:
        return NULL
    return &a[0, 0, 0, 0]


cdef int _conv2d(Conv p, const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] wt,
                 const floating[::1] b, floating[:, :, :, ::1] y, int nt,
                 bint own=False) except -1:
    return _conv2d_run(p, _ptr(x), _ptr(wt), &b[0] if b.shape[0] else NULL, _wptr(y), nt,
                       own)


cdef int _conv2d_grad_input(Conv p, const floating[:, :, :, ::1] gy,
                            const floating[:, :, :, ::1] wt, const floating[::1] b,
                            floating[:, :, :, ::1] gx, int nt) except -1:
    return _conv2d_grad_input_run(p, _ptr(gy), _ptr(wt), &b[0] if b.shape[0] else NULL,
                                  _wptr(gx), nt)


cdef int _conv2d_grad_weight(Conv p, const floating[:, :, :, ::1] gy,
                             const floating[:, :, :, ::1] x, floating[:, :, :, ::1] part,
                             floating[:, :, :, ::1] gw, int nt) except -1:
    return _conv2d_grad_weight_run(p, _ptr(gy), _ptr(x), _wptr(part), _wptr(gw), nt)


cdef int _winograd_conv(Wino q, const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] wt,
                        bint flip, const floating[::1] b, floating[:, :, ::1] u,
                        floating[:, :, :, ::1] y, int nt) except -1:
    return _wino_conv(q, _ptr(x), _ptr(wt), flip, &u[0, 0, 0], &b[0] if b.shape[0] else NULL,
                      _wptr(y), nt)


def _algorithm(x_shape, Py_ssize_t c_out, spec, dtype=np.float32):
    """'winograd', 'direct' or 'im2col': how conv2d computes a convolution of input shape
    ``x_shape`` (N, C_in, H, W) into ``c_out`` channels (its input gradient:
    ``_grad_input_algorithm``; its weight gradient: ``_direct_gw``)."""
    cdef Conv p = _conv_geometry(tuple(x_shape), c_out, spec)
    if _winograd(&p):
        return "winograd"
    return "direct" if _direct(&p, np.dtype(dtype)) else "im2col"


def _grad_input_algorithm(x_shape, Py_ssize_t c_out, spec, dtype=np.float32):
    """'winograd', 'direct' or 'im2col': how conv2d_grad_input computes that layer's input
    gradient (Winograd when the forward uses it)."""
    cdef Conv p = _conv_geometry(tuple(x_shape), c_out, spec)
    if _winograd(&p):
        return "winograd"
    return "direct" if _direct_gi(&p, np.dtype(dtype)) else "im2col"


def _winograd_forward(x, weight, bias, bint flip, Py_ssize_t c_out, Py_ssize_t ho,
                      Py_ssize_t wo, Py_ssize_t ph, Py_ssize_t pw):
    """The Winograd convolution of x (N, C, H, W) into (N, c_out, ho, wo): with weight
    (c_out, C, 3, 3), or with (C, c_out, 3, 3) flipped and transposed when ``flip``."""
    nt = _num_threads()
    own = x.dtype == np.float32 and _wino_own_gemm(x.shape[1])
    cdef Wino q = _wino_geometry(x.shape[0], x.shape[1], c_out, x.shape[2], x.shape[3], ho,
                                 wo, ph, pw, nt, x.itemsize, own)
    y = np.empty((q.n, q.k, q.ho, q.wo), x.dtype)
    u = np.empty((36, q.k, q.c), x.dtype)
    b = np.empty(0, x.dtype) if bias is None else bias
    # On our own GEMM kernel no BLAS call is made, so BLAS's pool is left alone: setting it
    # to one thread and back costs more than the call (OpenBLAS's woken threads spin).
    with (_unguarded if own else _one_blas_thread):
        if x.dtype == np.float32:
            _winograd_conv[float](q, x, weight, flip, b, u, y, nt)
        else:
            _winograd_conv[double](q, x, weight, flip, b, u, y, nt)
    return y


def conv2d(x, weight, bias, spec):
    """y (N, C_out, H_out, W_out) = conv2d of x (N, C_in, H, W) with weight
    (C_out, C_in/groups, kH, kW) plus bias (C_out,) or None."""
    cdef Conv p = _conv_geometry(tuple(x.shape), weight.shape[0], spec)
    check_gemm_sizes(spec, p.c_in, p.c_out)
    if _winograd(&p):
        return _winograd_forward(x, weight, bias, False, p.c_out, p.ho, p.wo, p.ph, p.pw)
    if _direct(&p, x.dtype):
        return _direct_forward(x, weight, bias, p)
    _tiles_forward(&p, x.dtype.itemsize)
    _check_columns(&p, x.dtype.itemsize)
    y = np.empty((p.n, p.c_out, p.ho, p.wo), x.dtype)
    b = np.zeros(p.c_out, x.dtype) if bias is None else bias
    nt = _num_threads()
    if _patch_own_forward(&p, x.dtype):
        _conv2d[float](p, x, weight, b, y, nt, True)
        return y
    with _blas_guard(&p):
        if x.dtype == np.float32:
            _conv2d[float](p, x, weight, b, y, nt)
        else:
            _conv2d[double](p, x, weight, b, y, nt)
    return y


def conv2d_grad_input(grad_output, weight, spec, bias=None):
    """Gradient (N, C_in, H, W) of conv2d with respect to its input; grad_output is
    (N, C_out, H_out, W_out), weight (C_out, C_in/groups, kH, kW); plus bias (C_in,) where
    given (conv_transpose2d's), added as each cell is written."""
    h, w = spec.in_size
    cdef Conv p = _conv_geometry((grad_output.shape[0], weight.shape[1] * spec.groups, h, w),
                                 weight.shape[0], spec)
    check_gemm_sizes(spec, p.c_in, p.c_out)
    if _winograd(&p):          # the forward convolution with the flipped kernel
        return _winograd_forward(grad_output, weight, bias, True, p.c_in, p.h, p.w,
                                 2 - p.ph, 2 - p.pw)
    if _direct_gi(&p, grad_output.dtype):
        return _direct_grad_input(grad_output, weight, bias, p)
    _tiles_grad_input(&p, grad_output.dtype.itemsize)
    b = np.empty(0, grad_output.dtype) if bias is None else bias
    if _patches(&p):
        return _patch_grad_input(grad_output, weight, b, p)
    _check_columns(&p, grad_output.dtype.itemsize)
    gx = np.empty((p.n, p.c_in, p.h, p.w), grad_output.dtype)
    nt = _num_threads()
    with _blas_guard(&p):
        if grad_output.dtype == np.float32:
            _conv2d_grad_input[float](p, grad_output, weight, b, gx, nt)
        else:
            _conv2d_grad_input[double](p, grad_output, weight, b, gx, nt)
    return gx


# Input gradients whose windows tile the plane (kernel = stride, no padding, no dilation:
# the transposed convolution that upsamples by its kernel, 2x2 stride 2 in U-Nets and the
# course lab) take each input cell from one product of one window: per tile of rows,
# col = W^T gy, and col is scattered into gx, each cell written once, where col2im zeroes
# the plane and adds window by window. Float32 tiles whose columns come in whole AVX
# registers (W_out a multiple of 8) multiply on cnnlab_wino_gemm, whose thin products skip
# BLAS's packing; a work item is a tile, so a batch of one still uses the threads.
# Against col2im, each build in its own processes (5 each, alternated, 2 threads, medians
# of 200 calls, ms), lab convT 64->32 2x2/2 @8 batch 32: float32 forward 0.83 -> 0.56,
# backward (whose input gradient is the forward on cnnlab_wino_gemm) 1.33 -> 0.99;
# float64 1.08 -> 0.88 and 2.04 -> 1.96.

cdef inline bint _patches(const Conv* p) noexcept:
    """conv2d's windows tile the input (rows and columns past the last window: output
    padding of a transposed convolution, which get 0)."""
    return (p.kh == p.sh and p.kw == p.sw and p.ph == 0 and p.pw == 0 and p.dh == 1
            and p.dw == 1 and not p.direct)


cdef inline bint _patch_own_gemm(const Conv* p, object dtype) noexcept:
    """The input gradient's products (k x og by og x columns) on cnnlab_wino_gemm."""
    return dtype == np.float32 and _wino_own_gemm(p.og) and p.wo % 8 == 0


cdef inline bint _patch_own_forward(const Conv* p, object dtype) noexcept:
    """The forward's (og x k by k x columns; the input gradient of a transposed
    convolution whose windows tile its output) on cnnlab_wino_gemm."""
    return (dtype == np.float32 and _patches(p) and _wino_own_gemm(p.k)
            and p.wo % 8 == 0)


cdef int _patch_grad_input_run(Conv p, const floating* gy, const floating* wt,
                               const floating* wtt, const floating* b, floating* gx,
                               int n_threads) except -1:
    """gx (n, c_in, h, w) from gy (n, c_out, ho, wo) when _patches(p): wt (c_out, cg, kh,
    kw); wtt its groups' transposes (groups, k, og) for cnnlab_wino_gemm, or NULL (BLAS);
    plus b[c] in every cell of channel c (b: (c_in,), or NULL)."""
    cdef Py_ssize_t items = <Py_ssize_t> p.n * p.groups * p.tiles, item
    cdef Py_ssize_t hw = <Py_ssize_t> p.h * p.w, hwo = <Py_ssize_t> p.ho * p.wo
    cdef Py_ssize_t n, g, t, r0, nr, cols, c, r, i, j, q, row0, wpad = p.wo * p.kw
    cdef int failed = 0
    cdef int* failed_p = &failed
    cdef int nt = <int> min(n_threads, items)
    cdef floating* col
    cdef floating* gxc
    cdef floating* dst
    cdef const floating* src
    cdef const floating* gyt
    cdef floating bias
    if items == 0:
        return 0
    col = NULL                          # thread-private below; set here to quiet -Wall
    with nogil, parallel(num_threads=nt):
        col = <floating*> malloc(max(1, p.k * p.rows * p.wo) * sizeof(floating))
        if col == NULL:
            failed_p[0] = 1
        for item in prange(items, schedule='dynamic'):
            if col == NULL:
                continue
            n = item // (p.groups * p.tiles)
            g = (item // p.tiles) % p.groups
            t = item % p.tiles
            r0 = t * p.rows
            nr = min(p.rows, p.ho - r0)
            cols = nr * p.wo
            gyt = gy + (n * p.c_out + g * p.og) * hwo + r0 * p.wo
            if floating is float:
                if wtt != NULL:
                    cnnlab_wino_gemm(wtt + g * p.k * p.og, gyt, col, p.k, p.og, cols, hwo,
                                     cols, _ISA >= 2)
            if wtt == NULL:
                _gemm(True, False, p.k, cols, p.og, <floating> 1, wt + g * p.og * p.k,
                      p.k, gyt, hwo, <floating> 0, col, cols)
            # row (c, i, j) of col, column (r, q) -> gx[n, g*cg + c, (r0 + r)*kh + i, q*kw + j]
            for c in range(p.cg):
                gxc = gx + (n * p.c_in + g * p.cg + c) * hw
                bias = 0 if b == NULL else b[g * p.cg + c]
                for r in range(nr):
                    for i in range(p.kh):
                        dst = gxc + ((r0 + r) * p.kh + i) * p.w
                        src = col + (c * p.kh + i) * p.kw * cols + r * p.wo
                        if p.kw == 2:
                            for q in range(p.wo):
                                dst[2 * q] = src[q] + bias
                                dst[2 * q + 1] = src[cols + q] + bias
                        else:
                            for j in range(p.kw):
                                for q in range(p.wo):
                                    dst[q * p.kw + j] = src[j * cols + q] + bias
                        for q in range(wpad, p.w):
                            dst[q] = bias
                if r0 + nr == p.ho:     # the rows past the last window
                    row0 = p.ho * p.kh
                    for q in range(row0 * p.w, hw):
                        gxc[q] = bias
        free(col)
    if failed:
        raise MemoryError("conv2d_grad_input: cannot allocate the column buffer")
    return 0


def _patch_grad_input(grad_output, weight, b, Conv p):
    """conv2d_grad_input when _patches(p) (p's tiles set), plus b (C_in,) unless empty."""
    _check_columns(&p, grad_output.dtype.itemsize)
    gx = np.empty((p.n, p.c_in, p.h, p.w), grad_output.dtype)
    nt = _num_threads()
    if _patch_own_gemm(&p, grad_output.dtype):     # no BLAS call: its pool left alone
        wtt = np.ascontiguousarray(weight.reshape(p.groups, p.og, p.k).transpose(0, 2, 1))
        _patch_grad_input_typed[float](p, grad_output, weight, wtt, b, gx, nt)
        return gx
    none = np.empty((0, 0, 0), grad_output.dtype)
    with _blas_guard(&p):
        if grad_output.dtype == np.float32:
            _patch_grad_input_typed[float](p, grad_output, weight, none, b, gx, nt)
        else:
            _patch_grad_input_typed[double](p, grad_output, weight, none, b, gx, nt)
    return gx


cdef int _patch_grad_input_typed(Conv p, const floating[:, :, :, ::1] gy,
                                 const floating[:, :, :, ::1] wt,
                                 const floating[:, :, ::1] wtt, const floating[::1] b,
                                 floating[:, :, :, ::1] gx, int nt) except -1:
    """wtt empty: the products through BLAS; b empty: no bias."""
    return _patch_grad_input_run(p, _ptr(gy), _ptr(wt),
                                 &wtt[0, 0, 0] if wtt.shape[0] else NULL,
                                 &b[0] if b.shape[0] else NULL, _wptr(gx), nt)


def conv2d_grad_weight(grad_output, x, spec):
    """Gradient (C_out, C_in/groups, kH, kW) of conv2d with respect to its weight;
    grad_output is (N, C_out, H_out, W_out), x (N, C_in, H, W). Sums of products only (the
    direct kernel's layers, else im2col + GEMM): a weight whose products are all zero gets
    exactly 0, as in torch (Winograd's transforms would leave rounding noise there, which
    Adam turns into full-size steps)."""
    cdef Conv p = _conv_geometry(tuple(x.shape), grad_output.shape[1], spec)
    check_gemm_sizes(spec, p.c_in, p.c_out)
    if _direct_gw(&p, x.dtype):
        return _direct_grad_weight(grad_output, x, p)
    _tiles_grad_weight(&p, x.dtype.itemsize)
    _check_columns(&p, x.dtype.itemsize)
    gw = np.empty((p.c_out, p.cg, p.kh, p.kw), x.dtype)
    nt = _num_threads()
    # One zeroed partial weight per thread the kernel may start: (threads, groups, K, og).
    part = np.zeros((max(1, min(nt, p.n * p.groups * p.tiles)), p.groups, p.k, p.og),
                    x.dtype)
    with _blas_guard(&p):
        if x.dtype == np.float32:
            _conv2d_grad_weight[float](p, grad_output, x, part, gw, nt)
        else:
            _conv2d_grad_weight[double](p, grad_output, x, part, gw, nt)
    return gw


# --------------------------------------------------------------------------- ReLU

# Element-wise, memory-bound: one pass in chunks of _RELU_CHUNK elements over this module's
# threads (an array under two chunks stays on the calling thread: waking the pool costs
# more). As torch: the forward keeps NaN and -0.0 (``0 if x < 0 else x``), the backward is
# ``0 if y <= 0 else grad`` (threshold_backward: a NaN output passes its gradient).
cdef Py_ssize_t _RELU_CHUNK = 1 << 15


def relu(x):
    """max(x, 0) of a C-contiguous float array of any shape; a new array."""
    y = np.empty_like(x)
    if x.dtype == np.float32:
        _relu[float](x.reshape(-1), None, y.reshape(-1), _num_threads())
    else:
        _relu[double](x.reshape(-1), None, y.reshape(-1), _num_threads())
    return y


def relu_backward(grad_output, output):
    """0 where output <= 0, else grad_output (output: relu's result, same shape)."""
    gx = np.empty_like(grad_output)
    if gx.dtype == np.float32:
        _relu[float](grad_output.reshape(-1), output.reshape(-1), gx.reshape(-1),
                     _num_threads())
    else:
        _relu[double](grad_output.reshape(-1), output.reshape(-1), gx.reshape(-1),
                      _num_threads())
    return gx


cdef int _relu(const floating[::1] a, const floating[::1] mask, floating[::1] out,
               int n_threads) except -1:
    """out = relu(a) (mask None), or a where mask > 0 (relu's backward)."""
    cdef Py_ssize_t n = a.shape[0], chunks = (n + _RELU_CHUNK - 1) // _RELU_CHUNK
    cdef Py_ssize_t ch, lo, hi, i
    cdef floating v
    cdef const floating* src = &a[0] if n else NULL
    cdef const floating* m = &mask[0] if mask is not None and n else NULL
    cdef floating* dst = &out[0] if n else NULL
    cdef bint forward = mask is None
    if n == 0:
        return 0
    with nogil:
        for ch in prange(chunks, schedule='static',
                         num_threads=1 if chunks < 2 else min(<Py_ssize_t> n_threads, chunks)):
            lo = ch * _RELU_CHUNK
            hi = min(n, lo + _RELU_CHUNK)
            if forward:
                for i in range(lo, hi):
                    v = src[i]
                    dst[i] = 0 if v < 0 else v
            else:
                for i in range(lo, hi):
                    v = src[i]                # loaded either way: a select, no branch
                    dst[i] = 0 if m[i] <= 0 else v
    return 0


def bias_grad(grad_output):
    """Gradient (C,) of a bias: grad_output (N, C, H, W) summed over N, H and W."""
    out = np.empty(grad_output.shape[1], grad_output.dtype)
    if grad_output.dtype == np.float32:
        _bias_grad[float](grad_output, out, _num_threads())
    else:
        _bias_grad[double](grad_output, out, _num_threads())
    return out


cdef int _bias_grad(const floating[:, :, :, ::1] g, floating[::1] out, int n_threads) except -1:
    """out[c] = sum of g[:, c], accumulated in double."""
    cdef Py_ssize_t n = g.shape[0], c = g.shape[1], hw = g.shape[2] * g.shape[3]
    cdef Py_ssize_t ch, i
    cdef double acc
    if c == 0:
        return 0
    if n == 0 or hw == 0:
        out[:] = 0
        return 0
    with nogil:
        for ch in prange(c, schedule='static', num_threads=min(n_threads, c)):
            acc = 0
            for i in range(n):
                acc = acc + _sum(&g[i, ch, 0, 0], hw)
            out[ch] = <floating> acc
    return 0


cdef inline double _sum(const floating* a, Py_ssize_t n) noexcept nogil:
    """Sum of a[:n]: blocks of 256 in eight running sums of the array's type (the
    compiler vectorises them), each block added to a double."""
    cdef floating part[8]
    cdef double total = 0
    cdef Py_ssize_t i, j, k, end
    i = 0
    while i < n:
        end = min(n, i + 256)
        for k in range(8):
            part[k] = 0
        j = i
        while j + 8 <= end:
            for k in range(8):
                part[k] = part[k] + a[j + k]
            j += 8
        while j < end:
            part[0] = part[0] + a[j]
            j += 1
        total += (((<double> part[0] + part[1]) + (<double> part[2] + part[3]))
                  + ((<double> part[4] + part[5]) + (<double> part[6] + part[7])))
        i = end
    return total


# --------------------------------------------------------------------------- pooling

cdef struct Pool:
    Py_ssize_t h, w, ho, wo, kh, kw, sh, sw, ph, pw, dh, dw
    bint include_pad
    Py_ssize_t divisor   # 0: none given
    bint rel32           # rows and a tap's offset from its window's first tap fit a C int
    bint tiled           # the windows tile the input exactly (_checks.tiles)


cdef Pool _pool_geometry(spec):
    cdef Pool p
    p.kh, p.kw = spec.kernel_size
    p.sh, p.sw = spec.stride
    p.ph, p.pw = spec.padding
    p.dh, p.dw = spec.dilation
    p.h, p.w = spec.in_size
    p.ho, p.wo = spec.out_size
    p.include_pad = spec.count_include_pad
    p.divisor = 0 if spec.divisor_override is None else spec.divisor_override
    (kh, kw), (dh, dw), w = spec.kernel_size, spec.dilation, spec.in_size[1]
    p.rel32 = w <= INT_MAX and (kh - 1) * dh * w + (kw - 1) * dw <= INT_MAX  # Python ints
    p.tiled = tiles(spec)
    return p


cdef inline void _span(Py_ssize_t o, Py_ssize_t s, Py_ssize_t p, Py_ssize_t k, Py_ssize_t d,
                       Py_ssize_t size, Py_ssize_t* start, Py_ssize_t* stop) noexcept nogil:
    """In-bounds taps of window o along one axis: start, start + d, ... < stop."""
    cdef Py_ssize_t a = o * s - p
    cdef Py_ssize_t b = a + (k - 1) * d + 1
    if b > size:
        b = size
    if a < 0:                       # the first tap at or after 0, in one step
        a += (-a + d - 1) // d * d
    start[0] = a
    stop[0] = b


cdef inline void _inner_cols(const Pool* p, Py_ssize_t* ca, Py_ssize_t* cb) noexcept nogil:
    """Output columns [ca, cb) whose kw taps all lie inside the input row. They run in
    vectorisable loops over the columns, one tap at a time; the others one by one."""
    cdef Py_ssize_t a = (p.pw + p.sw - 1) // p.sw
    cdef Py_ssize_t last = p.w - 1 - (p.kw - 1) * p.dw + p.pw      # ow*sw <= last
    cdef Py_ssize_t b = 0 if last < 0 else last // p.sw + 1
    b = min(b, p.wo)
    a = min(a, b)
    ca[0] = a
    cb[0] = b


# Row kernels over the inner columns. ``sw`` is a compile-time constant where the callers
# pass a literal (1, 2), so the strided loads vectorise.

ctypedef fused tapoff:
    # A winning tap's offset from its window's first tap, below 2**31 (``Pool.rel32``), in
    # a type as wide as the values: float32 selects it as a C int, float64 as a double
    # (exact below 2**53). GCC vectorises neither double -> C int nor double -> int64
    # selects for SSE2, and a float64 max pooling ran 5-8x slower than float32's.
    int
    double


cdef inline void _max_tap(floating* m, tapoff* tap, const floating* src, int off, int n,
                          int sw, bint first) noexcept nogil:
    """One tap of a row of max windows: m[q] vs src[q*sw], PyTorch's rule (take if larger
    or NaN); tap[q] remembers the winning tap's offset from the window's first tap."""
    cdef int q
    cdef tapoff t = off
    cdef floating v
    cdef bint take
    if first:
        for q in range(n):
            m[q] = src[q * sw]
            tap[q] = t
    else:
        for q in range(n):
            v = src[q * sw]
            take = (v > m[q]) | (v != v)
            m[q] = v if take else m[q]
            tap[q] = t if take else tap[q]


cdef inline void _sum_tap(floating* acc, const floating* src, Py_ssize_t n, Py_ssize_t sw,
                          bint first) noexcept nogil:
    cdef Py_ssize_t q
    if first:
        for q in range(n):
            acc[q] = src[q * sw]
    else:
        for q in range(n):
            acc[q] = acc[q] + src[q * sw]


cdef inline void _scatter_tap(floating* dst, const floating* g, Py_ssize_t n,
                              Py_ssize_t sw) noexcept nogil:
    cdef Py_ssize_t q
    for q in range(n):
        dst[q * sw] += g[q]


cdef inline void _tap_index(int64_t* ir, const tapoff* tap, Py_ssize_t first, int n,
                            int sw) noexcept nogil:
    """ir[q] = first + q*sw + tap[q]: flat indices from the winning taps' offsets."""
    cdef int q
    for q in range(n):
        ir[q] = first + (q * sw + <int> tap[q])


# The course's pooling, 2x2 windows at stride 2 with both rows inside: the four taps of
# each window in one loop (row-major, so the same first-maximum / NaN rule). Max pooling's
# rows, and the planes its windows tile in both poolings, are C (_pool.h: see its notes),
# built for any CPU and for AVX2 (_ISA picks: AVX2 at 1 and 2).
cdef extern from "_pool.h":
    void cnnlab_max_row22_float(const float* r0, const float* r1, long n, long w,
                                int64_t first, float* y, int64_t* idx, int avx2) nogil
    void cnnlab_max_row22_double(const double* r0, const double* r1, long n, long w,
                                 int64_t first, double* y, int64_t* idx, int avx2) nogil
    int cnnlab_max_back22_float(const float* g, const int64_t* idx, long ho, long wo,
                                float* plane, int avx2) nogil
    void cnnlab_max_plane22_float(const float* x, long ho, long wo, float* y, int64_t* idx,
                                  int avx2) nogil
    void cnnlab_max_plane22_double(const double* x, long ho, long wo, double* y,
                                   int64_t* idx, int avx2) nogil
    void cnnlab_avg_plane22_float(const float* x, long ho, long wo, float div, float* y,
                                  int avx2) nogil
    void cnnlab_avg_plane22_double(const double* x, long ho, long wo, double div, double* y,
                                   int avx2) nogil
    void cnnlab_avg_back22_float(const float* g, long ho, long wo, float div, float* gx,
                                 int avx2) nogil
    void cnnlab_avg_back22_double(const double* g, long ho, long wo, double div,
                                  double* gx, int avx2) nogil

cdef inline bint _is_22(const Pool* p) noexcept nogil:
    return p.kh == 2 and p.kw == 2 and p.sh == 2 and p.sw == 2 and p.dh == 1 and p.dw == 1


cdef inline void _mean_row22(floating* y, const floating* r0, const floating* r1,
                             Py_ssize_t n, Py_ssize_t div) noexcept nogil:
    cdef Py_ssize_t q
    for q in range(n):
        y[q] = (((r0[2 * q] + r0[2 * q + 1]) + r1[2 * q]) + r1[2 * q + 1]) / div


cdef inline void _scatter_row22(floating* d0, floating* d1, const floating* g,
                                Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t q
    for q in range(n):
        d0[2 * q] += g[q]
        d0[2 * q + 1] += g[q]
        d1[2 * q] += g[q]
        d1[2 * q + 1] += g[q]


cdef void _max_plane(const Pool* p, const floating* x, floating* y, int64_t* idx,
                     tapoff* tap) noexcept nogil:
    cdef Py_ssize_t oh, ow, ih, h0, h1, ca, cb, j, n, base, off
    cdef floating* yr
    cdef bint first
    if p.tiled and _is_22(p) and p.rel32:      # the course's pooling: a plane at a time
        if floating is float:
            cnnlab_max_plane22_float(x, p.ho, p.wo, y, idx, _ISA)
        else:
            cnnlab_max_plane22_double(x, p.ho, p.wo, y, idx, _ISA)
        return
    _inner_cols(p, &ca, &cb)
    n = cb - ca if p.rel32 else 0       # else every window one by one (planes >= 2**31)
    for oh in range(p.ho):
        _span(oh, p.sh, p.ph, p.kh, p.dh, p.h, &h0, &h1)
        yr = y + oh * p.wo
        base = h0 * p.w - p.pw          # + ow*sw: flat index of window ow's first tap
        if n > 0 and _is_22(p) and h1 - h0 == 2:
            off = base + 2 * ca
            if floating is float:
                cnnlab_max_row22_float(x + off, x + off + p.w, n, p.w, off, yr + ca,
                                       idx + oh * p.wo + ca, _ISA)
            else:
                cnnlab_max_row22_double(x + off, x + off + p.w, n, p.w, off, yr + ca,
                                        idx + oh * p.wo + ca, _ISA)
        elif n > 0:
            first = True
            ih = h0
            while ih < h1:
                for j in range(p.kw):
                    off = (ih - h0) * p.w + j * p.dw     # the tap's offset from the first
                    if p.sw == 1:
                        _max_tap(yr + ca, tap, x + base + off + ca, <int> off, <int> n, 1,
                                 first)
                    elif p.sw == 2:
                        _max_tap(yr + ca, tap, x + base + off + 2 * ca, <int> off, <int> n,
                                 2, first)
                    else:
                        _max_tap(yr + ca, tap, x + base + off + ca * p.sw, <int> off,
                                 <int> n, <int> p.sw, first)
                    first = False
                ih += p.dh
            _tap_index(idx + oh * p.wo + ca, tap, base + ca * p.sw, <int> n, <int> p.sw)
        for ow in range(ca):
            _max_window(p, x, h0, h1, ow, yr, idx + oh * p.wo)
        for ow in range(max(ca, cb), p.wo):
            _max_window(p, x, h0, h1, ow, yr, idx + oh * p.wo)


cdef inline void _max_window(const Pool* p, const floating* x, Py_ssize_t h0, Py_ssize_t h1,
                             Py_ssize_t ow, floating* yr, int64_t* ir) noexcept nogil:
    """One window, tap by tap (the columns at the borders)."""
    cdef Py_ssize_t ih, iw, w0, w1, best
    cdef floating v, m
    _span(ow, p.sw, p.pw, p.kw, p.dw, p.w, &w0, &w1)
    best = h0 * p.w + w0
    m = -INFINITY
    ih = h0
    while ih < h1:
        iw = w0
        while iw < w1:
            v = x[ih * p.w + iw]
            if v > m or v != v:
                m = v
                best = ih * p.w + iw
            iw += p.dw
        ih += p.dh
    yr[ow] = m
    ir[ow] = best


cdef int _max_pool2d(Pool p, const floating[:, :, :, ::1] x, floating[:, :, :, ::1] y,
                     int64_t[:, :, :, ::1] idx, int n_threads) except -1:
    cdef Py_ssize_t planes = x.shape[0] * x.shape[1], i
    cdef Py_ssize_t hw = <Py_ssize_t> p.h * p.w, hwo = <Py_ssize_t> p.ho * p.wo
    cdef const floating* xp = _ptr(x)
    cdef floating* yp = _wptr(y)
    cdef int64_t* ip
    cdef void* tap
    cdef int failed = 0
    cdef int* failed_p = &failed
    if planes == 0:
        return 0
    ip = &idx[0, 0, 0, 0]
    tap = NULL                          # thread-private below; set here to quiet -Wall
    with nogil, parallel(num_threads=min(n_threads, planes)):
        tap = malloc((p.wo + 1) * sizeof(floating))     # tapoff as wide as floating
        if tap == NULL:
            failed_p[0] = 1
        for i in prange(planes, schedule='static'):
            if tap != NULL:
                if floating is float:
                    _max_plane(&p, xp + i * hw, yp + i * hwo, ip + i * hwo, <int*> tap)
                else:
                    _max_plane(&p, xp + i * hw, yp + i * hwo, ip + i * hwo, <double*> tap)
        free(tap)
    if failed:
        raise MemoryError("max_pool2d: out of memory")
    return 0


# float32 max pooling's backward writes each cell once on rows of this many 2x2 windows or
# more (_pool.h). Alternated process by process against zeroing and adding (batch 32,
# medians of 100 calls, 6 processes each): 16@64 (32 windows a row) 0.63-0.65x the time on
# 1 and on 2 threads, 32@32 (16) 0.89-0.94x, 100x3x32x32 (16) 0.94-0.98x; but 64@16 (8)
# 1.16-1.39x: a row of 8 windows is too short for the vector loop.
cdef Py_ssize_t _MAX_BACK_ONCE_WINDOWS = 16


cdef int _max_pool2d_backward(Pool p, const floating[:, :, :, ::1] gy,
                              const int64_t[:, :, :, ::1] idx, floating[:, :, :, ::1] gx,
                              int n_threads) except -1:
    """Returns 1 (gx then unfinished) when an index lies outside [0, H*W): each index is
    compared before it is written through, so none is trusted (functional.py leaves this
    range check to the kernel: it saves a pass over the indices)."""
    cdef Py_ssize_t planes = gy.shape[0] * gy.shape[1], i, q
    cdef Py_ssize_t hw = <Py_ssize_t> p.h * p.w, hwo = <Py_ssize_t> p.ho * p.wo
    cdef const floating* gp = _ptr(gy)
    cdef floating* xp = _wptr(gx)
    cdef const int64_t* ip
    cdef floating* plane
    cdef int64_t j
    cdef int outside = 0
    cdef int* outside_p = &outside
    # float32 2x2 windows tiling the plane in rows of _MAX_BACK_ONCE_WINDOWS or more: each
    # cell written once (_pool.h), unless an index lies outside its window; then, as for
    # any other windows, the plane zeroed and added into.
    cdef bint once = False
    cdef int bad
    if floating is float:
        once = (p.tiled and _is_22(&p) and p.wo >= _MAX_BACK_ONCE_WINDOWS
                and hw <= INT_MAX)
    if planes == 0:
        return 0
    ip = &idx[0, 0, 0, 0]
    with nogil:
        for i in prange(planes, schedule='static', num_threads=min(n_threads, planes)):
            plane = xp + i * hw
            bad = 1
            if once:
                if floating is float:
                    bad = cnnlab_max_back22_float(gp + i * hwo, ip + i * hwo, p.ho, p.wo,
                                                  plane, _ISA)
            if bad:
                memset(plane, 0, hw * sizeof(floating))
                for q in range(hwo):
                    j = ip[i * hwo + q]
                    if <uint64_t> j < <uint64_t> hw:    # a negative index reads as huge
                        plane[j] += gp[i * hwo + q]
                    else:
                        outside_p[0] = 1
    return outside


cdef inline Py_ssize_t _avg_window(const Pool* p, Py_ssize_t oh, Py_ssize_t ow, Py_ssize_t* h0,
                                   Py_ssize_t* h1, Py_ssize_t* w0, Py_ssize_t* w1) noexcept nogil:
    """Clip window (oh, ow) to the input; return its divisor (PyTorch's rule)."""
    cdef Py_ssize_t hs = oh * p.sh - p.ph, ws = ow * p.sw - p.pw
    cdef Py_ssize_t he = min(hs + p.kh, p.h + p.ph), we = min(ws + p.kw, p.w + p.pw)
    cdef Py_ssize_t size = (he - hs) * (we - ws)
    h0[0] = max(hs, 0)
    w0[0] = max(ws, 0)
    h1[0] = min(he, p.h)
    w1[0] = min(we, p.w)
    if p.divisor:
        return p.divisor
    if p.include_pad:
        return size
    return (h1[0] - h0[0]) * (w1[0] - w0[0])


cdef inline Py_ssize_t _avg_row_divisor(const Pool* p, Py_ssize_t oh) noexcept nogil:
    """Divisor of the inner columns' windows of output row oh (full width kw)."""
    cdef Py_ssize_t h0, h1, w0, w1
    cdef Py_ssize_t hs = oh * p.sh - p.ph
    if p.divisor:
        return p.divisor
    _avg_window(p, oh, 0, &h0, &h1, &w0, &w1)
    if p.include_pad:
        return (min(hs + p.kh, p.h + p.ph) - hs) * p.kw
    return (h1 - h0) * p.kw


cdef void _avg_plane(const Pool* p, const floating* x, floating* y) noexcept nogil:
    cdef Py_ssize_t oh, ow, ih, h0, h1, w0, w1, ca, cb, n, j, q, div
    cdef floating* yr
    cdef const floating* src
    cdef bint first
    if p.tiled and _is_22(p):           # the course's pooling: a plane at a time, in C
        div = p.divisor if p.divisor else 4
        if floating is float:
            cnnlab_avg_plane22_float(x, p.ho, p.wo, div, y, _ISA)
        else:
            cnnlab_avg_plane22_double(x, p.ho, p.wo, div, y, _ISA)
        return
    _inner_cols(p, &ca, &cb)
    n = cb - ca
    for oh in range(p.ho):
        yr = y + oh * p.wo
        if n > 0:
            _avg_window(p, oh, ca, &h0, &h1, &w0, &w1)
            div = _avg_row_divisor(p, oh)
        if n > 0 and _is_22(p) and h1 - h0 == 2:
            src = x + h0 * p.w - p.pw + 2 * ca
            _mean_row22(yr + ca, src, src + p.w, n, div)
        elif n > 0:
            first = True
            for ih in range(h0, h1):
                for j in range(p.kw):
                    src = x + ih * p.w - p.pw + j
                    if p.sw == 1:
                        _sum_tap(yr + ca, src + ca, n, 1, first)
                    elif p.sw == 2:
                        _sum_tap(yr + ca, src + 2 * ca, n, 2, first)
                    else:
                        _sum_tap(yr + ca, src + ca * p.sw, n, p.sw, first)
                    first = False
            if first:                       # no row inside (cannot happen with valid specs)
                for q in range(ca, cb):
                    yr[q] = 0
            for q in range(ca, cb):
                yr[q] = yr[q] / div
        for ow in range(ca):
            yr[ow] = _avg_one(p, x, oh, ow)
        for ow in range(max(ca, cb), p.wo):
            yr[ow] = _avg_one(p, x, oh, ow)


cdef inline floating _avg_one(const Pool* p, const floating* x, Py_ssize_t oh,
                              Py_ssize_t ow) noexcept nogil:
    """One window, tap by tap (the columns at the borders)."""
    cdef Py_ssize_t ih, iw, h0, h1, w0, w1
    cdef Py_ssize_t div = _avg_window(p, oh, ow, &h0, &h1, &w0, &w1)
    cdef floating s = 0
    for ih in range(h0, h1):
        for iw in range(w0, w1):
            s = s + x[ih * p.w + iw]
    return s / div


cdef void _avg_tiled_backward(const Pool* p, const floating* gy, floating* gx,
                              floating* g) noexcept nogil:
    """The gradient of windows that tile the input: each cell is written once, its
    window's gradient over the window's size, with no zeroing pass and no sums (+ 0: the
    same +0.0 for a -0.0 gradient as the sums into zeros elsewhere, and torch's)."""
    cdef Py_ssize_t oh, i, j, q
    cdef Py_ssize_t div = p.divisor if p.divisor else p.kh * p.kw
    cdef floating* dst
    if _is_22(p):                       # in C, a plane at a time (_pool.h)
        if floating is float:
            cnnlab_avg_back22_float(gy, p.ho, p.wo, div, gx, _ISA)
        else:
            cnnlab_avg_back22_double(gy, p.ho, p.wo, div, gx, _ISA)
        return
    for oh in range(p.ho):
        for q in range(p.wo):
            g[q] = gy[oh * p.wo + q] / div + 0
        for i in range(p.kh):
            dst = gx + (oh * p.kh + i) * p.w
            if p.kw == 2:
                for q in range(p.wo):
                    dst[2 * q] = g[q]
                    dst[2 * q + 1] = g[q]
            else:
                for q in range(p.wo):
                    for j in range(p.kw):
                        dst[q * p.kw + j] = g[q]


cdef void _avg_plane_backward(const Pool* p, const floating* gy, floating* gx,
                              floating* g) noexcept nogil:
    cdef Py_ssize_t oh, ow, ih, h0, h1, w0, w1, ca, cb, n, j, q, div
    cdef const floating* gr
    cdef floating* dst
    if p.tiled:
        _avg_tiled_backward(p, gy, gx, g)
        return
    memset(gx, 0, <Py_ssize_t> p.h * p.w * sizeof(floating))
    _inner_cols(p, &ca, &cb)
    n = cb - ca
    for oh in range(p.ho):
        gr = gy + oh * p.wo
        if n > 0:
            _avg_window(p, oh, ca, &h0, &h1, &w0, &w1)
            div = _avg_row_divisor(p, oh)
            for q in range(n):
                g[q] = gr[ca + q] / div
            if _is_22(p) and h1 - h0 == 2:
                dst = gx + h0 * p.w - p.pw + 2 * ca
                _scatter_row22(dst, dst + p.w, g, n)
            else:
                for ih in range(h0, h1):
                    for j in range(p.kw):
                        dst = gx + ih * p.w - p.pw + j
                        if p.sw == 1:
                            _scatter_tap(dst + ca, g, n, 1)
                        elif p.sw == 2:
                            _scatter_tap(dst + 2 * ca, g, n, 2)
                        else:
                            _scatter_tap(dst + ca * p.sw, g, n, p.sw)
        for ow in range(ca):
            _avg_one_backward(p, gr[ow], oh, ow, gx)
        for ow in range(max(ca, cb), p.wo):
            _avg_one_backward(p, gr[ow], oh, ow, gx)


cdef inline void _avg_one_backward(const Pool* p, floating g, Py_ssize_t oh, Py_ssize_t ow,
                                   floating* gx) noexcept nogil:
    cdef Py_ssize_t ih, iw, h0, h1, w0, w1
    cdef floating gv = g / _avg_window(p, oh, ow, &h0, &h1, &w0, &w1)
    for ih in range(h0, h1):
        for iw in range(w0, w1):
            gx[ih * p.w + iw] += gv


cdef int _avg_pool2d(Pool p, const floating[:, :, :, ::1] x, floating[:, :, :, ::1] y,
                     int n_threads) except -1:
    cdef Py_ssize_t planes = x.shape[0] * x.shape[1], i
    cdef Py_ssize_t hw = <Py_ssize_t> p.h * p.w, hwo = <Py_ssize_t> p.ho * p.wo
    cdef const floating* xp = _ptr(x)
    cdef floating* yp = _wptr(y)
    if planes == 0:
        return 0
    with nogil:
        for i in prange(planes, schedule='static', num_threads=min(n_threads, planes)):
            _avg_plane(&p, xp + i * hw, yp + i * hwo)
    return 0


cdef int _avg_pool2d_backward(Pool p, const floating[:, :, :, ::1] gy,
                              floating[:, :, :, ::1] gx, int n_threads) except -1:
    cdef Py_ssize_t planes = gy.shape[0] * gy.shape[1], i
    cdef Py_ssize_t hw = <Py_ssize_t> p.h * p.w, hwo = <Py_ssize_t> p.ho * p.wo
    cdef const floating* gp = _ptr(gy)
    cdef floating* xp = _wptr(gx)
    cdef floating* g
    cdef int failed = 0
    cdef int* failed_p = &failed
    if planes == 0:
        return 0
    g = NULL                            # thread-private below; set here to quiet -Wall
    with nogil, parallel(num_threads=min(n_threads, planes)):
        g = <floating*> malloc((p.wo + 1) * sizeof(floating))
        if g == NULL:
            failed_p[0] = 1
        for i in prange(planes, schedule='static'):
            if g != NULL:
                _avg_plane_backward(&p, gp + i * hwo, xp + i * hw, g)
        free(g)
    if failed:
        raise MemoryError("avg_pool2d_backward: out of memory")
    return 0


def max_pool2d(x, spec):
    """(y, indices) of max pooling x (N, C, H, W): y (N, C, H_out, W_out) and int64
    indices h*W + w of each window's maximum in its input plane."""
    cdef Pool p = _pool_geometry(spec)
    shape = (x.shape[0], x.shape[1], p.ho, p.wo)
    y = np.empty(shape, x.dtype)
    idx = np.empty(shape, np.int64)
    if x.dtype == np.float32:
        _max_pool2d[float](p, x, y, idx, _num_threads())
    else:
        _max_pool2d[double](p, x, y, idx, _num_threads())
    return y, idx


#: The kernel compares every index with the plane's size itself (see _max_pool2d_backward);
#: the other twins' callers check the range first.
CHECKS_POOL_INDICES = True


def max_pool2d_backward(grad_output, indices, spec):
    """Gradient (N, C, H, W) of max pooling: each grad_output (N, C, H_out, W_out) entry
    added at its int64 index in its input plane; ArgumentError for an index outside it."""
    cdef Pool p = _pool_geometry(spec)
    gx = np.empty((grad_output.shape[0], grad_output.shape[1], p.h, p.w), grad_output.dtype)
    if grad_output.dtype == np.float32:
        outside = _max_pool2d_backward[float](p, grad_output, indices, gx, _num_threads())
    else:
        outside = _max_pool2d_backward[double](p, grad_output, indices, gx, _num_threads())
    if outside:
        raise indices_out_of_range("max_pool2d_backward", p.h * p.w)
    return gx


def avg_pool2d(x, spec):
    """Average pooling of x (N, C, H, W) -> (N, C, H_out, W_out)."""
    cdef Pool p = _pool_geometry(spec)
    y = np.empty((x.shape[0], x.shape[1], p.ho, p.wo), x.dtype)
    if x.dtype == np.float32:
        _avg_pool2d[float](p, x, y, _num_threads())
    else:
        _avg_pool2d[double](p, x, y, _num_threads())
    return y


def avg_pool2d_backward(grad_output, spec):
    """Gradient (N, C, H, W) of average pooling from grad_output (N, C, H_out, W_out)."""
    cdef Pool p = _pool_geometry(spec)
    gx = np.empty((grad_output.shape[0], grad_output.shape[1], p.h, p.w), grad_output.dtype)
    if grad_output.dtype == np.float32:
        _avg_pool2d_backward[float](p, grad_output, gx, _num_threads())
    else:
        _avg_pool2d_backward[double](p, grad_output, gx, _num_threads())
    return gx
