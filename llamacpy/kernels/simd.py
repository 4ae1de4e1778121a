"""Integer SIMD dot products for the quantized GEMVs, written as LLVM IR inside numba intrinsics.

ggml multiplies quantized weights by activations quantized to 8 bits (Q8_0/Q8_1/Q8_K, see `q8.py`) with
integer dot products: `maddubs` (u8 x s8 -> pairs summed to i16) then `madd` (i16 x i16 -> pairs summed
to i32), one float scale per block. numba cannot express byte vectors (it widens integer arithmetic to
int64), so each type module describes how to unpack one block into 32-byte vectors, and `row_dot` wraps
that into a whole-row loop: one LLVM function per (type, number of activation rows), accumulators in
registers, called from a numba prange over rows.

With AVX2 the dot products are `vpmaddubsw`/`vpmaddwd`, as in ggml's AVX2 kernels (integer sums are exact,
so results equal ggml's up to the float summation order); without AVX2 the same values come from generic
widening IR. numba's cache keys kernels on their own file only: after editing this module, delete
llamacpy/kernels/__pycache__/*.nbi / *.nbc.
"""

from __future__ import annotations

from collections.abc import Callable

import llvmlite.binding as llvm
from llvmlite import ir
from numba import types
from numba.core import cgutils, config
from numba.extending import intrinsic

I8, I16, I32, I64 = ir.IntType(8), ir.IntType(16), ir.IntType(32), ir.IntType(64)
F16, F32 = ir.HalfType(), ir.FloatType()


def _vec(t: ir.Type, n: int) -> ir.VectorType:
    return ir.VectorType(t, n)


V16I8, V32I8, V16I16, V8I32, V8F32 = _vec(I8, 16), _vec(I8, 32), _vec(I16, 16), _vec(I32, 8), _vec(F32, 8)


def _host_has_avx2() -> bool:
    """Whether numba compiles for a CPU with AVX2 (its own CPU_NAME/CPU_FEATURES settings win)."""
    feats = config.CPU_FEATURES if config.CPU_FEATURES is not None else None
    if feats is None:
        if config.CPU_NAME not in (None, "host"):
            return False  # a portable target (e.g. "generic"): no x86 intrinsics
        llvm.initialize_native_target()
        feats = llvm.get_host_cpu_features().flatten()
    return "+avx2" in feats.split(",")


HAS_AVX2 = _host_has_avx2()


