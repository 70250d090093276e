"""An int8 weight-only matrix-vector kernel for x86 CPUs: the int8 sibling of
:mod:`omnispeech.kernels.numba_int4`, for :class:`~omnispeech.core.quant.Int8Linear`.

ATen's fused int8 CPU kernel (``_weight_int8pack_mm``) converts every weight to a float before
multiplying; decoding the 0.6B ASR text decoder through it reads about 9.5 GB/s of weights on a
2-core Xeon, against about 21 GB/s for the same product in float32. This kernel rounds each
group of 64 activations to int8 (one float scale per group, at every call) and multiplies in
integers, as llama.cpp's ``Q8_0`` dot product does: ``pmaddubsw`` takes an unsigned and a
signed operand, so it multiplies ``|w|`` by ``x`` carrying ``w``'s sign (at most 127 * 127 * 2
per 16-bit lane: no saturation), then ``pmaddwd`` sums pairs into 32 bits.

Weights stay in ``Int8Linear``'s own layout, ``[N, K]`` int8 with one float scale per row:

    y_n = scale_n * sum_g dx_g * sum_j w_nj a_j      (activations ~ dx_g * a, a int8)

The rounding of the activations adds about 0.4 % (relative) to the output on random matrices.
"""

from __future__ import annotations

import numpy as np
import torch
from llvmlite import ir
from numba import float32, int8, njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

# Importing the int4 module checks the processor (AVX2, else ImportError) and shares its
# choice of register width and its fork check.
from omnispeech.kernels import numba_int4
from omnispeech.kernels.numba_cpu import set_threads

GROUP = 64
_I1, _I8, _I16, _I32, _F32 = (
    ir.IntType(1),
    ir.IntType(8),
    ir.IntType(16),
    ir.IntType(32),
    ir.FloatType(),
)


