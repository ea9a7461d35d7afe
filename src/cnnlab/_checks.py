"""Argument checks, output sizes and kernel specs: the one place every twin goes through.

How the pieces fit::

    functional.conv2d(input, weight, ...)            public, PyTorch's signature
        -> _checks.conv2d_spec(...)                  every check; returns a ConvSpec
        -> twin.conv2d(x, w, b, spec)                _core / _fallback / _torch, no checks

The functions here look only at shapes, dtypes and the hyper-parameters, never at the
values, so NumPy arrays and torch tensors go through the same code and every twin raises
the same exception with the same message. Messages follow PyTorch's wording where PyTorch
has one. A spec is an immutable ``NamedTuple`` of plain ints: all a kernel needs, nothing
it must check.
"""
from __future__ import annotations

import functools
import math
import numbers
from typing import NamedTuple, Optional, Tuple

import numpy as np

Pair = Tuple[int, int]

#: The largest size, stride, padding, dilation or padded extent of a convolution (torch's
#: limit for padding). The kernels' 64-bit index arithmetic adds at most two such values.
INDEX_MAX = 2**62 - 1
#: BLAS takes its matrix sizes as C ``int``, and torch its pooling hyper-parameters.
INT_MAX = 2**31 - 1
#: Strides up to this are kept by ``touching`` even where one window is left.
MODERATE_STRIDE = 1024
#: The most bytes an array or buffer may have: NumPy's limit, and a ``size_t`` the kernels
#: can compute without overflow.
MAX_BYTES = 2**63 - 1

__all__ = [
    "ArgumentError",
    "ConvSpec",
    "PoolSpec",
    "conv2d_output_shape",
    "conv_transpose2d_output_shape",
    "pool2d_output_shape",
]


class ArgumentError(ValueError, RuntimeError):
    """A bad argument or shape. It is both a ``ValueError`` (the NumPy habit) and a
    ``RuntimeError`` (what PyTorch raises), so either ``except`` clause catches it."""


class DtypeError(TypeError, RuntimeError):
    """An unsupported or mismatched dtype. Both a ``TypeError`` and a ``RuntimeError``."""


class ConvSpec(NamedTuple):
    """A checked 2-D convolution, as the kernels consume it (all pairs are (height, width)).

    The convolution reads ``x[n, c, oh*stride_h - pad_h + kh*dilation_h, ...]``; any row or
    column outside ``[0, H) x [0, W)`` reads as zero. ``padding`` is the zero border *before*
    row 0 and column 0; the border after the last row/column is implied by ``out_size``
    (it differs from ``padding`` only for ``padding='same'`` with an even effective kernel).
    """

    stride: Pair
    padding: Pair
    dilation: Pair
    groups: int
    kernel_size: Pair
    in_size: Pair  # (H, W) of the convolution's input
    out_size: Pair  # (H_out, W_out)

    @property
    def padding_end(self) -> Pair:
        """Zero rows/columns after the input that the last window reaches (>= 0)."""
        return tuple(max(0, e - i - p) for e, i, p in  # type: ignore[return-value]
                     zip(window_extent(self), self.in_size, self.padding))

    @property
    def symmetric(self) -> bool:
        """True when ``padding`` on both sides gives the same output size (all but 'same')."""
        return all(
            _conv_out(i, k, s, p, p, d) == o
            for i, k, s, p, d, o in zip(self.in_size, self.kernel_size, self.stride,
                                        self.padding, self.dilation, self.out_size)
        )


class PoolSpec(NamedTuple):
    """A checked 2-D pooling, as the kernels consume it (pairs are (height, width)).

    Window ``(oh, ow)`` covers rows ``oh*stride_h - pad_h + kh*dilation_h`` for
    ``kh < kernel_h``; positions outside the input are skipped (max: they count as -inf).
    Average pooling divides by ``divisor_override`` if set, else by the window's size clipped
    to the padded input ``[-pad, H + pad)`` (``count_include_pad``) or to the input itself.
    ``dilation`` is always (1, 1) for average pooling.
    """

    kernel_size: Pair
    stride: Pair
    padding: Pair  # symmetric: the same on both sides
    dilation: Pair
    ceil_mode: bool
    in_size: Pair
    out_size: Pair
    count_include_pad: bool = True
    divisor_override: Optional[int] = None


