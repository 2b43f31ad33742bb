"""Compiled CPU recursions (numba): one parallel row per trajectory, a reverse loop over time.

Inputs arrive as ``[n_rows, n_steps, n_feat]`` views of the caller's tensors (no copy for
contiguous inputs, whatever ``time_dim`` is), so a row is one trajectory and the time loop walks
contiguous memory when ``n_feat == 1``. Each kernel performs the floating-point operations in
the same order as TorchRL 0.14.1's loop implementation, so float32 and float64 results match it
bit for bit (V-trace's importance ratios are computed by torch beforehand, TorchRL's own ``exp``).

Arithmetic stays in the array dtype: numba promotes ``int - float32`` to float64, so the
constant one is passed in as an argument of the right type instead of being written as a
literal. Episode ends are selected with branches, never multiplied in, so a NaN bootstrap at a
terminated step is never read. With ``check`` set, the data checks are fused into the same pass
and reported as bits in ``err`` (one int per row): finiteness costs one multiply-add per value
(x·0 is 0 for finite x and NaN otherwise), terminated ⇒ done one bitwise op. Per-step γ/λ ranges
are checked by the caller, and only when they are tensors.

The kernels are compiled on first use (or by ``warmup()``) for float32 and float64 with fixed
signatures, and cached on disk, so no call ever triggers a surprise recompilation.
"""

from __future__ import annotations

import ctypes
import threading
import types
from collections.abc import Callable
from typing import Any

from service.estimators._checks import NON_FINITE, TERMINATED_NOT_DONE

try:
    import numba
    from numba import prange

    AVAILABLE = True
except ImportError:  # the torch path covers everything, only slower
    numba = None
    prange = range
    AVAILABLE = False

__all__ = ["AVAILABLE", "get", "get_small", "use_threads", "warmup"]


def _gae(
    gamma, gamma_lmbda, value, next_value, reward, done, terminated, adv, target, err, one, check
):
    n_rows, n_steps, n_feat = value.shape
    zero = one - one
    for i in prange(n_rows):
        bad = 0
        probe = zero  # stays 0 unless a non-finite value was multiplied in (x·0 = NaN)
        for j in range(n_feat):
            a = zero
            for t in range(n_steps - 1, -1, -1):
                v = value[i, t, j]
                r = reward[i, t, j]
                g = gamma[i, t, j]
                k = terminated[i, t, j]
                d = done[i, t, j]
                if k:
                    delta = r - v
                else:
                    nv = next_value[i, t, j]
                    delta = (r + g * nv) - v
                    if check:
                        probe += nv * zero
                if check:
                    probe += v * zero + r * zero
                    bad |= k > d  # terminated without done
                a = delta if t == n_steps - 1 or d else delta + a * gamma_lmbda[i, t, j]
                adv[i, t, j] = a
                target[i, t, j] = a + v
        err[i] = bad * TERMINATED_NOT_DONE + (probe != zero) * NON_FINITE


def _td_lambda(
    gamma, lmbda, one_minus_lmbda, value, next_value, reward, done, terminated, adv, ret, err,
    one, check,
):  # fmt: skip
    # 1 − λ comes in precomputed: TorchRL forms it in λ's own dtype when λ is a tensor.
    n_rows, n_steps, n_feat = value.shape
    zero = one - one
    for i in prange(n_rows):
        bad = 0
        probe = zero
        for j in range(n_feat):
            g_next = zero
            for t in range(n_steps - 1, -1, -1):
                v = value[i, t, j]
                r = reward[i, t, j]
                g = gamma[i, t, j]
                lm = lmbda[i, t, j]
                k = terminated[i, t, j]
                d = done[i, t, j]
                nv = zero if k else next_value[i, t, j]
                if check:
                    probe += v * zero + r * zero + nv * zero
                    bad |= k > d  # terminated without done
                boot = nv if (t == n_steps - 1 or d) else g_next
                g_next = r + g * (one_minus_lmbda[i, t, j] * nv + lm * boot)
                ret[i, t, j] = g_next
                adv[i, t, j] = g_next - v
        err[i] = bad * TERMINATED_NOT_DONE + (probe != zero) * NON_FINITE


