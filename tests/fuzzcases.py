"""Fuzz cases: random and hostile argument sets for each op, and how a child runs one.

How the pieces fit::

    generate(op, rng) -> case      plain JSON data: the op, its arrays as recipes (shape,
                                   dtype, fill, layout, seed) and its keyword arguments;
                                   about one case in three is mutated to be hostile
    execute(case) -> result        in a worker child (``_child.py``), on its backend:
                                   builds the arrays, calls cnnlab, returns arrays (or, for
                                   the size helpers, cnnlab's answer beside torch's)
    classify(error) -> kind        "refused" (a deliberate, documented error) or
                                   "unexpected" (anything else leaking out)
    mismatch(op, got, want)        None, or why two twins' values differ

Arrays are recipes, not data, so a case stays small and replays exactly. Dense arrays stay
below ~10**5 elements; huge dimensions appear only in arrays with no elements (an empty
batch of 10**12-row planes), so no case needs real memory or long compute: a case that
takes more than the harness's time limit has hung.
"""
from __future__ import annotations

import math
import time

import numpy as np

CONV_OPS = ["conv2d", "conv2d_backward", "conv_transpose2d", "conv_transpose2d_backward"]
POOL_OPS = ["max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward"]
LAB_OPS = ["lab_conv", "lab_pool", "lab_plane", "lab_zero_pad"]
HELPERS = ["conv2d_output_shape", "conv_transpose2d_output_shape", "pool2d_output_shape"]
OPS = CONV_OPS + POOL_OPS + LAB_OPS + HELPERS

# Values at and past every limit the code has: C int, 2**62 - 1, int64, and the issue's.
HOSTILE_INTS = [0, -1, -7, 2**31 - 1, 2**31, 2**32 + 1, 46341, 65535, 65536, 2**62 - 1,
                2**62, 2**63 - 1, 2**63, -2**63, 10**10, 10**18, 10**30]
HOSTILE_OTHER = [1.5, True, None, "2", "same", "valid", "bogus", [1, 2, 3], [], [2],
                 {"np": 3}, [2, -1], [1.0, 2]]
REFUSED = {"ArgumentError", "DtypeError", "TypeError", "MemoryError", "_ArrayMemoryError"}


# --------------------------------------------------------------------------- arrays


def array_recipe(rng, shape, dtype, fill="normal"):
    return {"shape": [int(s) for s in shape], "dtype": dtype, "fill": fill, "layout": "c",
            "seed": int(rng.integers(2**31))}


def make_array(r):
    """The array a recipe describes (values from its own seed)."""
    rng = np.random.default_rng(r["seed"])
    shape, fill = tuple(r["shape"]), r["fill"]
    if fill == "zeros" or math.prod(shape) == 0 or fill == "sparse":
        a = np.zeros(shape, np.float64)
        if fill == "sparse" and a.size:
            flat = a.reshape(-1)
            flat[rng.integers(0, a.size, 8)] = rng.standard_normal(8)
    elif fill == "ints":                                    # ties for the max
        a = rng.integers(-3, 4, shape).astype(np.float64)
    elif fill == "distinct":                                # no ties
        a = rng.permutation(math.prod(shape)).reshape(shape) / 7.0 - 3
    else:
        a = rng.standard_normal(shape)
        if fill == "special":
            mask = rng.random(shape) < 0.25
            a[mask] = rng.choice([np.nan, np.inf, -np.inf, 0.0, -0.0], mask.sum())
    a = a.astype(r["dtype"])
    layout = r.get("layout", "c")
    if layout == "f":
        a = np.asfortranarray(a)
    elif layout == "strided" and a.ndim:
        wide = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
        wide[..., ::2] = a
        a = wide[..., ::2]
    elif layout == "negative" and a.ndim:
        a = np.ascontiguousarray(a[..., ::-1])[..., ::-1]
    elif layout == "readonly":
        a.flags.writeable = False
    return a


def _value(v):
    """A JSON keyword value back as Python: {"np": n} is a NumPy integer."""
    if isinstance(v, dict) and set(v) == {"np"}:
        return np.int64(v["np"])
    if isinstance(v, list):
        return tuple(_value(x) for x in v)
    return v


# --------------------------------------------------------------------------- generation


def _dtype(rng):
    return "float32" if rng.random() < 0.5 else "float64"


