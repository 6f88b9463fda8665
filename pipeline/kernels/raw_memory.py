"""Two Numba intrinsics for byte-buffer kernels: raw data pointers and unaligned 8-byte loads."""

from __future__ import annotations

import sys

from llvmlite import ir
from numba import types
from numba.extending import intrinsic

assert sys.byteorder == "little", "load8 reads words little-endian"


@intrinsic
def as_ptr(typingctx, arr):  # type: ignore[no-untyped-def]
    """A raw pointer to a C-contiguous array's data, for passing to helpers.

    Numba increments and decrements an array's reference count around every
    helper call (atomic instructions, or calls even when inlined); in the scanner's
    per-byte loops that cost more than the parsing. A pointer is not counted, and
    indexing it skips negative-index handling. Valid only while the array is alive:
    take pointers to a function's array arguments (the caller holds them), never to
    a local that could be freed after its last use.
    """
    if not (isinstance(arr, types.Array) and arr.layout == "C"):
        return None

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        return context.make_array(sig.args[0])(context, builder, value=args[0]).data

    return types.CPointer(arr.dtype)(arr), codegen


@intrinsic
def load8(typingctx, arr, index):  # type: ignore[no-untyped-def]
    """The 8 bytes arr[index:index+8] of uint8 data (array or pointer) as one little-endian uint64.

    Unaligned. The caller guarantees the 8 bytes are inside the data: there is no check.
    """
    is_array = isinstance(arr, types.Array) and arr.dtype == types.uint8 and arr.layout == "C"
    is_pointer = isinstance(arr, types.CPointer) and arr.dtype == types.uint8
    if not ((is_array or is_pointer) and isinstance(index, types.Integer)):
        return None

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        data = context.make_array(sig.args[0])(context, builder, value=args[0]).data if is_array else args[0]
        idx = context.cast(builder, args[1], sig.args[1], types.intp)
        ptr = builder.bitcast(builder.gep(data, [idx]), ir.IntType(64).as_pointer())
        return builder.load(ptr, align=1)

    return types.uint64(arr, index), codegen