def _td_lambda_fixed(
    gamma, lmbda, one_minus_lmbda, value, next_value, reward, done, terminated, adv, ret, err,
    one, check,
):  # fmt: skip
    # rolling_gamma=False: start step t's γ, λ discount every later step of its trajectory.
    # TorchRL runs each start step's loop from the last step, resetting at every done; the
    # numbers before t's trajectory end are discarded by that reset, so this loop starts there.
    n_rows, n_steps, n_feat = value.shape
    zero = one - one
    for i in prange(n_rows):
        bad = 0
        probe = zero
        for j in range(n_feat):
            end = n_steps - 1  # the last step of step t's trajectory
            for t in range(n_steps - 1, -1, -1):
                k = terminated[i, t, j]
                d = done[i, t, j]
                if d:
                    end = t
                if check:
                    nv = zero if k else next_value[i, t, j]
                    probe += value[i, t, j] * zero + reward[i, t, j] * zero + nv * zero
                    bad |= k > d  # terminated without done
                g = gamma[i, t, j]
                lm = lmbda[i, t, j]
                oml = one_minus_lmbda[i, t, j]
                acc = zero
                for s in range(end, t - 1, -1):
                    nv = zero if terminated[i, s, j] else next_value[i, s, j]
                    boot = nv if s == end else acc
                    acc = reward[i, s, j] + g * (oml * nv + lm * boot)
                ret[i, t, j] = acc
                adv[i, t, j] = acc - value[i, t, j]
        err[i] = bad * TERMINATED_NOT_DONE + (probe != zero) * NON_FINITE


def _vtrace(
    gamma,
    lmbda,
    ratio,
    value,
    next_value,
    reward,
    done,
    terminated,
    rho_thresh,
    c_thresh,
    rho_pg_thresh,
    one,
    adv,
    vs_out,
    err,
    check,
):
    # ratio = exp(log_pi − log_mu), computed by torch beforehand as in the scalar kernel (the
    # caller checks the log-probabilities: log_pi = −inf gives ρ = 0). Thresholds are per step.
    n_rows, n_steps, n_feat = value.shape
    zero = one - one
    for i in prange(n_rows):
        bad = 0
        probe = zero
        for j in range(n_feat):
            acc = zero  # vs − V at t + 1
            vs_next = zero  # vs at t + 1
            for t in range(n_steps - 1, -1, -1):
                v = value[i, t, j]
                r = reward[i, t, j]
                g = gamma[i, t, j]
                lm = lmbda[i, t, j]
                rho = ratio[i, t, j]
                k = terminated[i, t, j]
                d = done[i, t, j]
                nv = zero if k else next_value[i, t, j]
                if check:
                    probe += v * zero + r * zero + nv * zero
                    bad |= k > d  # terminated without done
                delta = min(rho, rho_thresh[i, t, j]) * ((r + g * nv) - v)
                if t == n_steps - 1 or d:
                    acc = delta
                    boot = nv
                else:
                    acc = delta + (g * (lm * min(rho, c_thresh[i, t, j]))) * acc
                    # rlax's q bootstrap; exactly vs_{t+1} when lmbda == 1
                    boot = lm * vs_next + (one - lm) * nv
                vs_next = acc + v
                vs_out[i, t, j] = vs_next
                adv[i, t, j] = min(rho, rho_pg_thresh[i, t, j]) * (
                    (r + g * (nv if k else boot)) - v
                )
        err[i] = bad * TERMINATED_NOT_DONE + (probe != zero) * NON_FINITE


# The common case, specialised: one feature ([rows, T] contiguous), scalar γ, λ. Loads and
# stores stream through contiguous memory with no stride arithmetic, which makes these about
# three times faster than the general kernels above. The data checks are folded into the
# outputs: a NaN/Inf input that enters the result makes that step's output non-finite, so one
# multiply-add on the output (x·0) per step replaces one per input.