# --------------------------------------------------------------------------- helpers


def window_extent(spec) -> Pair:
    """Rows and columns of the zero-padded input that the windows of a ConvSpec or PoolSpec
    span, from the first one's start: ``(out - 1)*stride + dilation*(kernel - 1) + 1``."""
    return tuple((o - 1) * s + d * (k - 1) + 1 for o, s, d, k in  # type: ignore[return-value]
                 zip(spec.out_size, spec.stride, spec.dilation, spec.kernel_size))


_NDARRAY = np.ndarray
_SCALARS = frozenset((int, bool, str, type(None)))
_INTS = frozenset((int,))


def _plain(a) -> bool:
    """None, an int, bool or str, or a tuple of ints: an argument whose value (with its
    type, for ``lru_cache(typed=True)``) says everything the checks look at."""
    return type(a) in _SCALARS or (isinstance(a, tuple) and _INTS.issuperset(map(type, a)))


def _memo(check):
    """Remember a spec check's answers for the last few hundred argument lists (a training
    loop asks the same ones every step; each costs ~10 us of Python). Only plain positional
    arguments (``_plain``) are remembered, so ``True`` never stands in for ``1`` inside a
    tuple; errors are not remembered."""
    cached = functools.lru_cache(maxsize=512, typed=True)(check)

    @functools.wraps(check)
    def call(*args, **kwargs):
        key = []
        for a in args:
            t = type(a)
            if t is not tuple and t not in _SCALARS:
                if not _plain(a):            # a tuple subclass (torch.Size) of ints passes
                    return check(*args, **kwargs)
                a = tuple(a)
            elif t is tuple and not _INTS.issuperset(map(type, a)):
                return check(*args, **kwargs)
            key.append(a)
        if kwargs:
            return check(*args, **kwargs)
        return cached(*key)
    return call


def _size(shape) -> str:
    return "[" + ", ".join(str(int(s)) for s in shape) + "]"


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _pair(value, name: str) -> Pair:
    """An int or a sequence of two ints -> (int, int), as torch's ``_pair``."""
    if _is_int(value):
        return (int(value), int(value))
    if isinstance(value, (tuple, list)) and all(_is_int(v) for v in value):
        if len(value) == 1:
            return (int(value[0]), int(value[0]))
        if len(value) == 2:
            return (int(value[0]), int(value[1]))
        raise ArgumentError(
            f"expected {name} to be a single integer value or a list of 2 values to match "
            f"the convolution dimensions, but got {name}={list(value)}")
    raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")


def _check_limit(op: str, limit: int, **values) -> None:
    """Each named value is at most ``limit`` (INDEX_MAX or INT_MAX), else ArgumentError."""
    for name, value in values.items():
        for v in (value if isinstance(value, tuple) else (value,)):
            if v > limit:
                bound = "2**62 - 1" if limit == INDEX_MAX else "2**31 - 1 (as in torch)"
                raise ArgumentError(f"{op}: {name.replace('_', ' ')} {v} is too large; at "
                                    f"most {bound} is supported")


def _check_planes(input_shape) -> None:
    """torch's rule: input planes without rows or columns only in an empty batch."""
    n, c, h, w = (int(v) for v in input_shape)
    if n and c and not (h and w):
        raise ArgumentError("Only zero batch or zero channel inputs are supported, but got "
                            f"input shape: {_size(input_shape)}")


def _conv_out(size: int, k: int, s: int, p0: int, p1: int, d: int) -> int:
    return (size + p0 + p1 - d * (k - 1) - 1) // s + 1


def dtype_name(a) -> str:
    """'float32', 'float64', 'int64', ... for a NumPy array or a torch tensor."""
    return str(a.dtype).replace("torch.", "")


def check_array(op: str, a, name: str = "input") -> None:
    """A NumPy array or a torch tensor (anything with shape, ndim and dtype), else TypeError."""
    if type(a) is _NDARRAY:
        return
    if not (hasattr(a, "shape") and hasattr(a, "ndim") and hasattr(a, "dtype")):
        raise TypeError(f"{op}: expected {name} to be a NumPy array or a torch tensor, got "
                        f"{type(a).__name__}")