def _row_dot_factory(lanes: int):  # noqa: ANN202 - returns a Numba intrinsic
    """An intrinsic for ``sum_g dx_g * sum_j w_j a_j`` over one row, in registers of ``lanes``
    bytes (32: AVX2, 64: AVX-512), one group of 64 columns per loop iteration."""
    v_i8 = ir.VectorType(_I8, lanes)
    v_i16 = ir.VectorType(_I16, lanes // 2)
    v_i32 = ir.VectorType(_I32, lanes // 4)
    v_f32 = ir.VectorType(_F32, lanes // 4)
    wide = lanes == 64
    maddubs_name = "llvm.x86.avx512.pmaddubs.w.512" if wide else "llvm.x86.avx2.pmadd.ub.sw"
    maddwd_name = "llvm.x86.avx512.pmaddw.d.512" if wide else "llvm.x86.avx2.pmadd.wd"

    @intrinsic
    def row_dot(typingctx, w, w_start, xq, dx, groups):  # noqa: ANN001, ANN202
        sig = types.float32(w, w_start, xq, dx, groups)

        def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202
            def data(i):  # noqa: ANN001, ANN202
                return context.make_array(signature.args[i])(context, builder, args[i]).data

            w_ptr = builder.gep(data(0), [args[1]])
            x_ptr, dx_ptr = data(2), data(3)
            module = builder.module
            maddubs = cgutils.get_or_insert_function(
                module, ir.FunctionType(v_i16, [v_i8, v_i8]), maddubs_name
            )
            maddwd = cgutils.get_or_insert_function(
                module, ir.FunctionType(v_i32, [v_i16, v_i16]), maddwd_name
            )
            absolute = cgutils.get_or_insert_function(
                module, ir.FunctionType(v_i8, [v_i8, _I1]), f"llvm.abs.v{lanes}i8"
            )
            zero = ir.Constant(v_i8, [0] * lanes)
            ones = ir.Constant(v_i16, [1] * (lanes // 2))
            acc = cgutils.alloca_once_value(builder, ir.Constant(v_f32, [0.0] * (lanes // 4)))

            def load(ptr, offset, vtype):  # noqa: ANN001, ANN202
                p = builder.bitcast(builder.gep(ptr, [offset]), vtype.as_pointer())
                return builder.load(p, align=1)

            with cgutils.for_range(builder, args[4]) as loop:
                g = loop.index
                total = None
                for chunk in range(GROUP // lanes):
                    at = builder.add(
                        builder.mul(g, ir.Constant(g.type, GROUP)),
                        ir.Constant(g.type, chunk * lanes),
                    )
                    wv = load(w_ptr, at, v_i8)
                    xv = load(x_ptr, at, v_i8)
                    # |w| (unsigned operand) times x with w's sign (signed operand)
                    negative = builder.icmp_signed("<", wv, zero)
                    signed_x = builder.select(negative, builder.sub(zero, xv), xv)
                    mag = builder.call(absolute, [wv, ir.Constant(_I1, 0)])
                    part = builder.call(maddwd, [builder.call(maddubs, [mag, signed_x]), ones])
                    total = part if total is None else builder.add(total, part)
                step = builder.load(builder.gep(dx_ptr, [g]))
                spread = builder.insert_element(
                    ir.Constant(v_f32, ir.Undefined), step, ir.Constant(_I32, 0)
                )
                spread = builder.shuffle_vector(
                    spread, spread, ir.Constant(ir.VectorType(_I32, lanes // 4), [0] * (lanes // 4))
                )
                scaled = builder.fmul(builder.sitofp(total, v_f32), spread)
                builder.store(builder.fadd(builder.load(acc), scaled), acc)
            vec = builder.load(acc)
            out = builder.extract_element(vec, ir.Constant(_I32, 0))
            for k in range(1, lanes // 4):
                out = builder.fadd(out, builder.extract_element(vec, ir.Constant(_I32, k)))
            return out

        return sig, codegen

    return row_dot


# AVX-512 code is compiled only where the processor has it (see numba_int4.WIDE).
_row_dot = _row_dot_factory(64 if numba_int4.WIDE else 32)


@njit(fastmath=True, cache=True)
def _quantize_rows(x, xq, dx):  # noqa: ANN001, ANN202
    """Round each group of 64 activations to int8 (``xq``) with its scale (``dx``)."""
    rows, cols = x.shape
    for m in range(rows):
        for g in range(cols // GROUP):
            base = g * GROUP
            peak = np.float32(0.0)
            for j in range(GROUP):
                peak = max(peak, abs(x[m, base + j]))
            step = max(peak, np.float32(1e-30)) / np.float32(127.0)
            inv = np.float32(1.0) / step
            for j in range(GROUP):
                xq[m, base + j] = np.int8(np.rint(x[m, base + j] * inv))
            dx[m, g] = step


_SIG = (int8[:, ::1], float32[::1], float32[:, ::1], float32[:, ::1])


@njit(_SIG, parallel=True, fastmath=True, cache=True)
def _gemm(weight, scale, x, out):  # noqa: ANN001, ANN202
    """``out[m, n] = scale[n] * sum_k x[m, k] weight[n, k]``."""
    rows, cols = x.shape
    groups = cols // GROUP
    xq = np.empty((rows, cols), np.int8)
    dx = np.empty((rows, groups), np.float32)
    _quantize_rows(x, xq, dx)
    flat = weight.reshape(-1)
    for n in prange(weight.shape[0]):
        for m in range(rows):
            out[m, n] = scale[n] * _row_dot(flat, np.int64(n) * cols, xq[m], dx[m], groups)


def usable() -> bool:
    """Whether the kernel runs in this process (not in a child forked after import)."""
    return numba_int4.usable()


def weight_views(weight: torch.Tensor, scale: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """The arrays :func:`int8_matmul` reads, made once per layer.

    Args:
        weight: ``[N, K]`` int8, contiguous.
        scale: ``[N]`` float, any dtype (copied to float32).
    """
    return weight.numpy(), scale.float().contiguous().numpy()


def int8_matmul(weight: np.ndarray, scale: np.ndarray, x: torch.Tensor) -> torch.Tensor:
    """``x (scale[:, None] * W)^T``.

    Args:
        weight, scale: the layer's :func:`weight_views`.
        x: ``[M, K]`` float32, contiguous, ``K`` a multiple of 64.

    Returns:
        ``[M, N]`` float32.
    """
    set_threads()
    out = torch.empty(x.shape[0], weight.shape[0], dtype=torch.float32)
    _gemm(weight, scale, x.numpy(), out.numpy())
    return out
