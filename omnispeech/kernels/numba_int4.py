"""A 4-bit weight-only matrix-vector kernel for x86 CPUs (AVX2, or AVX-512 where present).

Decoding reads every weight once per step, so a step costs the time to read the weights, if
the arithmetic keeps up. ATen's CPU int4 kernel converts each 4-bit code to a float before
multiplying: with weights in cache it reads 17 GB/s of codes on a 2-core Xeon, and with float32
activations 28 times less. This kernel does what llama.cpp's does instead: it rounds the
activations of each group of 64 input columns to int8 (one float scale per group, computed at
every call) and multiplies codes by activations in integers, 32 or 64 byte pairs per
instruction (``pmaddubsw`` then ``pmaddwd``), converting to float once per group: 38-45 GB/s
in cache, whatever the activations' dtype (``benchmarks/RESULTS.md``, "A 4-bit kernel of our
own").

Layout ("blocks"): a row of ``K`` columns is ``K / 64`` groups of 32 bytes; byte ``j`` of group
``g`` holds column ``64 g + j`` in its low nibble and column ``64 g + 32 + j`` in its high
nibble, so each half of a group is one contiguous run of activations. Codes ``q`` in 0..15 mean
``(q - 8) * scale + zero``; per row, ``(scale, zero)`` pairs of the groups in order, in float16
(4 bytes per 64 weights: 0.56 bytes per weight in all).

With the activation of group ``g`` rounded to ``dx_g * a`` (``a`` int8), one row's output is

    sum_g scale_g * dx_g * (sum_j q_j a_j - 8 sum_j a_j) + zero_g * sum_j x_j

where the first sum is the integer product and the last uses the exact activations. The
rounding of the activations adds a relative error of about 0.7 % to the output (measured on
random matrices), the size of bfloat16's own rounding.

The x86 intrinsics are emitted as LLVM IR inside a Numba function (``@intrinsic``), so nothing
is compiled at install time; importing this module on a processor without AVX2 raises
ImportError (the caller then uses ATen's kernel). Rows run
in parallel with ``prange`` on Numba's thread pool, sized like the other Numba kernels
(:mod:`omnispeech.kernels.numba_cpu`).
"""

from __future__ import annotations

import os

import numba
import numpy as np
import torch
from llvmlite import binding as llvm
from llvmlite import ir
from numba import float32, int16, int64, njit, prange, types, uint8
from numba.core import cgutils
from numba.extending import intrinsic

from omnispeech.kernels.numba_cpu import set_threads

# Input columns per scale: one group is 32 bytes, one AVX2 register of codes.
GROUP = 64
_GROUP_BYTES = GROUP // 2

_I8, _I16, _I32, _F16, _F32 = (
    ir.IntType(8),
    ir.IntType(16),
    ir.IntType(32),
    ir.HalfType(),
    ir.FloatType(),
)


def _host_features() -> set[str]:
    """The instruction-set extensions LLVM reports for this processor (e.g. ``"avx2"``)."""
    return {name for name, on in llvm.get_host_cpu_features().items() if on}


_FEATURES = _host_features()
if "avx2" not in _FEATURES:
    raise ImportError("omnispeech's int4 kernel needs an x86 processor with AVX2")
# AVX-512BW handles two groups per instruction; AVX2 one. When NUMBA_CPU_NAME names a target
# (machine code meant for other processors too), AVX2 is all that is assumed.
WIDE = "avx512bw" in _FEATURES and not numba.config.CPU_NAME


def fast(instruction: ir.Instruction) -> ir.Instruction:
    """Mark a floating-point instruction fast-math (LLVM may fuse and reorder it)."""
    instruction.flags.append("fast")
    return instruction


def tree_sum(builder: ir.IRBuilder, vec: ir.Value, lanes: int) -> ir.Value:
    """The sum of a float vector's ``lanes`` lanes (a power of two), halves added pairwise."""
    while lanes > 1:
        half = lanes // 2
        low = builder.shuffle_vector(
            vec, vec, ir.Constant(ir.VectorType(_I32, half), list(range(half)))
        )
        high = builder.shuffle_vector(
            vec, vec, ir.Constant(ir.VectorType(_I32, half), list(range(half, lanes)))
        )
        vec = fast(builder.fadd(low, high))
        lanes = half
    return builder.extract_element(vec, ir.Constant(_I32, 0))