_FLOAT_CHARS = {"f": "float32", "d": "float64"}   # NumPy's dtype.char, read in C (dtype.name
                                                  # and str(dtype) run Python code)


def check_floating(op: str, **arrays) -> None:
    """All given arrays are float32 or float64, and of one dtype (None entries are skipped)."""
    first = None
    for name, a in arrays.items():
        if a is None:
            continue
        check_array(op, a, name)
        dt = _FLOAT_CHARS.get(getattr(a.dtype, "char", None)) or dtype_name(a)
        if dt not in ("float32", "float64"):
            raise DtypeError(
                f"{op}: cnnlab computes in float32 or float64, but {name} has dtype {dt}; "
                f"cast it first (e.g. x.astype(np.float32))")
        if first is None:
            first = (name, dt)
        elif dt != first[1]:
            raise DtypeError(f"{first[0].capitalize()} type ({first[1]}) and {name} type "
                             f"({dt}) should be the same")


def check_rank(op: str, a, name: str = "input") -> bool:
    """3-D or 4-D; returns True when batched (4-D)."""
    check_array(op, a, name)
    if a.ndim not in (3, 4):
        raise ArgumentError(f"Expected 3D (unbatched) or 4D (batched) {name} to {op}, "
                            f"but got {name} of size: {_size(a.shape)}")
    return a.ndim == 4


def indices_out_of_range(op: str, plane: int) -> ArgumentError:
    """The error for max pooling indices outside ``[0, plane)`` (raised by the caller: the
    compiled twin finds them while it scatters, the others' callers look first)."""
    return ArgumentError(f"{op}: indices out of range for an input plane of {plane} elements")


def check_grad_output(op: str, grad_output, expected_shape) -> None:
    if tuple(grad_output.shape) != tuple(expected_shape):
        raise ArgumentError(f"{op}: expected grad_output of size {_size(expected_shape)}, "
                            f"but got grad_output of size {_size(grad_output.shape)}")


# --------------------------------------------------------------------------- convolution


def _conv_hparams(stride, padding, dilation, groups, kernel_size, transposed=False):
    """Checks shared by conv2d and conv_transpose2d; returns pairs and the padding mode."""
    s = _pair(stride, "stride")
    d = _pair(dilation, "dilation")
    if isinstance(padding, str):
        if padding not in ("valid", "same") or transposed:
            raise ArgumentError(f"Invalid padding string: {padding!r}"
                                + ("" if transposed else ", should be one of {'valid', 'same'}"))
        if padding == "same" and s != (1, 1):
            raise ArgumentError("padding='same' is not supported for strided convolutions")
        p = padding
    else:
        p = _pair(padding, "padding")
    if not _is_int(groups):
        raise TypeError(f"groups must be an int, got {groups!r}")
    if not isinstance(p, str) and min(p) < 0:
        raise ArgumentError("negative padding is not supported")
    if min(s) <= 0:
        raise ArgumentError("non-positive stride is not supported")
    if min(d) <= 0:
        raise ArgumentError(f"dilation should be greater than zero, but got {list(d)}")
    if groups <= 0:
        raise ArgumentError("non-positive groups is not supported")
    return s, p, d, int(groups)