def _gae_scalar(gamma, gamma_lmbda, value, next_value, reward, done, terminated, adv, target, err,
                check):  # fmt: skip
    n_rows, n_steps = value.shape
    zero = gamma - gamma
    for i in prange(n_rows):
        probe = zero
        bad = 0
        a = zero
        for t in range(n_steps - 1, -1, -1):
            v = value[i, t]
            k = terminated[i, t]
            d = done[i, t]
            delta = reward[i, t] - v if k else (reward[i, t] + gamma * next_value[i, t]) - v
            a = delta if t == n_steps - 1 or d else delta + a * gamma_lmbda
            adv[i, t] = a
            target[i, t] = a + v
            if check:
                probe += a * zero
                bad |= k > d
        err[i] = bad * TERMINATED_NOT_DONE + (probe != zero) * NON_FINITE


def _td_lambda_scalar(gamma, lmbda, one_minus_lmbda, value, next_value, reward, done, terminated,
                      adv, ret, err, check):  # fmt: skip
    n_rows, n_steps = value.shape
    zero = gamma - gamma
    for i in prange(n_rows):
        probe = zero
        bad = 0
        g_next = zero
        for t in range(n_steps - 1, -1, -1):
            k = terminated[i, t]
            d = done[i, t]
            nv = zero if k else next_value[i, t]
            boot = nv if (t == n_steps - 1 or d) else g_next
            g_next = reward[i, t] + gamma * (one_minus_lmbda * nv + lmbda * boot)
            ret[i, t] = g_next
            a = g_next - value[i, t]
            adv[i, t] = a
            if check:
                probe += a * zero
                bad |= k > d
        err[i] = bad * TERMINATED_NOT_DONE + (probe != zero) * NON_FINITE


def _vtrace_scalar(gamma, lmbda, one_minus_lmbda, ratio, value, next_value, reward, done,
                   terminated, rho_thresh, c_thresh, rho_pg_thresh, adv, vs_out, err,
                   check):  # fmt: skip
    # ratio = exp(log_pi − log_mu), computed by torch beforehand (vectorised, and the very
    # numbers TorchRL uses); the caller checks its finiteness. A NaN ratio still propagates:
    # min(NaN, c) is NaN.
    n_rows, n_steps = value.shape
    zero = gamma - gamma
    for i in prange(n_rows):
        bad = 0
        probe = zero
        acc = zero  # vs − V at t + 1
        vs_next = zero  # vs at t + 1
        for t in range(n_steps - 1, -1, -1):
            v = value[i, t]
            r = reward[i, t]
            rho = ratio[i, t]
            k = terminated[i, t]
            d = done[i, t]
            nv = zero if k else next_value[i, t]
            delta = min(rho, rho_thresh) * ((r + gamma * nv) - v)
            if t == n_steps - 1 or d:
                acc = delta
                boot = nv
            else:
                acc = delta + (gamma * (lmbda * min(rho, c_thresh))) * acc
                boot = lmbda * vs_next + one_minus_lmbda * nv
            vs_next = acc + v
            vs_out[i, t] = vs_next
            a = min(rho, rho_pg_thresh) * ((r + gamma * (nv if k else boot)) - v)
            adv[i, t] = a
            if check:
                probe += a * zero + vs_next * zero
                bad |= k > d
        err[i] = bad * TERMINATED_NOT_DONE + (probe != zero) * NON_FINITE


_PY: dict[str, Callable[..., None]] = {
    "gae": _gae,
    "td_lambda": _td_lambda,
    "td_lambda_fixed": _td_lambda_fixed,
    "vtrace": _vtrace,
    "gae_scalar": _gae_scalar,
    "td_lambda_scalar": _td_lambda_scalar,
    "vtrace_scalar": _vtrace_scalar,
}