class Emit:
    """Vector helpers over an llvmlite IRBuilder: byte loads, nibble/bit unpacking, integer dots."""

    def __init__(self, builder: ir.IRBuilder):
        self.b = builder

    # -- memory ------------------------------------------------------------------------------------
    def at(self, base: ir.Value, off) -> ir.Value:
        """i8* base + off bytes (off: an int or an i64 value)."""
        return self.b.gep(base, [off if isinstance(off, ir.Value) else I64(off)])

    def load(self, p: ir.Value, ty: ir.Type) -> ir.Value:
        v = self.b.load(self.b.bitcast(p, ty.as_pointer()))
        v.align = 1
        return v

    def f16(self, p: ir.Value) -> ir.Value:
        """The IEEE half at byte pointer p, as float (vcvtph2ps; exact for every non-NaN value)."""
        return self.b.fpext(self.load(p, F16), F32)

    def i64(self, v: ir.Value) -> ir.Value:
        return self.b.sext(v, I64) if v.type != I64 else v

    # -- vector construction -----------------------------------------------------------------------
    def splat(self, v: ir.Value, n: int) -> ir.Value:
        vt = _vec(v.type, n)
        one = self.b.insert_element(ir.Constant(vt, None), v, I32(0))
        return self.b.shuffle_vector(one, ir.Constant(vt, None), ir.Constant(_vec(I32, n), [0] * n))

    def shuffle(self, a: ir.Value, b: ir.Value | None, idx: list[int]) -> ir.Value:
        b = b if b is not None else ir.Constant(a.type, None)
        return self.b.shuffle_vector(a, b, ir.Constant(_vec(I32, len(idx)), idx))

    def concat(self, a: ir.Value, b: ir.Value) -> ir.Value:
        return self.shuffle(a, b, list(range(2 * a.type.count)))

    @staticmethod
    def const(ty: ir.VectorType, value: int) -> ir.Constant:
        return ir.Constant(ty, [value] * ty.count)

    def nibbles(self, v16: ir.Value) -> ir.Value:
        """16 bytes -> 32: the low nibbles, then the high nibbles (the legacy blocks' element order)."""
        return self.concat(self.b.and_(v16, self.const(v16.type, 15)), self.b.lshr(v16, self.const(v16.type, 4)))

    def field(self, v: ir.Value, shift: int, mask: int) -> ir.Value:
        """(v >> shift) & mask on every byte."""
        if shift:
            v = self.b.lshr(v, self.const(v.type, shift))
        return self.b.and_(v, self.const(v.type, mask))

    def bits32(self, word: ir.Value, value: int) -> ir.Value:
        """u32 word -> 32 bytes: byte j = value if bit j of word is set, else 0 (vptestmd-like)."""
        w = self.splat(word, 32)
        hit = self.b.icmp_unsigned("!=", self.b.and_(w, ir.Constant(_vec(I32, 32), [1 << j for j in range(32)])),
                                   self.const(_vec(I32, 32), 0))
        return self.b.select(hit, self.const(V32I8, value), self.const(V32I8, 0))

    # -- integer dot products ------------------------------------------------------------------------
    def _x86(self, name: str, ret: ir.Type, *args: ir.Value) -> ir.Value:
        fn = cgutils.get_or_insert_function(self.b.module, ir.FunctionType(ret, [a.type for a in args]), name)
        return self.b.call(fn, args)

    def maddubs(self, u: ir.Value, s: ir.Value) -> ir.Value:
        """32 u8 x 32 s8 -> 16 i16 pair sums (vpmaddubsw; our values never saturate)."""
        if HAS_AVX2:
            return self._x86("llvm.x86.avx2.pmadd.ub.sw", V16I16, u, s)
        p = self.b.mul(self.b.zext(u, _vec(I16, 32)), self.b.sext(s, _vec(I16, 32)))
        return self.b.add(self.shuffle(p, None, list(range(0, 32, 2))), self.shuffle(p, None, list(range(1, 32, 2))))

    def madd(self, a: ir.Value, b: ir.Value) -> ir.Value:
        """16 i16 x 16 i16 -> 8 i32 pair sums (vpmaddwd)."""
        if HAS_AVX2:
            return self._x86("llvm.x86.avx2.pmadd.wd", V8I32, a, b)
        p = self.b.mul(self.b.sext(a, _vec(I32, 16)), self.b.sext(b, _vec(I32, 16)))
        return self.b.add(self.shuffle(p, None, list(range(0, 16, 2))), self.shuffle(p, None, list(range(1, 16, 2))))

    def dot_u8(self, u: ir.Value, s: ir.Value) -> ir.Value:
        """sum of u8 u[j] * s8 s[j] in 8 i32 lanes (lane k: elements 4k..4k+3)."""
        return self.madd(self.maddubs(u, s), self.const(V16I16, 1))

    def dot_u8_scaled(self, u: ir.Value, s: ir.Value, scale16: ir.Value) -> ir.Value:
        """As dot_u8 with the i16 pair sums multiplied by scale16 (16 lanes: 8 per 16 elements)."""
        return self.madd(self.maddubs(u, s), scale16)

    def dot_s8(self, a: ir.Value, s: ir.Value) -> ir.Value:
        """sum of s8 a[j] * s8 s[j] in 8 i32 lanes: |a| times s with a's sign (ggml's Q8_0 trick)."""
        if HAS_AVX2:
            absa = self._x86("llvm.abs.v32i8", V32I8, a, ir.Constant(ir.IntType(1), 0))
            return self.dot_u8(absa, self._x86("llvm.x86.avx2.psign.b", V32I8, s, a))
        p = self.b.mul(self.b.sext(a, _vec(I32, 32)), self.b.sext(s, _vec(I32, 32)))
        q = self.b.add(self.shuffle(p, None, list(range(0, 32, 2))), self.shuffle(p, None, list(range(1, 32, 2))))
        return self.b.add(self.shuffle(q, None, list(range(0, 16, 2))), self.shuffle(q, None, list(range(1, 16, 2))))

    def scales16(self, s16: ir.Value, i: int) -> ir.Value:
        """16 i16 lanes: 8 copies of scale i then 8 of scale i + 1 (from a vector of 16 i16 scales)."""
        return self.shuffle(s16, None, [i] * 8 + [i + 1] * 8)

    # -- float ---------------------------------------------------------------------------------------
    def fma(self, iv: ir.Value, scale: ir.Value, acc: ir.Value) -> ir.Value:
        """acc + float(iv) * scale (8 lanes; contracted to vfmadd)."""
        prod = self.b.fmul(self.b.sitofp(iv, V8F32), self.splat(scale, 8), flags=("contract",))
        return self.b.fadd(acc, prod, flags=("contract",))

    def hsum(self, v: ir.Value) -> ir.Value:
        """Sum of the 8 lanes: halves added pairwise (ggml's hsum_float_8 order)."""
        n = v.type.count
        while n > 1:
            n //= 2
            v = self.b.fadd(self.shuffle(v, None, list(range(n))), self.shuffle(v, None, list(range(n, 2 * n))))
        return self.b.extract_element(v, I32(0))