@_memo
def conv2d_spec(input_shape, weight_shape, bias_shape, stride=1, padding=0, dilation=1,
                groups=1, op: str = "conv2d", check_output: bool = True) -> ConvSpec:
    """Check a conv2d call and return its spec. ``input_shape`` is 4-D (N, C_in, H, W),
    ``weight_shape`` (C_out, C_in/groups, kH, kW); ``bias_shape`` (C_out,) or None.
    ``check_output``: the output must be an array NumPy can hold (not for size helpers)."""
    if len(weight_shape) != 4:
        raise ArgumentError(f"{op}: expected a 4-D weight of shape (C_out, C_in/groups, kH, kW), "
                            f"but got weight of size {_size(weight_shape)}")
    s, p, d, g = _conv_hparams(stride, padding, dilation, groups, weight_shape[2:])
    n, c_in, h, w = (int(v) for v in input_shape)
    c_out, c_in_g, kh, kw = (int(v) for v in weight_shape)
    if c_out == 0:
        raise ArgumentError(f"Given groups={g}, expected weight to be at least 1 at dimension "
                            f"0, but got weight of size {_size(weight_shape)} instead")
    if c_out % g != 0:
        raise ArgumentError(f"Given groups={g}, expected weight to be divisible by {g} at "
                            f"dimension 0, but got weight of size {_size(weight_shape)} instead")
    if c_in_g * g != c_in:
        raise ArgumentError(f"Given groups={g}, weight of size {_size(weight_shape)}, expected "
                            f"input{_size(input_shape)} to have {c_in_g * g} channels, but got "
                            f"{c_in} channels instead")
    if bias_shape is not None and tuple(bias_shape) != (c_out,):
        raise ArgumentError(f"Given weight of size {_size(weight_shape)}, expected bias to be "
                            f"1-dimensional with {c_out} elements, but got bias of size "
                            f"{_size(bias_shape)} instead")
    if min(kh, kw) <= 0:
        raise ArgumentError(f"{op}: kernel size must be positive, got weight of size "
                            f"{_size(weight_shape)}")
    if p == "valid":
        p0 = p1 = (0, 0)
    elif p == "same":
        total = (d[0] * (kh - 1), d[1] * (kw - 1))
        p0 = (total[0] // 2, total[1] // 2)
        p1 = (total[0] - p0[0], total[1] - p0[1])
    else:
        p0 = p1 = p
    eff = (d[0] * (kh - 1) + 1, d[1] * (kw - 1) + 1)
    padded = (h + p0[0] + p1[0], w + p0[1] + p1[1])
    if padded[0] < eff[0] or padded[1] < eff[1]:
        raise ArgumentError(f"Calculated padded input size per channel: ({padded[0]} x "
                            f"{padded[1]}). Kernel size: ({eff[0]} x {eff[1]}). Kernel size "
                            f"can't be greater than actual input size")
    _check_planes(input_shape)
    _check_limit(op, INDEX_MAX, stride=s, padding=p0 + p1, dilation=d,
                 padded_input_size=padded, effective_kernel_size=eff)
    out = (_conv_out(h, kh, s[0], p0[0], p1[0], d[0]), _conv_out(w, kw, s[1], p0[1], p1[1], d[1]))
    if check_output:
        check_buffer(f"{op}: the output", (n, c_out) + out, 8)
    return ConvSpec(s, p0, d, g, (kh, kw), (h, w), out)


@_memo
def conv_transpose2d_spec(input_shape, weight_shape, bias_shape, stride=1, padding=0,
                          output_padding=0, groups=1, dilation=1,
                          check_output: bool = True) -> ConvSpec:
    """Check a conv_transpose2d call; return the spec of the convolution it is the adjoint of.

    ``input_shape`` (N, C_in, H, W), ``weight_shape`` (C_in, C_out/groups, kH, kW). The spec
    describes the *forward* convolution that maps (N, C_out, H_out, W_out) to (N, C_in, H, W)
    with the same weight; conv_transpose2d is its input gradient. So ``spec.in_size`` is the
    transposed convolution's output size and ``spec.out_size`` its input size.
    """
    op = "conv_transpose2d"
    if len(weight_shape) != 4:
        raise ArgumentError(f"{op}: expected a 4-D weight of shape (C_in, C_out/groups, kH, kW), "
                            f"but got weight of size {_size(weight_shape)}")
    if isinstance(padding, str):
        raise ArgumentError(f"Invalid padding string: {padding!r}; conv_transpose2d takes an "
                            "int or a pair")
    s, p, d, g = _conv_hparams(stride, padding, dilation, groups, weight_shape[2:], True)
    op_ = _pair(output_padding, "output_padding")
    if min(op_) < 0:
        raise ArgumentError("negative output_padding is not supported")
    if not all(o < s_ or o < d_ for o, s_, d_ in zip(op_, s, d)):
        raise ArgumentError(
            "output padding must be smaller than either stride or dilation, but got "
            f"output_padding_height: {op_[0]} output_padding_width: {op_[1]} stride_height: "
            f"{s[0]} stride_width: {s[1]} dilation_height: {d[0]} dilation_width: {d[1]}")
    n, c_in, h, w = (int(v) for v in input_shape)
    w_in, c_out_g, kh, kw = (int(v) for v in weight_shape)
    if w_in == 0 or c_out_g == 0:
        raise ArgumentError(f"Given groups={g}, expected weight to be at least 1 at dimensions "
                            f"0 and 1, but got weight of size {_size(weight_shape)} instead")
    if w_in % g != 0:
        raise ArgumentError(f"Given groups={g}, expected weight to be divisible by {g} at "
                            f"dimension 0, but got weight of size {_size(weight_shape)} instead")
    if w_in != c_in:
        raise ArgumentError(f"Given transposed=1, weight of size {_size(weight_shape)}, expected "
                            f"input{_size(input_shape)} to have {w_in} channels, but got {c_in} "
                            f"channels instead")
    c_out = c_out_g * g
    if bias_shape is not None and tuple(bias_shape) != (c_out,):
        raise ArgumentError(f"Given transposed=1, weight of size {_size(weight_shape)}, expected "
                            f"bias to be 1-dimensional with {c_out} elements, but got bias of "
                            f"size {_size(bias_shape)} instead")
    if min(kh, kw) <= 0:
        raise ArgumentError(f"{op}: kernel size must be positive, got weight of size "
                            f"{_size(weight_shape)}")
    _check_planes(input_shape)
    _check_limit(op, INDEX_MAX, stride=s, padding=p, dilation=d, output_padding=op_)
    out = tuple((i - 1) * s_ - 2 * p_ + d_ * (k - 1) + o + 1
                for i, k, s_, p_, o, d_ in zip((h, w), (kh, kw), s, p, op_, d))
    if min(out) < 1:
        raise ArgumentError(f"Given input size per channel: ({h} x {w}). Calculated output size "
                            f"per channel: ({out[0]} x {out[1]}). Output size is too small")
    _check_limit(op, INDEX_MAX, output_size=out,
                 padded_output_size=tuple(o + 2 * q for o, q in zip(out, p)))
    if check_output:
        check_buffer(f"{op}: the output", (n, c_out) + out, 8)
    return ConvSpec(s, p, d, g, (kh, kw), out, (h, w))


# --------------------------------------------------------------------------- pooling


def _pool_out(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """PyTorch's pooling_output_shape: with ceil_mode the last window must start inside
    the input or its left padding."""
    eff = d * (k - 1) + 1
    if ceil_mode:
        out = -(-(size + 2 * p - eff) // s) + 1
        if (out - 1) * s >= size + p:
            out -= 1
    else:
        out = (size + 2 * p - eff) // s + 1
    return out


@_memo
def pool2d_spec(input_shape, kernel_size, stride=None, padding=0, dilation=1,
                ceil_mode=False, count_include_pad=True, divisor_override=None,
                op: str = "max_pool2d", check_output: bool = True) -> PoolSpec:
    """Check a pooling call; ``input_shape`` is 4-D (N, C, H, W). ``check_output``: the
    output must be an array NumPy can hold (not for size helpers)."""
    k = _pair(kernel_size, "kernel_size")
    s = k if stride is None or (isinstance(stride, (list, tuple)) and len(stride) == 0) \
        else _pair(stride, "stride")
    p = _pair(padding, "padding")
    d = _pair(dilation, "dilation")
    if min(k) <= 0:
        raise ArgumentError(f"kernel size should be greater than zero, but got kH: {k[0]} "
                            f"kW: {k[1]}")
    if min(s) <= 0:
        raise ArgumentError(f"stride should be greater than zero, but got dH: {s[0]} dW: {s[1]}")
    if min(d) <= 0:
        raise ArgumentError(f"dilation should be greater than zero, but got dilationH: {d[0]} "
                            f"dilationW: {d[1]}")
    if min(p) < 0:
        raise ArgumentError(f"pad must be non-negative, but got pad: {min(p)}")
    _check_limit(op, INT_MAX, kernel_size=k, stride=s, padding=p, dilation=d)
    for pi, ki, di in zip(p, k, d):
        if pi > (di * (ki - 1) + 1) // 2:
            raise ArgumentError(f"pad should be at most half of effective kernel size, but got "
                                f"pad={pi}, kernel_size={ki} and dilation={di}")
    if divisor_override is not None:
        if not _is_int(divisor_override):
            raise TypeError(f"divisor_override must be an int or None, got {divisor_override!r}")
        if divisor_override == 0:
            raise ArgumentError("divisor must be not zero")
        if abs(divisor_override) > MAX_BYTES:
            raise ArgumentError(f"{op}: divisor_override {divisor_override} is too large; a "
                                f"64-bit integer is at most {MAX_BYTES} in magnitude")
    n, c, h, w = (int(v) for v in input_shape)
    out = (_pool_out(h, k[0], s[0], p[0], d[0], bool(ceil_mode)),
           _pool_out(w, k[1], s[1], p[1], d[1], bool(ceil_mode)))
    if min(out) < 1:
        raise ArgumentError(f"Given input size: ({c}x{h}x{w}). Calculated output size: "
                            f"({c}x{out[0]}x{out[1]}). Output size is too small")
    for axis, args in zip(("row", "column"), zip((h, w), s, p, d, out)):
        bad = _first_uncovered(*args)
        if bad is not None:  # only possible with dilation: the taps jump over the input
            raise ArgumentError(f"{op}: the pooling window of output {axis} {bad} covers "
                                f"no input element (kernel_size={k}, dilation={d}, "
                                f"padding={p}); use less padding or dilation")
    if check_output:
        check_buffer(f"{op}: the output", (n, c) + out, 8)
    return PoolSpec(k, s, p, d, bool(ceil_mode), (h, w), out, bool(count_include_pad),
                    None if divisor_override is None else int(divisor_override))


def _first_uncovered(size: int, s: int, p: int, d: int, out: int) -> Optional[int]:
    """The first of ``out`` pooling windows (stride s, padding p, dilation d) along an axis
    of ``size`` whose taps all miss the input, or None. O(log) in the sizes.

    A window starting at ``o*s - p >= 0`` reads its start (inside the input, by the output
    size rule). One starting in the padding reads first at ``(o*s - p) mod d``: it misses
    the input when that is ``>= size``. So: the least ``o < min(out, ceil(p/s))`` with
    ``(s*o - p) mod d`` in ``[size, d - 1]``."""
    last = min(out, -(-p // s))             # windows [0, last) start in the padding
    if last <= 0 or d <= size:
        return None
    # s*o mod d must lie in [size + p, d - 1 + p] mod d: one interval, or two if it wraps
    lo, hi = (size + p) % d, (d - 1 + p) % d
    parts = [(lo, hi)] if lo <= hi else [(lo, d - 1), (0, hi)]
    hits = [o for o in (_least_multiple_in(s % d, d, a, b) for a, b in parts) if o is not None]
    first = min(hits, default=None)
    return first if first is not None and first < last else None


def _least_multiple_in(a: int, m: int, lo: int, hi: int) -> Optional[int]:
    """The least x >= 0 with ``lo <= a*x mod m <= hi`` (0 <= lo <= hi < m), or None.

    Euclid's recursion: if no multiple of ``a`` lies in [lo, hi] without wrapping, a
    solution wraps y times, a*x = m*y + r, and y is the least with ``m*y mod a`` in an
    interval of the same kind, modulo a (so the sizes shrink as in gcd)."""
    if lo == 0:
        return 0
    a %= m
    if a == 0:
        return None
    x = -(-lo // a)
    if a * x <= hi:
        return x
    y = _least_multiple_in(m % a, a, (a - hi % a) % a, (a - lo % a) % a)
    return None if y is None else -(-(lo + m * y) // a)


def tiles(spec: PoolSpec) -> bool:
    """The windows lie side by side without gaps, overlap or padding and cover the input
    exactly: every input cell is in one window (the course's 2x2 stride-2 pooling of even
    planes). Both twins' pooling take it: the compiled one keeps it in its Pool struct."""
    return (spec.stride == spec.kernel_size and spec.padding == (0, 0)
            and spec.dilation == (1, 1)
            and all(o * k == i for o, k, i in zip(spec.out_size, spec.kernel_size,
                                                   spec.in_size)))


def first_taps(spec: PoolSpec):
    """(rows (H_out,), columns (W_out,)), int64 arrays: each window's first tap inside the
    input, where max pooling's search starts (and the index of an all -inf window). A
    window starting at ``o*stride - padding < 0`` reads first at that start modulo the
    dilation (the checks made sure it is inside)."""
    import numpy as np
    return tuple(np.where(start >= 0, start, start % d) for start, d in
                 ((np.arange(o, dtype=np.int64) * s - p, d) for o, s, p, d in
                  zip(spec.out_size, spec.stride, spec.padding, spec.dilation)))


# --------------------------------------------------------------------------- linear


def linear_shapes(input_shape, weight_shape, bias_shape):
    """Check a linear call: input (*, in_features), weight (out_features, in_features),
    bias (out_features,) or None. Returns the leading dims ``*`` of input."""
    if len(input_shape) == 0:
        raise ArgumentError(f"both arguments to linear need to be at least 1D, but they are "
                            f"0D and {len(weight_shape)}D")
    if len(weight_shape) != 2:
        raise ArgumentError(f"linear: expected a 2-D weight of shape (out_features, "
                            f"in_features), but got weight of size {_size(weight_shape)}")
    out_f, in_f = (int(v) for v in weight_shape)
    if int(input_shape[-1]) != in_f:
        rows = prod(input_shape[:-1])
        raise ArgumentError(f"mat1 and mat2 shapes cannot be multiplied ({rows}x"
                            f"{int(input_shape[-1])} and {in_f}x{out_f})")
    if bias_shape is not None and tuple(bias_shape) != (out_f,):
        raise ArgumentError(f"Given weight of size {_size(weight_shape)}, expected bias to be "
                            f"1-dimensional with {out_f} elements, but got bias of size "
                            f"{_size(bias_shape)} instead")
    return tuple(int(v) for v in input_shape[:-1])


def touching(spec: ConvSpec):
    """The outputs whose windows overlap the input, and the convolution restricted to them.

    Windows that lie wholly in the padding read only zeros: their outputs are the bias,
    and they add nothing to the input and weight gradients. Without them, the padding is
    below stride + kernel, the stride is 1 where one window is left and the dilation 1
    where the kernel has one tap: small values, for twins that pad explicitly or take
    32-bit arguments (torch's transposed convolution). A spec whose windows all touch the
    input (and whose strides are at most MODERATE_STRIDE) comes back unchanged. Returns
    ((row slice, column slice), spec), or None when no window overlaps the input. The
    spec's padding may become negative: the first window kept starts inside the input."""
    keep, stride, pad, out, dil = [], [], [], [], []
    for o, s, p, d, k, i in zip(spec.out_size, spec.stride, spec.padding, spec.dilation,
                                spec.kernel_size, spec.in_size):
        o0 = max(0, (p - d * (k - 1) - 1) // s + 1)         # first window ending after p
        o1 = min(o, (p + i + s - 1) // s)                   # first starting at p + i or later
        if o1 <= o0:
            return None
        keep.append(slice(o0, o1))
        stride.append(s if o1 - o0 > 1 or s <= MODERATE_STRIDE else 1)   # one window
        pad.append(p - o0 * s)                              # < 0: starts inside
        out.append(o1 - o0)
        dil.append(d if k > 1 else 1)                       # one tap: no dilation
    return tuple(keep), spec._replace(stride=tuple(stride), padding=tuple(pad),
                                      dilation=tuple(dil), out_size=tuple(out))


# --------------------------------------------------------------------------- public sizes


def conv2d_output_shape(input_size, kernel_size, stride=1, padding=0, dilation=1):
    """(H_out, W_out) of a conv2d on spatial size ``input_size`` = (H, W) or an int.

    ``padding`` may be an int, a pair, 'valid' or 'same'. Example: a 3x3 kernel with
    padding 1 keeps 28x28: ``conv2d_output_shape(28, 3, padding=1) == (28, 28)``.
    """
    i = _pair(input_size, "input_size")
    k = _pair(kernel_size, "kernel_size")
    spec = conv2d_spec((0, 1) + i, (1, 1) + k, None, stride, padding, dilation, 1,
                       check_output=False)
    return spec.out_size


def conv_transpose2d_output_shape(input_size, kernel_size, stride=1, padding=0,
                                  output_padding=0, dilation=1):
    """(H_out, W_out) = (H - 1)*stride - 2*padding + dilation*(k - 1) + output_padding + 1,
    with conv_transpose2d's checks (an output smaller than 1 is an error)."""
    i, k = _pair(input_size, "input_size"), _pair(kernel_size, "kernel_size")
    spec = conv_transpose2d_spec((0, 1) + i, (1, 1) + k, None, stride, padding, output_padding,
                                 1, dilation, check_output=False)
    return spec.in_size


def pool2d_output_shape(input_size, kernel_size, stride=None, padding=0, dilation=1,
                        ceil_mode=False):
    """(H_out, W_out) of max_pool2d / avg_pool2d on spatial size ``input_size``.

    Example: ``pool2d_output_shape(28, 2) == (14, 14)``.
    """
    i = _pair(input_size, "input_size")
    return pool2d_spec((0, 1) + i, kernel_size, stride, padding, dilation, ceil_mode,
                       check_output=False).out_size


def prod(shape) -> int:
    """The product of a shape's sizes (ints, or anything ``int`` takes)."""
    if type(shape) is tuple and _INTS.issuperset(map(type, shape)):
        return math.prod(shape)
    return int(math.prod(int(s) for s in shape))


# --------------------------------------------------------------------------- kernel limits


def check_buffer(what: str, shape, itemsize: int) -> None:
    """``shape`` of ``itemsize``-byte elements is addressable (at most MAX_BYTES), else
    ArgumentError naming ``what`` and its size. Zero-length axes count as 1, as in NumPy."""
    n = math.prod(max(1, int(s)) for s in shape) * int(itemsize)
    if n > MAX_BYTES:
        raise ArgumentError(f"{what} would have size {_size(shape)}: {n} bytes, too large "
                            "to address (at most 2**63 - 1)")


def check_gemm_sizes(spec: ConvSpec, c_in: int, c_out: int) -> None:
    """The compiled twin's GEMMs fit BLAS's C ``int`` sizes (INT_MAX), else ArgumentError.

    The compiled twin multiplies (C_out/groups x K) by (K x columns), K = C_in/groups*kH*kW,
    with the plane of the convolution's output (conv2d's output, conv_transpose2d's input)
    as the leading dimension; tiles keep the columns below that plane's size. It chooses to
    refuse, rather than split, a GEMM that would not fit: only planes of 2**31 pixels or
    more, or weights with 2**31 rows or columns per group, get here, and the NumPy and torch
    twins compute those.
    """
    g, (kh, kw), (ho, wo) = spec.groups, spec.kernel_size, spec.out_size
    for what, value in (("the output channels per group C_out/groups", c_out // g),
                        ("the column-matrix rows C_in/groups*kH*kW", c_in // g * kh * kw),
                        ("the plane H_out*W_out of the convolution's output (conv_transpose2d's "
                         "input)", ho * wo)):
        if value > INT_MAX:
            raise ArgumentError(f"{what} = {value} is too large for the compiled twin's BLAS "
                                f"(C int, at most {INT_MAX}); the 'numpy' and 'torch' backends "
                                "compute it")


def check_matmul_sizes(m: int, n: int, k: int) -> None:
    """The compiled twin's matmul (M x K) @ (K x N) fits BLAS's C ``int`` sizes, else
    ArgumentError; the 'numpy' and 'torch' backends compute larger products."""
    for what, value in (("rows M", m), ("columns N", n), ("inner size K", k)):
        if value > INT_MAX:
            raise ArgumentError(f"matmul: the {what} = {value} is too large for the compiled "
                                f"twin's BLAS (C int, at most {INT_MAX}); the 'numpy' and "
                                "'torch' backends compute it")