def _row_dot_factory(groups_per_step: int):  # noqa: ANN202 - returns a Numba intrinsic
    """An intrinsic computing one output of the formula in the module docstring, reading
    ``groups_per_step`` groups (1: AVX2 registers, 2: AVX-512) per loop iteration."""
    lanes = 32 * groups_per_step  # bytes of codes per iteration
    v_i8 = ir.VectorType(_I8, lanes)
    v_i16 = ir.VectorType(_I16, lanes // 2)
    v_i32 = ir.VectorType(_I32, lanes // 4)
    v_f32 = ir.VectorType(_F32, lanes // 4)
    v_sz16 = ir.VectorType(_F16, 2 * groups_per_step)
    v_sz = ir.VectorType(_F32, 2 * groups_per_step)
    v_g = ir.VectorType(_F32, groups_per_step)
    suffix = "avx512.pmaddubs.w.512" if groups_per_step == 2 else "avx2.pmadd.ub.sw"
    suffix_wd = "avx512.pmaddw.d.512" if groups_per_step == 2 else "avx2.pmadd.wd"
    # Lane i of the int32 sums belongs to group i // 8 of the step.
    spread = [i // 8 for i in range(lanes // 4)]

    @intrinsic
    def row_dot(typingctx, w, w_start, x_lo, x_hi, sz, sz_start, dx, u, steps):  # noqa: ANN001, ANN202, PLR0913
        sig = types.float32(w, w_start, x_lo, x_hi, sz, sz_start, dx, u, steps)

        def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202
            def data(i):  # noqa: ANN001, ANN202
                return context.make_array(signature.args[i])(context, builder, args[i]).data

            w_ptr = builder.gep(data(0), [args[1]])
            lo_ptr, hi_ptr = data(2), data(3)
            sz_ptr = builder.gep(data(4), [args[5]])
            dx_ptr, u_ptr = data(6), data(7)
            module = builder.module
            maddubs = cgutils.get_or_insert_function(
                module, ir.FunctionType(v_i16, [v_i8, v_i8]), "llvm.x86." + suffix
            )
            maddwd = cgutils.get_or_insert_function(
                module, ir.FunctionType(v_i32, [v_i16, v_i16]), "llvm.x86." + suffix_wd
            )
            low4 = ir.Constant(v_i8, [15] * lanes)
            four = ir.Constant(v_i8, [4] * lanes)
            ones = ir.Constant(v_i16, [1] * (lanes // 2))
            dot_acc = cgutils.alloca_once_value(builder, ir.Constant(v_f32, [0.0] * (lanes // 4)))
            off_acc = cgutils.alloca_once_value(
                builder, ir.Constant(v_sz, [0.0] * (2 * groups_per_step))
            )

            def load(ptr, offset, vtype):  # noqa: ANN001, ANN202
                p = builder.bitcast(builder.gep(ptr, [offset]), vtype.as_pointer())
                return builder.load(p, align=1)

            with cgutils.for_range(builder, args[8]) as loop:
                i = loop.index
                byte = builder.mul(i, ir.Constant(i.type, lanes))
                group = builder.mul(i, ir.Constant(i.type, groups_per_step))
                codes = load(w_ptr, byte, v_i8)
                lo = builder.and_(codes, low4)
                hi = builder.lshr(codes, four)
                # |q a| <= 15 * 127, two pairs per int16 lane: no saturation.
                pairs = builder.add(
                    builder.call(maddubs, [lo, load(lo_ptr, byte, v_i8)]),
                    builder.call(maddubs, [hi, load(hi_ptr, byte, v_i8)]),
                )
                sums = builder.sitofp(builder.call(maddwd, [pairs, ones]), v_f32)
                sz_pair = builder.fpext(
                    load(sz_ptr, builder.mul(group, ir.Constant(i.type, 2)), v_sz16), v_sz
                )
                scale = builder.shuffle_vector(
                    sz_pair,
                    sz_pair,
                    ir.Constant(
                        ir.VectorType(_I32, groups_per_step),
                        [2 * k for k in range(groups_per_step)],
                    ),
                )
                step_dx = load(dx_ptr, group, v_g)
                weight = builder.fmul(scale, step_dx)
                weight_lanes = builder.shuffle_vector(
                    weight, weight, ir.Constant(ir.VectorType(_I32, lanes // 4), spread)
                )
                # (fast: a multiply and an add may fuse into one instruction)
                term = fast(builder.fmul(sums, weight_lanes))
                builder.store(fast(builder.fadd(builder.load(dot_acc), term)), dot_acc)
                # scale_g * u[2g] + zero_g * u[2g + 1] = zero_g * sum x - scale_g * 8 dx_g sum a
                pair_u = load(u_ptr, builder.mul(group, ir.Constant(i.type, 2)), v_sz)
                offset = fast(builder.fmul(sz_pair, pair_u))
                builder.store(fast(builder.fadd(builder.load(off_acc), offset)), off_acc)
            # Sum the lanes as a tree (halves added pairwise): a row ends with a chain of
            # log2(lanes) additions instead of one addition per lane.
            total = tree_sum(builder, builder.load(dot_acc), lanes // 4)
            offsets = tree_sum(builder, builder.load(off_acc), 2 * groups_per_step)
            return fast(builder.fadd(total, offsets))

        return sig, codegen

    return row_dot


_row_dot_1 = _row_dot_factory(1)
# Only a processor with AVX-512 may compile the AVX-512 intrinsics (LLVM cannot lower them for
# another): elsewhere the wide branch of _gemm, never taken there, reuses the AVX2 one.
_row_dot_wide = _row_dot_factory(2) if WIDE else _row_dot_1


@njit(fastmath=True, cache=True)
def _quantize_rows(x, x_lo, x_hi, dx, u):  # noqa: ANN001, ANN202
    """Round each group of 64 activations to int8: halves into ``x_lo`` / ``x_hi`` (the
    columns the low and high nibbles multiply), scale into ``dx``, and per group the pair
    ``u[2g] = -8 * dx * sum(int8)`` (the centring of the codes, see the module docstring),
    ``u[2g + 1] = sum(x)`` (exact), which a row's (scale, offset) pairs multiply."""
    rows, cols = x.shape
    for m in range(rows):
        for g in range(cols // GROUP):
            base = g * GROUP
            peak = np.float32(0.0)
            total = np.float32(0.0)
            for j in range(GROUP):
                v = x[m, base + j]
                peak = max(peak, abs(v))
                total += v
            step = max(peak, np.float32(1e-30)) / np.float32(127.0)
            inv = np.float32(1.0) / step
            count = 0
            for j in range(_GROUP_BYTES):
                a = np.int8(np.rint(x[m, base + j] * inv))
                b = np.int8(np.rint(x[m, base + _GROUP_BYTES + j] * inv))
                x_lo[m, g * _GROUP_BYTES + j] = a
                x_hi[m, g * _GROUP_BYTES + j] = b
                count += np.int64(a) + np.int64(b)
            dx[m, g] = step
            u[m, 2 * g] = np.float32(-8.0) * step * np.float32(count)
            u[m, 2 * g + 1] = total


@njit(fastmath=True, cache=True)
def _rounded(x):  # noqa: ANN001, ANN202
    """``x`` ``[M, K]`` rounded to int8 per group: ``(x_lo, x_hi, dx, u)`` as
    :func:`_quantize_rows` fills them, the input of :func:`_row`."""
    rows = x.shape[0]
    groups = x.shape[1] // GROUP
    x_lo = np.empty((rows, groups * _GROUP_BYTES), np.int8)
    x_hi = np.empty((rows, groups * _GROUP_BYTES), np.int8)
    dx = np.empty((rows, groups), np.float32)
    u = np.empty((rows, 2 * groups), np.float32)
    _quantize_rows(x, x_lo, x_hi, dx, u)
    return x_lo, x_hi, dx, u


@njit(fastmath=True, cache=True)
def _row(codes, scale_zeros, n, act, m, wide):  # noqa: ANN001, ANN202
    """Output ``n`` of input row ``m``: one call of the row intrinsic (``act``: the rounded
    input, :func:`_rounded`)."""
    x_lo, x_hi, dx, u = act
    groups = dx.shape[1]
    start = n * groups * _GROUP_BYTES
    sz = n * groups * 2
    # WIDE is a compile-time constant: without AVX-512 the branch folds away before LLVM
    # sees it. Left to the runtime argument, it made the process that compiles a kernel
    # round differently (up to 2.4e-7) from the processes that load it from Numba's cache,
    # so the same seed sampled different codes the first time.
    if WIDE and wide:
        steps = groups // 2
        return _row_dot_wide(codes, start, x_lo[m], x_hi[m], scale_zeros, sz, dx[m], u[m], steps)
    return _row_dot_1(codes, start, x_lo[m], x_hi[m], scale_zeros, sz, dx[m], u[m], groups)


_SIG = (uint8[:, ::1], int16[:, ::1], float32[:, ::1], float32[:, ::1], int64)


@njit(_SIG, parallel=True, fastmath=True, cache=True)
def _gemm(codes, scale_zeros, x, out, wide):  # noqa: ANN001, ANN202
    """``out[m, n] = sum_k x[m, k] W[n, k]`` with ``W`` in the blocks layout (see module)."""
    rows = x.shape[0]
    act = _rounded(x)
    flat_codes = codes.reshape(-1)
    flat_sz = scale_zeros.reshape(-1)
    for n in prange(codes.shape[0]):
        # Each output row's codes (K / 2 bytes) stay in L1 across the input rows.
        for m in range(rows):
            out[m, n] = _row(flat_codes, flat_sz, n, act, m, wide)


_WEIGHT = (uint8[:, ::1], int16[:, ::1], float32[:, ::1])
_SIG3 = (*_WEIGHT, *_WEIGHT, *_WEIGHT, float32[:, ::1], int64)


@njit(_SIG3, parallel=True, fastmath=True, cache=True)
def _gemm3(c0, s0, o0, c1, s1, o1, c2, s2, o2, x, wide):  # noqa: ANN001, ANN202, PLR0913
    """:func:`_gemm` for three weights of the same input width at once (``out_i = x W_i^T``).

    One launch and one rounding of ``x`` serve all three; the threads share the rows of all
    three weights, so a small one does not leave a thread idle. A weight with no rows is
    skipped (two weights pass an empty third)."""
    rows = x.shape[0]
    act = _rounded(x)
    n0 = c0.shape[0]
    n1 = c1.shape[0]
    f0, f1, f2 = c0.reshape(-1), c1.reshape(-1), c2.reshape(-1)
    z0, z1, z2 = s0.reshape(-1), s1.reshape(-1), s2.reshape(-1)
    for t in prange(n0 + n1 + c2.shape[0]):
        for m in range(rows):
            if t < n0:
                o0[m, t] = _row(f0, z0, t, act, m, wide)
            elif t < n0 + n1:
                o1[m, t - n0] = _row(f1, z1, t - n0, act, m, wide)
            else:
                o2[m, t - n0 - n1] = _row(f2, z2, t - n0 - n1, act, m, wide)


_IMPORT_PID = os.getpid()


def usable() -> bool:
    """Whether the kernel runs in this process (not in a child forked after import)."""
    return os.getpid() == _IMPORT_PID


def weight_views(codes: torch.Tensor, scale_zeros: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """The arrays :func:`int4_matmul` reads, made once per layer (views, no copies).

    Args:
        codes: ``[N, K / 2]`` uint8, contiguous (two codes per byte, see the module).
        scale_zeros: ``[N, K / 64, 2]`` float16, contiguous.
    """
    n = codes.shape[0]
    return codes.numpy(), scale_zeros.view(torch.int16).reshape(n, -1).numpy()


def int4_matmul(codes: np.ndarray, scale_zeros: np.ndarray, x: torch.Tensor) -> torch.Tensor:
    """``x W^T`` for ``W`` in the blocks layout.

    A decoding step calls this once per layer, hundreds of times per frame, so it does no more
    than size the thread pool, allocate the output and launch.

    Args:
        codes, scale_zeros: the layer's :func:`weight_views`.
        x: ``[M, K]`` float32, contiguous, ``K`` a multiple of 64.

    Returns:
        ``[M, N]`` float32.
    """
    set_threads()
    out = torch.empty(x.shape[0], codes.shape[0], dtype=torch.float32)
    wide = WIDE and (x.shape[1] // GROUP) % 2 == 0
    # an int, not a bool: the one compiled signature takes int64, and a bool would make Numba
    # search for a conversion at every call (about 10 us)
    _gemm(codes, scale_zeros, x.numpy(), out.numpy(), int(wide))
    return out


_NO_CODES = np.empty((0, _GROUP_BYTES), np.uint8)
_NO_SCALES = np.empty((0, 2), np.int16)


def int4_matmul_many(
    weights: list[tuple[np.ndarray, np.ndarray]], x: torch.Tensor
) -> list[torch.Tensor]:
    """``[x W_0^T, x W_1^T, ...]`` for two or three weights of the same input width, in one
    launch (e.g. an attention layer's q, k and v projections).

    A decoding step spends about as long launching a small product as computing it, so a
    layer that makes three of them from one input saves two launches and two roundings of
    the input. Each output equals :func:`int4_matmul`'s exactly (same rounding, same sums).

    Args:
        weights: each weight's :func:`weight_views`.
        x: ``[M, K]`` float32, contiguous, ``K`` a multiple of 64.

    Returns:
        ``[M, N_i]`` float32 per weight.
    """
    if not 2 <= len(weights) <= 3:
        raise ValueError(f"int4_matmul_many takes 2 or 3 weights, got {len(weights)}")
    set_threads()
    outs = [torch.empty(x.shape[0], codes.shape[0], dtype=torch.float32) for codes, _ in weights]
    args = []
    for (codes, scale_zeros), out in zip(weights, outs, strict=True):
        args += [codes, scale_zeros, out.numpy()]
    if len(weights) == 2:
        args += [_NO_CODES, _NO_SCALES, np.empty((x.shape[0], 0), np.float32)]
    wide = WIDE and (x.shape[1] // GROUP) % 2 == 0
    _gemm3(*args, x.numpy(), int(wide))
    return outs