def _signatures(name: str) -> list[Any]:
    sigs = []
    for ft in (numba.float32, numba.float64):
        # Coefficients may be read-only zero-stride broadcasts of a scalar.
        a3 = numba.types.Array(ft, 3, "A", readonly=True)
        c3 = ft[:, :, ::1]
        b3 = numba.boolean[:, :, ::1]
        e1 = numba.int32[::1]
        ck = numba.boolean
        c2 = ft[:, ::1]
        b2 = numba.boolean[:, ::1]
        if name == "gae_scalar":
            sigs.append(numba.void(ft, ft, c2, c2, c2, b2, b2, c2, c2, e1, ck))
        elif name == "td_lambda_scalar":
            sigs.append(numba.void(ft, ft, ft, c2, c2, c2, b2, b2, c2, c2, e1, ck))
        elif name == "vtrace_scalar":
            sigs.append(numba.void(ft, ft, ft, c2, c2, c2, c2, b2, b2, ft, ft, ft, c2, c2, e1, ck))
        elif name == "gae":
            sigs.append(numba.void(a3, a3, c3, c3, c3, b3, b3, c3, c3, e1, ft, ck))
        elif name == "td_lambda" or name == "td_lambda_fixed":
            sigs.append(numba.void(a3, a3, a3, c3, c3, c3, b3, b3, c3, c3, e1, ft, ck))
        else:
            sigs.append(numba.void(a3, a3, c3, c3, c3, c3, b3, b3, a3, a3, a3, ft, c3, c3, e1, ck))
    return sigs


# The small-call path: a C entry point per scalar kernel and dtype taking raw pointers, called
# through ctypes with the tensors' ``data_ptr()``s. A numba dispatcher call with seven numpy views
# costs ~20 µs at 1×8 (``Tensor.numpy()`` ~2 µs each, argument typing ~4 µs); this one ~4 µs. The
# body is the serial build of the same kernel on ``carray`` views of the same memory, so the
# numbers are the same.


def _gae_scalar_at(gamma, gamma_lmbda, value, next_value, reward, done, terminated, adv, target,
                   err, n_rows, n_steps, check):  # fmt: skip
    shape = (n_rows, n_steps)
    _gae_scalar_inline(
        gamma, gamma_lmbda, numba.carray(value, shape), numba.carray(next_value, shape),
        numba.carray(reward, shape), numba.carray(done, shape), numba.carray(terminated, shape),
        numba.carray(adv, shape), numba.carray(target, shape), numba.carray(err, (n_rows,)), check,
    )  # fmt: skip


def _vtrace_scalar_at(gamma, lmbda, one_minus_lmbda, rho_thresh, c_thresh, rho_pg_thresh, ratio,
                      value, next_value, reward, done, terminated, adv, vs_out, err, n_rows,
                      n_steps, check):  # fmt: skip
    # The thresholds come first here (scalars before pointers), the kernel's order inside.
    shape = (n_rows, n_steps)
    _vtrace_scalar_inline(
        gamma, lmbda, one_minus_lmbda, numba.carray(ratio, shape), numba.carray(value, shape),
        numba.carray(next_value, shape), numba.carray(reward, shape), numba.carray(done, shape),
        numba.carray(terminated, shape), rho_thresh, c_thresh, rho_pg_thresh,
        numba.carray(adv, shape), numba.carray(vs_out, shape), numba.carray(err, (n_rows,)), check,
    )  # fmt: skip


_AT: dict[str, tuple[Callable[..., None], int, int, tuple[int, ...]]] = {
    # name: (entry point, leading scalars, data pointers, which of those point to bools)
    "gae_scalar": (_gae_scalar_at, 2, 7, (3, 4)),
    "vtrace_scalar": (_vtrace_scalar_at, 6, 8, (4, 5)),
}
# The serial kernels under names of their own (their own cache entries), inlined into the entry
# points above; set on first use (``get_small``).
_INLINE = {
    "gae_scalar": ("_gae_scalar_inline", _gae_scalar),
    "vtrace_scalar": ("_vtrace_scalar_inline", _vtrace_scalar),
}
_gae_scalar_inline: Any = None
_vtrace_scalar_inline: Any = None