class Rows:
    """Pointers into the arguments of a row-dot function: the weight row, the activation rows t0.."""

    def __init__(self, e: Emit, context, sig, args):
        self.e = e
        row, xq, xd, xs, out = (context.make_array(ty)(context, e.b, a) for ty, a in zip(sig.args[:5], args[:5]))
        self.r, self.t0 = args[5], args[6]
        self.row = e.b.bitcast(row.data, I8.as_pointer())
        self.nbytes = cgutils.unpack_tuple(e.b, row.shape, 1)[0]
        b = e.b
        self._xq = b.bitcast(xq.data, I8.as_pointer())
        self._xd = b.bitcast(xd.data, I8.as_pointer())
        self._xs = b.bitcast(xs.data, I8.as_pointer())
        self._out = b.bitcast(out.data, I8.as_pointer())
        self._strides = {name: cgutils.unpack_tuple(b, a.strides, 2)[0] for name, a in
                         (("xq", xq), ("xd", xd), ("xs", xs), ("out", out))}

    def _row_ptr(self, name: str, base: ir.Value, t: int) -> ir.Value:
        b = self.e.b
        return b.gep(base, [b.mul(b.add(self.t0, I64(t)), self._strides[name])])

    def x_rows(self, nt: int) -> tuple[list, list, list]:
        """Byte pointers to rows t0..t0+nt-1 of xq, xd and xs."""
        return ([self._row_ptr("xq", self._xq, t) for t in range(nt)],
                [self._row_ptr("xd", self._xd, t) for t in range(nt)],
                [self._row_ptr("xs", self._xs, t) for t in range(nt)])

    def store(self, t: int, value: ir.Value) -> None:
        """out[t0 + t, r] = value."""
        b = self.e.b
        p = self.e.at(self._row_ptr("out", self._out, t), b.mul(self.r, I64(4)))
        b.store(value, b.bitcast(p, F32.as_pointer()))


