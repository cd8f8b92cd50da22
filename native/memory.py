"""Raw memory access for kernels: cache hints and unaligned 8-byte loads."""
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


def _pointer(context, builder, sig, args):
    """LLVM pointer to element ``args[1]`` of array ``args[0]`` (no bounds check)."""
    aryty = sig.args[0]
    ary = context.make_array(aryty)(context, builder, args[0])
    return cgutils.get_item_pointer(context, builder, aryty, ary, [args[1]], wraparound=False)


@intrinsic
def prefetch(typingctx, arr, i):
    """Hint the CPU to load ``arr[i]`` into cache (no bounds check, no effect on results)."""
    def codegen(context, builder, sig, args):
        i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]), "llvm.prefetch.p0")
        builder.call(fn, [builder.bitcast(_pointer(context, builder, sig, args), i8p),
                          i32(0), i32(3), i32(1)])
        return context.get_dummy_value()
    return types.void(arr, types.intp), codegen


@intrinsic
def word(typingctx, arr, i):
    """The 8 bytes from element i of ``arr`` on, as one uint64 (unaligned, no bounds check)."""
    def codegen(context, builder, sig, args):
        ptr = builder.bitcast(_pointer(context, builder, sig, args), ir.IntType(64).as_pointer())
        return builder.load(ptr, align=1)
    return types.uint64(arr, types.intp), codegen