def _small_signature(name: str, dtype_name: str) -> tuple[Any, Any]:
    """The numba and the ctypes signature of an entry point: scalars, data pointers, the error
    array's pointer, n_rows, n_steps, check."""
    _, n_scalars, n_pointers, bools = _AT[name]
    ft = getattr(numba, dtype_name)
    c_ft = ctypes.c_float if dtype_name == "float32" else ctypes.c_double
    ptr = numba.types.CPointer
    pointers = [ptr(numba.boolean) if i in bools else ptr(ft) for i in range(n_pointers)]
    sig = numba.void(
        *([ft] * n_scalars), *pointers, ptr(numba.int32), numba.int64, numba.int64, numba.boolean
    )
    c_sig = ctypes.CFUNCTYPE(
        None,
        *([c_ft] * n_scalars),
        *([ctypes.c_void_p] * (n_pointers + 1)),
        ctypes.c_int64,
        ctypes.c_int64,
        ctypes.c_bool,
    )
    return sig, c_sig


_small: dict[tuple[str, str], Any] = {}


def get_small(name: str, dtype_name: str) -> Any:
    """The ctypes entry point of the serial kernel ``name`` (a key of ``_AT``) for ``dtype_name``
    ("float32" or "float64"), compiling it once. Arguments: the kernel's scalars, then the
    ``data_ptr()`` of every array in the kernel's order, the error array's address, n_rows,
    n_steps and check. ctypes releases the GIL during the call."""
    fn = _small.get((name, dtype_name))
    if fn is None:
        with _lock:
            fn = _small.get((name, dtype_name))
            if fn is None:
                global_name, kernel = _INLINE[name]
                if globals()[global_name] is None:
                    globals()[global_name] = numba.njit(cache=True)(
                        _variant_name(kernel, "_inline")
                    )
                sig, c_sig = _small_signature(name, dtype_name)
                entry = _variant_name(_AT[name][0], "_" + dtype_name)
                compiled = numba.cfunc(sig, cache=True)(entry)
                fn = c_sig(compiled.address)
                fn.compiled = compiled  # keeps the code alive as long as the entry point
                _small[name, dtype_name] = fn
    return fn


_compiled: dict[tuple[str, bool], Any] = {}
_lock = threading.Lock()


def _variant(function: Callable[..., None], parallel: bool) -> Callable[..., None]:
    """The function under a name of its own per build.

    numba's on-disk cache is keyed by the function's name and signature, not by `parallel`, so
    without this the serial and the parallel builds would load each other's cached code.
    """
    return _variant_name(function, "_parallel" if parallel else "_serial")


def _variant_name(function: Callable[..., None], suffix: str) -> Callable[..., None]:
    variant = types.FunctionType(
        function.__code__, function.__globals__, function.__name__ + suffix
    )
    variant.__qualname__ = function.__qualname__ + suffix
    return variant


def get(name: str, parallel: bool = True) -> Any:
    """The compiled kernel ``name`` (a key of ``_PY``), compiling it once."""
    fn = _compiled.get((name, parallel))
    if fn is None:
        with _lock:
            fn = _compiled.get((name, parallel))
            if fn is None:
                fn = numba.njit(_signatures(name), parallel=parallel, cache=True)(
                    _variant(_PY[name], parallel)
                )
                _compiled[name, parallel] = fn
    return fn


_thread_counts = threading.local()


def use_threads(n: int) -> None:
    """Let the parallel kernels launched from the calling thread use ``n`` threads.

    numba's thread count is per launching thread, so concurrent server workers each keep their
    own; setting it costs ~7 µs, so it is only set when it changes. When to run in parallel and
    with how many threads is decided by ``service.estimators.threads``.
    """
    n = max(1, min(n, numba.config.NUMBA_NUM_THREADS))
    if getattr(_thread_counts, "n", None) != n:
        numba.set_num_threads(n)
        _thread_counts.n = n


def warmup() -> None:
    """Compiles (or loads from the on-disk cache) every kernel; a no-op without numba.

    Call it after any fork: numba's OpenMP threading layer terminates a process forked after
    it started.
    """
    if AVAILABLE:
        for name in _PY:
            for parallel in (False, True):
                get(name, parallel)
        for name in _AT:
            for dtype_name in ("float32", "float64"):
                get_small(name, dtype_name)