def row_dot(body: Callable, block_bytes: int, nt: int):
    """A numba intrinsic `f(row, xq, xd, xs, out, r, t0)`: out[t0 + t, r] = row . activation row t0 + t
    for t < nt, the row being u8 blocks of `block_bytes`. `body(e, x, blk, b, acc, summ)` emits one
    block's contribution: x = (xq, xd, xs) row pointers per t, blk the block's byte pointer, b its index,
    acc / summ the nt vector (8 f32 lanes) and scalar accumulators (allocas, promoted to registers)."""

    @intrinsic
    def f(typingctx, row, xq, xd, xs, out, r, t0):
        def codegen(context, builder, sig, args):
            e = Emit(builder)
            rows = Rows(e, context, sig, args)
            # one activation row: two accumulator sets over even/odd blocks (the FMA latency chain halves)
            sets = 2 if nt == 1 else 1
            acc = [[cgutils.alloca_once_value(builder, ir.Constant(V8F32, [0.0] * 8)) for _ in range(nt)]
                   for _ in range(sets)]
            summ = [[cgutils.alloca_once_value(builder, F32(0.0)) for _ in range(nt)] for _ in range(sets)]
            for a in (a for s in acc for a in s):
                builder.store(ir.Constant(V8F32, [0.0] * 8), a)
            for a in (a for s in summ for a in s):
                builder.store(F32(0.0), a)
            x = rows.x_rows(nt)
            nb = builder.udiv(rows.nbytes, I64(block_bytes))

            def block(b, k):
                body(e, x, e.at(rows.row, builder.mul(b, I64(block_bytes))), b, acc[k], summ[k])

            with cgutils.for_range(builder, builder.udiv(nb, I64(sets))) as loop:
                for k in range(sets):
                    block(builder.add(builder.mul(loop.index, I64(sets)), I64(k)), k)
            if sets == 2:
                with builder.if_then(builder.icmp_unsigned("!=", builder.urem(nb, I64(2)), I64(0))):
                    block(builder.sub(nb, I64(1)), 0)
            for t in range(nt):
                v = builder.load(acc[0][t])
                sm = builder.load(summ[0][t])
                for k in range(1, sets):
                    v = builder.fadd(v, builder.load(acc[k][t]))
                    sm = builder.fadd(sm, builder.load(summ[k][t]))
                rows.store(t, builder.fadd(e.hsum(v), sm))
            return context.get_dummy_value()

        return types.void(row, xq, xd, xs, out, r, t0), codegen

    return f


def legacy_body(decode: Callable, offset: int = 0, signed: bool = False, with_min: bool = False) -> Callable:
    """Block body of a 32-weight type (Q4_0 ... Q8_0) against Q8_0/Q8_1 activations, as ggml's AVX2 kernels:
    sumi = sum(w * qx) - offset * sum(qx) (exact), acc += float(sumi lanes) * (d_w * d_x), and with
    `with_min` summ += m_w * s_x. decode(e, blk) -> (w: 32 bytes, d_w, m_w or None)."""

    def body(e: Emit, x, blk, b, acc, summ):
        xq, xd, xs = x
        bl = e.b
        w, d, m = decode(e, blk)
        for t in range(len(acc)):
            xv = e.load(e.at(xq[t], bl.mul(b, I64(32))), V32I8)
            iv = e.dot_s8(w, xv) if signed else e.dot_u8(w, xv)
            if offset:
                sx = e.load(e.at(xs[t], bl.mul(b, I64(4))), I32)
                iv = bl.add(iv, bl.insert_element(ir.Constant(V8I32, [0] * 8), bl.mul(sx, I32(-offset)), I32(0)))
            dx = e.load(e.at(xd[t], bl.mul(b, I64(4))), F32)
            bl.store(e.fma(iv, bl.fmul(d, dx), bl.load(acc[t])), acc[t])
            if with_min:
                sx = e.load(e.at(xs[t], bl.mul(b, I64(4))), F32)
                bl.store(bl.fadd(bl.load(summ[t]), bl.fmul(m, sx)), summ[t])

    return body


def _words_to_i16(e: Emit, words: list[ir.Value]) -> ir.Value:
    """4 u32 words -> their 16 bytes as 16 unsigned i16 lanes."""
    v = ir.Constant(_vec(I32, 4), None)
    for k, w in enumerate(words):
        v = e.b.insert_element(v, w, I32(k))
    return e.b.zext(e.b.bitcast(v, V16I8), V16I16)