def _conv(rng, op):
    transposed = "transpose" in op
    g = int(rng.choice([1, 1, 1, 2, 3]))
    cin, cout = g * int(rng.integers(0 if rng.random() < 0.05 else 1, 4)), \
        g * int(rng.integers(1, 4))
    k = [int(rng.integers(1, 6)), int(rng.integers(1, 6))]
    n = int(rng.integers(0, 4)) if rng.random() < 0.9 else 0
    hw = [int(rng.integers(0 if rng.random() < 0.05 else 1, _side(rng))) for _ in range(2)]
    dt = _dtype(rng)
    fill = str(rng.choice(["normal", "normal", "ints", "sparse", "zeros"]))
    kw = {"stride": _int_or_pair(rng, 1, 4), "dilation": _int_or_pair(rng, 1, 3),
          "groups": g}
    if transposed:
        kw["padding"] = _int_or_pair(rng, 0, 3)
        s, d = (kw["stride"],) * 2 if isinstance(kw["stride"], int) else kw["stride"], \
            (kw["dilation"],) * 2 if isinstance(kw["dilation"], int) else kw["dilation"]
        kw["output_padding"] = [int(rng.integers(0, max(a, b))) for a, b in zip(s, d)]
        weight = [cin, cout // g] + k
    else:
        kw["padding"] = (_int_or_pair(rng, 0, 4) if rng.random() < 0.8 else
                         str(rng.choice(["same", "valid"])))
        if kw["padding"] == "same":
            kw["stride"] = 1
        weight = [cout, cin // g] + k
    arrays = {"input": array_recipe(rng, [n, cin] + hw, dt, fill),
              "weight": array_recipe(rng, weight, dt, fill)}
    if not op.endswith("backward") and rng.random() < 0.7:
        arrays["bias"] = array_recipe(rng, [cout], dt)
    if rng.random() < 0.1:                                   # unbatched (C, H, W)
        arrays["input"]["shape"] = arrays["input"]["shape"][1:]
    return {"op": op, "arrays": arrays, "kwargs": kw}


def _pool(rng, op):
    avg = op.startswith("avg")
    k = [int(rng.integers(1, 6)), int(rng.integers(1, 6))]
    d = [1, 1] if avg else [int(rng.integers(1, 4)), int(rng.integers(1, 4))]
    p = [int(rng.integers(0, (di * (ki - 1) + 1) // 2 + 1)) for ki, di in zip(k, d)]
    n, c = int(rng.integers(0, 4)), int(rng.integers(0 if rng.random() < 0.05 else 1, 4))
    hw = [int(rng.integers(1, _side(rng))) for _ in range(2)]
    fill = str(rng.choice(["normal", "ints", "special", "distinct"]))
    kw = {"kernel_size": k, "stride": None if rng.random() < 0.2 else _int_or_pair(rng, 1, 4),
          "padding": p, "ceil_mode": bool(rng.random() < 0.5)}
    if avg:
        kw["count_include_pad"] = bool(rng.random() < 0.5)
        if rng.random() < 0.3:
            kw["divisor_override"] = int(rng.choice([1, 2, 3, 7, -2, 1000]))
    else:
        kw["dilation"] = d
    shape = ([c] if rng.random() < 0.1 else [n, c]) + hw            # sometimes unbatched
    arrays = {"input": array_recipe(rng, shape, _dtype(rng), fill)}
    case = {"op": op, "arrays": arrays, "kwargs": kw}
    if op == "max_pool2d_backward":
        case["with_indices"] = bool(rng.random() < 0.5)
    return case


def _lab(rng, op):
    dt = _dtype(rng)
    if op == "lab_conv":
        f, c, nc = int(rng.integers(1, 5)), int(rng.integers(1, 4)), int(rng.integers(1, 4))
        hw = [int(rng.integers(1, 10)) for _ in range(2)]
        arrays = {"A_prev": array_recipe(rng, [int(rng.integers(0, 3))] + hw + [c], dt),
                  "W": array_recipe(rng, [f, f, c, nc], dt),
                  "b": array_recipe(rng, [1, 1, 1, nc], dt)}
        return {"op": op, "arrays": arrays,
                "kwargs": {"hparameters": {"stride": int(rng.integers(1, 4)),
                                           "pad": int(rng.integers(0, 4))}}}
    if op == "lab_pool":
        f = int(rng.integers(1, 5))
        shape = [int(rng.integers(0, 3)), int(rng.integers(f, 12)), int(rng.integers(f, 12)),
                 int(rng.integers(1, 4))]
        fill = str(rng.choice(["normal", "ints", "distinct"]))
        return {"op": op, "arrays": {"A_prev": array_recipe(rng, shape, dt, fill)},
                "kwargs": {"hparameters": {"f": f, "stride": int(rng.integers(1, 4))},
                           "mode": str(rng.choice(["max", "average"]))}}
    if op == "lab_plane":
        return {"op": op, "arrays": {
            "image": array_recipe(rng, [int(rng.integers(1, 10)) for _ in range(2)], dt),
            "kernel": array_recipe(rng, [int(rng.integers(1, 6)) for _ in range(2)], dt)},
            "kwargs": {"mode": str(rng.choice(["full", "same", "valid"])),
                       "convolve": bool(rng.random() < 0.5)}}
    shape = [int(rng.integers(0, 3))] + [int(rng.integers(0, 6)) for _ in range(2)] + [2]
    return {"op": op, "arrays": {"X": array_recipe(rng, shape, dt)},
            "kwargs": {"pad": _int_or_pair(rng, 0, 4)}}


def _helper(rng, op):
    big = rng.random() < 0.5
    size = [int(rng.integers(1, 10**15 if big else 40)) for _ in range(2)]
    kw = {"input_size": size, "kernel_size": _int_or_pair(rng, 1, 2**20 if big else 8),
          "stride": _int_or_pair(rng, 1, 2**20 if big else 5),
          "dilation": _int_or_pair(rng, 1, 2**10 if big else 4)}
    if op == "conv_transpose2d_output_shape":
        kw["padding"] = _int_or_pair(rng, 0, 4)
        kw["output_padding"] = 0
    elif op == "pool2d_output_shape":
        k = kw["kernel_size"] if isinstance(kw["kernel_size"], list) else [kw["kernel_size"]] * 2
        kw["padding"] = [int(rng.integers(0, ki // 2 + 1)) for ki in k]
        kw["ceil_mode"] = bool(rng.random() < 0.5)
    else:
        kw["padding"] = _int_or_pair(rng, 0, 2**20 if big else 5)
    return {"op": op, "arrays": {}, "kwargs": kw}


def _side(rng):
    """Exclusive bound of a plane's side: mostly small, sometimes large enough for the
    compiled twin's tiles, threads and vectorised rows."""
    return 13 if rng.random() < 0.85 else 70


def _int_or_pair(rng, lo, hi):
    if rng.random() < 0.5:
        return int(rng.integers(lo, hi + 1))
    return [int(rng.integers(lo, hi + 1)), int(rng.integers(lo, hi + 1))]


def _hostile(rng, case):
    """Mutate one or two things: an argument to a value past a limit or of a wrong type,
    an array's dtype, rank, dimensions or memory layout, a wrong gradient shape."""
    for _ in range(int(rng.integers(1, 3))):
        kind = rng.random()
        kw = case["kwargs"]
        keys = [k for k in kw if k not in ("hparameters", "mode", "convolve", "ceil_mode",
                                           "count_include_pad")]
        if "hparameters" in kw and rng.random() < 0.5:
            hp = kw["hparameters"]
            key = str(rng.choice(sorted(hp)))
            hp[key] = _hostile_value(rng)
        elif kind < 0.5 and keys:
            key = str(rng.choice(keys))
            value = _hostile_value(rng)
            if isinstance(kw[key], list) and len(kw[key]) == 2 and rng.random() < 0.5:
                value = [kw[key][0], value] if rng.random() < 0.5 else [value, kw[key][1]]
            kw[key] = value
        elif case["arrays"]:
            name = str(rng.choice(sorted(case["arrays"])))
            r = case["arrays"][name]
            what = rng.random()
            if what < 0.25:
                r["dtype"] = str(rng.choice(["float16", "int64", "int32", "bool",
                                             "complex64", "float32", "float64"]))
            elif what < 0.45:
                r["layout"] = str(rng.choice(["f", "strided", "negative", "readonly"]))
            elif what < 0.6 and r["shape"]:
                r["shape"] = (r["shape"][:-1] if rng.random() < 0.5
                              else r["shape"] + [int(rng.integers(1, 3))])
            elif r["shape"]:
                i = int(rng.integers(len(r["shape"])))
                r["shape"][i] = 0 if rng.random() < 0.5 else int(rng.choice([7, 31]))
                if rng.random() < 0.3:                     # a huge axis of an empty array
                    j = (i + 1) % len(r["shape"])
                    r["shape"][j] = int(rng.choice([2**31, 10**12, 2**40]))
                    r["shape"][i] = 0
        else:
            case["grad_shape"] = "wrong"
    return case


def _hostile_value(rng):
    if rng.random() < 0.7:
        return int(rng.choice(HOSTILE_INTS))
    return HOSTILE_OTHER[int(rng.integers(len(HOSTILE_OTHER)))]


def generate(op, rng, hostile_fraction=1 / 3):
    make = (_conv if op in CONV_OPS else _pool if op in POOL_OPS else
            _lab if op in LAB_OPS else _helper)
    case = make(rng, op)
    if rng.random() < hostile_fraction:
        case = _hostile(rng, case)
        case["hostile"] = True
    return case


# --------------------------------------------------------------------------- execution


class Unbuildable(Exception):
    """A case whose input arrays NumPy cannot create (a hostile shape too large)."""


def execute(case):
    """Run a case on the current backend (called in the worker child)."""
    import cnnlab.functional as F
    from cnnlab import lab

    op = case["op"]
    try:
        a = {name: make_array(r) for name, r in case["arrays"].items()}
    except (ValueError, MemoryError) as e:       # NumPy cannot hold it: not a test of cnnlab
        raise Unbuildable(str(e)) from None
    kw = {k: (_value(v) if k != "hparameters" else {hk: _value(hv) for hk, hv in v.items()})
          for k, v in case["kwargs"].items()}
    if op in HELPERS:
        return _helper_answers(op, kw)
    if op == "lab_conv":
        z, cache = lab.conv_forward(a["A_prev"], a["W"], a["b"], kw["hparameters"])
        return (z,) + tuple(lab.conv_backward(_grad_like(case, z), cache))
    if op == "lab_pool":
        y, cache = lab.pool_forward(a["A_prev"], kw["hparameters"], kw["mode"])
        return y, lab.pool_backward(_grad_like(case, y), cache, kw["mode"])
    if op == "lab_plane":
        return _plane(a["image"], a["kernel"], kw["mode"], kw["convolve"])
    if op == "lab_zero_pad":
        out = lab.zero_pad(a["X"], kw["pad"])
        ph, pw = (kw["pad"],) * 2 if np.ndim(kw["pad"]) == 0 else (tuple(kw["pad"]) * 2)[-2:]
        np.testing.assert_array_equal(out, np.pad(a["X"], ((0, 0), (ph, ph), (pw, pw),
                                                           (0, 0))))
        return out
    x = a["input"]
    forward = getattr(F, op.replace("_backward", ""))
    if op == "max_pool2d":
        return forward(x, **kw, return_indices=True)
    if op in ("conv2d", "conv_transpose2d"):
        return forward(x, a["weight"], a.get("bias"), **kw)
    if op in ("avg_pool2d", "avg_pool2d_backward"):
        y = forward(x, **kw)
        return y if op == "avg_pool2d" else F.avg_pool2d_backward(_grad_like(case, y), x, **kw)
    if op == "max_pool2d_backward":
        y, idx = forward(x, **kw, return_indices=True)
        return F.max_pool2d_backward(_grad_like(case, y), x, **kw,
                                     indices=idx if case.get("with_indices") else None)
    y = forward(x, a["weight"], None, **kw)
    return getattr(F, op)(_grad_like(case, y), x, a["weight"], **kw)


def _grad_like(case, y):
    """A gradient for output y (normal values); of a wrong shape if the case says so."""
    shape = list(y.shape)
    if case.get("grad_shape") == "wrong" and shape:
        shape[-1] += 1
    recipe = {"shape": shape, "dtype": str(y.dtype), "fill": "normal", "layout": "c",
              "seed": 1234}
    return make_array(recipe)


def _plane(image, kernel, mode, convolve):
    """lab's one-channel correlate2d / convolve2d, checked against scipy.signal here."""
    from scipy import signal

    from cnnlab import lab
    ours = (lab.convolve2d if convolve else lab.correlate2d)(image, kernel, mode)
    theirs = (signal.convolve2d if convolve else signal.correlate2d)(
        image.astype(np.float64), kernel.astype(np.float64), mode)
    tol = 1e-4 if ours.dtype == np.float32 else 1e-10
    np.testing.assert_allclose(ours, theirs, rtol=tol, atol=tol * max(1, np.abs(theirs).max()))
    return ours


def _helper_answers(op, kw):
    """[cnnlab's answer or None, its error or None, torch's answer or None, seconds]."""
    import cnnlab
    start = time.perf_counter()
    try:
        value, error = list(getattr(cnnlab, op)(**kw)), None
    except Exception as e:  # noqa: BLE001 - reported back
        value, error = None, f"{type(e).__name__}: {str(e)[:300]}"
    seconds = time.perf_counter() - start
    return [value, error, _torch_shape(op, kw), seconds]


def _torch_shape(op, kw):
    """The same output size from torch's meta tensors (no memory), or None."""
    try:
        import torch
        import torch.nn.functional as TF
    except ImportError:
        return None

    def pair(v):
        return tuple(v) if isinstance(v, tuple) else (v, v)
    try:
        h, w = pair(kw["input_size"])
        kh, kw_ = pair(kw["kernel_size"])
        x = torch.empty(1, 1, h, w, device="meta")
        weight = torch.empty(1, 1, kh, kw_, device="meta")
        if op == "conv2d_output_shape":
            y = TF.conv2d(x, weight, None, kw["stride"], kw["padding"], kw["dilation"])
        elif op == "conv_transpose2d_output_shape":
            y = TF.conv_transpose2d(x, weight, None, kw["stride"], kw["padding"],
                                    kw["output_padding"], 1, kw["dilation"])
        else:
            y = TF.max_pool2d(x, kw["kernel_size"], kw["stride"], kw["padding"],
                              kw["dilation"], kw["ceil_mode"])
        return list(y.shape[2:])
    except Exception:  # noqa: BLE001 - torch refuses or cannot represent it: no oracle
        return None


# --------------------------------------------------------------------------- verdicts


def classify(error: str) -> str:
    """'refused' for cnnlab's deliberate errors (and running out of memory), 'unbuildable'
    when the case's own arrays could not be made, else 'unexpected'."""
    name = error.split(":", 1)[0]
    return "refused" if name in REFUSED else "unbuildable" if name == "Unbuildable" \
        else "unexpected"


def mismatch(op, got, want):
    """None when two twins' results agree, else a short description."""
    if op in HELPERS:
        value, error, torch_value, seconds = got
        if seconds > 0.5:
            return f"took {seconds:.2f} s (not O(1))"
        if error is not None and classify(error) == "unexpected":
            return f"unexpected {error}"
        if value is not None and torch_value is not None and tuple(value) != tuple(torch_value):
            return f"cnnlab {value} != torch {torch_value}"
        return None
    got = got if isinstance(got, tuple) else (got,)
    want = want if isinstance(want, tuple) else (want,)
    if len(got) != len(want):
        return f"{len(got)} results != {len(want)}"
    for i, (a, b) in enumerate(zip(got, want)):
        if a.shape != b.shape or a.dtype != b.dtype:
            return f"result {i}: {a.dtype}{list(a.shape)} != {b.dtype}{list(b.shape)}"
        if hasattr(a, "values"):                  # large results: the same sampled entries
            a, b = a.values, b.values
        if a.dtype.kind in "iu":
            if not np.array_equal(a, b):
                return f"result {i}: indices differ at {np.argwhere(a != b)[:3].tolist()}"
            continue
        tol = 2e-4 if a.dtype == np.float32 else 1e-9
        finite = np.abs(b[np.isfinite(b)])
        scale = max(1.0, float(finite.max())) if finite.size else 1.0
        if not np.allclose(a, b, rtol=tol, atol=tol * scale, equal_nan=True):
            bad = ~np.isclose(a, b, rtol=tol, atol=tol * scale, equal_nan=True)
            where = tuple(int(v) for v in np.argwhere(bad)[0])
            return f"result {i} at {where}: {a[where]!r} != {b[where]!r}"
    return None
