"""Single-instruction helpers for the Numba kernels: popcount, leading zeros, prefetch.

Numba has no spelling for these LLVM intrinsics; the loops they replace cost
tens of cycles per call in the per-event path (a popcount loop runs once per set
bit). Results are exact: ``llvm.ctlz`` is defined for zero (returns 64).
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

_I1 = ir.IntType(1)
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)


@intrinsic
def popcount64(typingctx, x):  # type: ignore[no-untyped-def]
    """Number of set bits of a 64-bit integer (as int64: comparisons with ints stay integer)."""
    if not isinstance(x, types.Integer):
        return None

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        val = context.cast(builder, args[0], sig.args[0], types.uint64)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_I64, [_I64]), "llvm.ctpop.i64")
        return builder.call(fn, [val])

    return types.int64(x), codegen


@intrinsic
def clz64(typingctx, x):  # type: ignore[no-untyped-def]
    """Leading zero bits of a 64-bit integer, 64 for zero (as int64)."""
    if not isinstance(x, types.Integer):
        return None

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        val = context.cast(builder, args[0], sig.args[0], types.uint64)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_I64, [_I64, _I1]), "llvm.ctlz.i64")
        return builder.call(fn, [val, _I1(0)])  # zero is not poison: ctlz(0) = 64

    return types.int64(x), codegen


@intrinsic
def prefetch(typingctx, arr, byte_offset):  # type: ignore[no-untyped-def]
    """Hint the cache line at ``arr``'s data + ``byte_offset`` into cache, for writing.

    A hint only: no load, no fault, no effect on results. Pass an array or a view
    (``a[s, r]``) and an offset within it.
    """
    if not isinstance(arr, types.Array) or not isinstance(byte_offset, types.Integer):
        return None

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        base = builder.bitcast(ary.data, ir.IntType(8).as_pointer())
        off = context.cast(builder, args[1], sig.args[1], types.intp)
        ptr = builder.gep(base, [off])
        fnty = ir.FunctionType(ir.VoidType(), [ptr.type, _I32, _I32, _I32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        builder.call(fn, [ptr, _I32(1), _I32(3), _I32(1)])  # write, keep in all levels, data cache
        return context.get_dummy_value()

    return types.void(arr, byte_offset), codegen