def scales_q4_k(e: Emit, p: ir.Value) -> ir.Value:
    """Q4_K/Q5_K's 12 packed bytes -> 16 i16 lanes: 8 six-bit scales then 8 mins (ggml's utmp shuffle)."""
    b = e.b
    u0, u1, u2 = (e.load(e.at(p, 4 * k), I32) for k in range(3))
    m1, m2, m3 = I32(0x3F3F3F3F), I32(0x0F0F0F0F), I32(0x03030303)
    u3 = b.or_(b.and_(b.lshr(u2, I32(4)), m2), b.shl(b.and_(b.lshr(u1, I32(6)), m3), I32(4)))
    mins_lo = b.and_(u1, m1)
    sc_hi = b.or_(b.and_(u2, m2), b.shl(b.and_(b.lshr(u0, I32(6)), m3), I32(4)))
    return _words_to_i16(e, [b.and_(u0, m1), sc_hi, mins_lo, u3])


def scales_q3_k(e: Emit, p: ir.Value) -> ir.Value:
    """Q3_K's 12 packed bytes -> 16 signed six-bit scales (minus 32) as i16 lanes."""
    b = e.b
    a0, a1, a2 = (e.load(e.at(p, 4 * k), I32) for k in range(3))
    m1, m2 = I32(0x03030303), I32(0x0F0F0F0F)

    def word(lo, shift_lo, shift_hi):
        return b.or_(b.and_(b.lshr(lo, I32(shift_lo)), m2), b.shl(b.and_(b.lshr(a2, I32(shift_hi)), m1), I32(4)))

    v = _words_to_i16(e, [word(a0, 0, 0), word(a1, 0, 2), word(a0, 4, 4), word(a1, 4, 6)])
    return b.sub(v, e.const(V16I16, 32))


def kquant_body(runs_fn: Callable) -> Callable:
    """Block body of a 256-weight K-quant against Q8_K activations, as ggml's AVX2 kernels: per run of 32
    weights, maddubs with the activations then madd with the run's i16 scales, summed exactly in i32;
    acc += float(sum) * (d_x * d_w), then the mins term acc -= float(madd(mins, bsums)) * (d_x * dmin_w).

    runs_fn(e, blk) -> (runs, d, dmin, mins, offset): runs = 8 x (w, scales16) where w is 32 u8 or a pair
    (u, v) meaning u - v (Q3_K); mins (16 i16, one per bsum) with dmin, or None; offset = (k, scales16):
    subtract k * scale * bsum per 16 weights (Q6_K's -32), or None."""

    def body(e: Emit, x, blk, b, acc, summ):
        xq, xd, xs = x
        bl = e.b
        runs, d, dmin, mins, offset = runs_fn(e, blk)
        for t in range(len(acc)):
            xbase = e.at(xq[t], bl.mul(b, I64(256)))
            isum = ir.Constant(V8I32, [0] * 8)
            for i, (w, scv) in enumerate(runs):
                xv = e.load(e.at(xbase, 32 * i), V32I8)
                if isinstance(w, tuple):
                    p = bl.sub(e.maddubs(w[0], xv), e.maddubs(w[1], xv))
                else:
                    p = e.maddubs(w, xv)
                isum = bl.add(isum, e.madd(p, scv))
            dx = e.load(e.at(xd[t], bl.mul(b, I64(4))), F32)
            if mins is not None or offset is not None:
                bs = e.load(e.at(xs[t], bl.mul(b, I64(32))), V16I16)
            if offset is not None:
                k, sc16 = offset
                isum = bl.sub(isum, bl.mul(e.madd(sc16, bs), e.const(V8I32, k)))
            a = e.fma(isum, bl.fmul(dx, d), bl.load(acc[t]))
            if mins is not None:
                a = e.fma(e.madd(mins, bs), bl.fneg(bl.fmul(dx, dmin)), a)
            bl.store(a, acc[t])

    return body
