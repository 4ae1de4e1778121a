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


def _target_features() -> set[str]:
    """The CPU features numba compiles for (its own CPU_NAME/CPU_FEATURES settings win)."""
    feats = config.CPU_FEATURES
    if feats is None:
        if config.CPU_NAME not in (None, "host"):
            return set()  # a portable target (e.g. "generic"): no x86 intrinsics
        llvm.initialize_native_target()
        feats = llvm.get_host_cpu_features().flatten()
    return {f[1:] for f in feats.split(",") if f.startswith("+")}


FEATURES = _target_features()
HAS_AVX2 = "avx2" in FEATURES
HAS_AVX512 = "avx512f" in FEATURES


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

    def maddubs_s8(self, a: ir.Value, s: ir.Value) -> ir.Value:
        """32 s8 x 32 s8 -> 16 i16 pair sums: |a| times s with a's sign (ggml's mul_add_epi8)."""
        if HAS_AVX2:
            absa = self._x86("llvm.abs.v32i8", V32I8, a, ir.Constant(ir.IntType(1), 0))
            return self.maddubs(absa, self._x86("llvm.x86.avx2.psign.b", V32I8, s, a))
        p = self.b.mul(self.b.sext(a, _vec(I16, 32)), self.b.sext(s, _vec(I16, 32)))
        return self.b.add(self.shuffle(p, None, list(range(0, 32, 2))), self.shuffle(p, None, list(range(1, 32, 2))))

    def dot_s8(self, a: ir.Value, s: ir.Value) -> ir.Value:
        """sum of s8 a[j] * s8 s[j] in 8 i32 lanes (lane k: elements 4k..4k+3)."""
        return self.madd(self.maddubs_s8(a, s), self.const(V16I16, 1))

    def lut16(self, idx: ir.Value, table: list[int]) -> ir.Value:
        """32 bytes of indices 0..15 -> table[index] each (vpshufb on the table in both 128-bit lanes)."""
        tv = ir.Constant(V32I8, [v & 0xFF for v in table] * 2)
        if HAS_AVX2:
            return self._x86("llvm.x86.avx2.pshuf.b", V32I8, tv, idx)
        out = self.const(V32I8, 0)
        for k, v in enumerate(table):
            out = self.b.select(self.b.icmp_unsigned("==", idx, self.const(V32I8, k)), self.const(V32I8, v), out)
        return out

    def scales16(self, s16: ir.Value, i: int) -> ir.Value:
        """16 i16 lanes: 8 copies of scale i then 8 of scale i + 1 (from a vector of 16 i16 scales)."""
        return self.shuffle(s16, None, [i] * 8 + [i + 1] * 8)

    def madd8(self, a: ir.Value, b: ir.Value) -> ir.Value:
        """8 i16 x 8 i16 -> 4 i32 pair sums (128-bit vpmaddwd)."""
        if HAS_AVX2:
            return self._x86("llvm.x86.sse2.pmadd.wd", _vec(I32, 4), a, b)
        p = self.b.mul(self.b.sext(a, _vec(I32, 8)), self.b.sext(b, _vec(I32, 8)))
        return self.b.add(self.shuffle(p, None, [0, 2, 4, 6]), self.shuffle(p, None, [1, 3, 5, 7]))

    def isum(self, v: ir.Value) -> ir.Value:
        """Sum of the i32 lanes (exact)."""
        n = v.type.count
        while n > 1:
            n //= 2
            v = self.b.add(self.shuffle(v, None, list(range(n))), self.shuffle(v, None, list(range(n, 2 * n))))
        return self.b.extract_element(v, I32(0))

    # -- float ---------------------------------------------------------------------------------------
    def fma(self, iv: ir.Value, scale: ir.Value, acc: ir.Value) -> ir.Value:
        """fma(float(iv), scale, acc) lane by lane (ggml's _mm256_fmadd_ps(d, cvtepi32_ps(sumi), acc))."""
        n = iv.type.count
        fv = self.b.sitofp(iv, _vec(F32, n))
        return self._x86(f"llvm.fma.v{n}f32", _vec(F32, n), fv, self.splat(scale, n), acc)

    def hsum(self, v: ir.Value) -> ir.Value:
        """Sum of the lanes by halving (hsum_float_8: (lo + hi) 4 lanes, then [0]+[2], [1]+[3], then [0]+[1])."""
        n = v.type.count
        while n > 1:
            n //= 2
            v = self.b.fadd(self.shuffle(v, None, list(range(n))), self.shuffle(v, None, list(range(n, 2 * n))))
        return self.b.extract_element(v, I32(0))


class Rows:
    """Pointers into the arguments of a row-dot function: weight rows r.., activation rows t0.."""

    def __init__(self, e: Emit, context, sig, args):
        self.e = e
        data, xq, xd, xs, out = (context.make_array(ty)(context, e.b, a) for ty, a in zip(sig.args[:5], args[:5]))
        self.r, self.t0 = args[5], args[6]
        b = e.b
        self._data = b.bitcast(data.data, I8.as_pointer())
        self.nbytes = cgutils.unpack_tuple(b, data.shape, 2)[1]
        self._xq = b.bitcast(xq.data, I8.as_pointer())
        self._xd = b.bitcast(xd.data, I8.as_pointer())
        self._xs = b.bitcast(xs.data, I8.as_pointer())
        self._out = b.bitcast(out.data, I8.as_pointer())
        self._strides = {name: cgutils.unpack_tuple(b, a.strides, 2)[0] for name, a in
                         (("data", data), ("xq", xq), ("xd", xd), ("xs", xs), ("out", out))}

    def _row_ptr(self, name: str, base: ir.Value, start: ir.Value, i: int) -> ir.Value:
        b = self.e.b
        return b.gep(base, [b.mul(b.add(start, I64(i)), self._strides[name])])

    def weight_row(self, i: int) -> ir.Value:
        """Byte pointer to weight row r + i."""
        return self._row_ptr("data", self._data, self.r, i)

    def x_rows(self, nt: int) -> tuple[list, list, list]:
        """Byte pointers to rows t0..t0+nt-1 of xq, xd and xs."""
        return ([self._row_ptr("xq", self._xq, self.t0, t) for t in range(nt)],
                [self._row_ptr("xd", self._xd, self.t0, t) for t in range(nt)],
                [self._row_ptr("xs", self._xs, self.t0, t) for t in range(nt)])

    def store(self, i: int, t: int, value: ir.Value) -> None:
        """out[t0 + t, r + i] = value."""
        b = self.e.b
        p = self.e.at(self._row_ptr("out", self._out, self.t0, t), b.mul(b.add(self.r, I64(i)), I64(4)))
        b.store(value, b.bitcast(p, F32.as_pointer()))


class Acc:
    """One activation row's accumulators, as ggml's kernels keep them (allocas: LLVM keeps them in
    registers). `extra`:
    - None, "summ", "accm": ggml's vec_dot kernels. `acc` 8 f32 lanes, plus a scalar `summ` (Q4_1/Q5_1
      m*s, Q5_K mins) or 4 f32 lanes `accm` (Q4_K mins); result hsum(acc) (+ summ or + hsum(accm)).
    - "repack": ggml's repacked 8-row GEMV/GEMM (Q4_0, Q4_K, Q2_K on x86): one scalar `acc` and `accm`
      per row, each block's integer sums converted once; result acc - accm.
    - "pair": ggml's IQ4_NL/MXFP4 vec_dot: even blocks into `acc`, odd ones into `acc2` (`slot` says
      which), result hsum(acc + acc2); an odd last block is then added as a scalar (slot 2, `tail`)."""

    def __init__(self, e: Emit, extra: str | None):
        b = e.b
        self.extra = extra
        if extra == "repack":
            self.acc = cgutils.alloca_once_value(b, F32(0.0))
            self.accm = cgutils.alloca_once_value(b, F32(0.0))
            b.store(F32(0.0), self.acc)
            b.store(F32(0.0), self.accm)
            return
        self.acc = cgutils.alloca_once_value(b, ir.Constant(V8F32, [0.0] * 8))
        b.store(ir.Constant(V8F32, [0.0] * 8), self.acc)
        if extra == "pair":
            self.slot = 0
            self.acc2 = cgutils.alloca_once_value(b, ir.Constant(V8F32, [0.0] * 8))
            b.store(ir.Constant(V8F32, [0.0] * 8), self.acc2)
            self.tail = cgutils.alloca_once_value(b, F32(0.0))
        elif extra == "summ":
            self.summ = cgutils.alloca_once_value(b, F32(0.0))
            b.store(F32(0.0), self.summ)
        elif extra == "accm":
            self.accm = cgutils.alloca_once_value(b, ir.Constant(_vec(F32, 4), [0.0] * 4))
            b.store(ir.Constant(_vec(F32, 4), [0.0] * 4), self.accm)

    def result(self, e: Emit) -> ir.Value:
        if self.extra == "repack":
            return e.b.fsub(e.b.load(self.acc), e.b.load(self.accm))
        if self.extra == "pair":
            return e.b.load(self.tail)
        total = e.hsum(e.b.load(self.acc))
        if self.extra == "summ":
            total = e.b.fadd(total, e.b.load(self.summ))
        elif self.extra == "accm":
            total = e.b.fadd(total, e.hsum(e.b.load(self.accm)))
        return total

    def add_block(self, e: Emit, isum: ir.Value, scale: ir.Value) -> None:
        """acc = fma(float(isum), scale, acc): lane by lane, or (repack) on the exact integer total."""
        b = e.b
        if self.extra == "repack":
            b.store(b.fma(b.sitofp(e.isum(isum), F32), scale, b.load(self.acc)), self.acc)
        elif self.extra == "pair" and self.slot == 2:
            b.store(b.fma(scale, b.sitofp(e.isum(isum), F32), b.load(self.tail)), self.tail)
        elif self.extra == "pair" and self.slot == 1:
            b.store(e.fma(isum, scale, b.load(self.acc2)), self.acc2)
        else:
            b.store(e.fma(isum, scale, b.load(self.acc)), self.acc)


def row_dot(body: Callable, block_bytes: int, nt: int, extra: str | None = None, nr: int = 1):
    """A numba intrinsic `f(data, xq, xd, xs, out, r, t0)`: out[t0 + t, r + i] = weight row r + i .
    activation row t0 + t for i < nr, t < nt; weight rows are u8 blocks of `block_bytes`.
    `body(e, x, blk, b, accs)` emits one block's contribution to one weight row: x = (xq, xd, xs) row
    pointers per t, blk the block's byte pointer, b its index, accs the nt `Acc` of that row. Blocks are
    accumulated in order, one chain per (row, activation row), as ggml does (same float results); the nr
    rows' chains interleave, which hides the FMA latency without changing any result."""

    @intrinsic
    def f(typingctx, data, xq, xd, xs, out, r, t0):
        def codegen(context, builder, sig, args):
            e = Emit(builder)
            rows = Rows(e, context, sig, args)
            accs = [[Acc(e, extra) for _ in range(nt)] for _ in range(nr)]
            x = rows.x_rows(nt)
            w = [rows.weight_row(i) for i in range(nr)]
            nb = builder.udiv(rows.nbytes, I64(block_bytes))

            def block(index, slot):
                off = builder.mul(index, I64(block_bytes))
                for i in range(nr):
                    for a in accs[i]:
                        a.slot = slot
                    body(e, x, e.at(w[i], off), index, accs[i])

            if extra != "pair":
                with cgutils.for_range(builder, nb) as loop:
                    block(loop.index, 0)
            else:  # blocks two by two into acc / acc2, then hsum(acc + acc2), then an odd last block
                with cgutils.for_range(builder, builder.udiv(nb, I64(2))) as loop:
                    block(builder.mul(loop.index, I64(2)), 0)
                    block(builder.add(builder.mul(loop.index, I64(2)), I64(1)), 1)
                for a in (a for row in accs for a in row):
                    builder.store(e.hsum(builder.fadd(builder.load(a.acc), builder.load(a.acc2))), a.tail)
                with builder.if_then(builder.icmp_unsigned("!=", builder.urem(nb, I64(2)), I64(0))):
                    block(builder.sub(nb, I64(1)), 2)
            for i in range(nr):
                for t in range(nt):
                    rows.store(i, t, accs[i][t].result(e))
            return context.get_dummy_value()

        return types.void(data, xq, xd, xs, out, r, t0), codegen

    return f


def legacy_body(decode: Callable, offset: int = 0, signed: bool = False) -> Callable:
    """Block body of a 32-weight type (Q4_0 ... Q8_0) against Q8_0/Q8_1 activations, as ggml's AVX2
    kernels: sumi lanes = signed (w - offset) . qx by 4 (or u8 w . qx), acc = fma(float(sumi), d_w * d_x,
    acc); with a min (Q4_1/Q5_1, use extra="summ") summ = fma(m_w, s_x, summ).
    decode(e, blk) -> (w: 32 bytes, d_w, m_w or None)."""

    def body(e: Emit, x, blk, b, accs):
        xq, xd, xs = x
        bl = e.b
        w, d, m = decode(e, blk)
        if offset:
            w = bl.sub(w, e.const(V32I8, offset))
        for t, a in enumerate(accs):
            xv = e.load(e.at(xq[t], bl.mul(b, I64(32))), V32I8)
            iv = e.dot_s8(w, xv) if (signed or offset) else e.dot_u8(w, xv)
            dx = e.load(e.at(xd[t], bl.mul(b, I64(4))), F32)
            a.add_block(e, iv, bl.fmul(d, dx))
            if m is not None:
                sx = e.load(e.at(xs[t], bl.mul(b, I64(4))), F32)
                bl.store(bl.fma(m, sx, bl.load(a.summ)), a.summ)

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


class Signed:
    """A run of 32 signed weight bytes (IQ4_XS's looked-up values) for `kquant_body`: multiplied as s8."""

    def __init__(self, v: ir.Value):
        self.v = v


def kquant_body(runs_fn: Callable, mins_mode: str | None = None, gemm_steps: int = 1) -> Callable:
    """Block body of a 256-weight K-quant against Q8_K activations, as ggml's AVX2 kernels: per run of 32
    weights, maddubs with the activations then madd with the run's i16 scales, summed exactly in i32
    lanes; acc = fma(float(sumi), d_x * d_w, acc). The mins term -(d_x * dmin_w) * sum(min * bsum), as
    each type's kernel accumulates it (`mins_mode`):
    - "q2" (Q2_K): 16 mins x 16 bsums -> 8 lanes, fma into acc before the sums;
    - "q4" (Q4_K): 8 mins x 8 bsum pairs -> 4 lanes, fma into accm (use extra="accm");
    - "q5" (Q5_K): the same, summed to one integer, fma into summ (use extra="summ").
    With extra="repack" (ggml's repacked kernels) sums and mins are each converted once per super-block
    for one activation row (gemv), and `gemm_steps` times per super-block for four rows (gemm).

    runs_fn(e, blk) -> (runs, d, dmin, mins, offset): runs = 8 x (w, scales16) where w is 32 u8, a pair
    (u, v) meaning u - v (Q3_K) or `Signed` s8 (IQ4_XS); mins: 16 (q2) or 8 (q4, q5) i16 lanes, or None; offset = (k, scales16):
    subtract k * scale * bsum per 16 weights (Q6_K's -32), or None."""

    def body(e: Emit, x, blk, b, accs):
        xq, xd, xs = x
        bl = e.b
        runs, d, dmin, mins, offset = runs_fn(e, blk)
        repack = accs[0].extra == "repack"
        steps = gemm_steps if (repack and len(accs) == 4) else 1
        for t, a in enumerate(accs):
            xbase = e.at(xq[t], bl.mul(b, I64(256)))
            dx = e.load(e.at(xd[t], bl.mul(b, I64(4))), F32)
            if mins is not None or offset is not None:
                bs = e.load(e.at(xs[t], bl.mul(b, I64(32))), V16I16)
            mprod = None
            if mins is not None:
                if mins.type.count == 16:
                    mprod = e.madd(mins, bs)  # 8 lanes: one per 32 weights
                else:
                    pairs = bl.add(e.shuffle(bs, None, list(range(0, 16, 2))), e.shuffle(bs, None, list(range(1, 16, 2))))
                    mprod = e.madd8(mins, pairs)  # 4 lanes: one per 64 weights
            if mins is not None and not repack:
                dm = bl.fneg(bl.fmul(dx, dmin))
                if mins_mode == "q2":
                    bl.store(e.fma(mprod, dm, bl.load(a.acc)), a.acc)
                elif mins_mode == "q4":
                    bl.store(e.fma(mprod, dm, bl.load(a.accm)), a.accm)
                else:
                    bl.store(bl.fma(bl.sitofp(e.isum(mprod), F32), dm, bl.load(a.summ)), a.summ)
            parts = []
            for i, (w, scv) in enumerate(runs):
                xv = e.load(e.at(xbase, 32 * i), V32I8)
                if isinstance(w, Signed):
                    p = e.maddubs_s8(w.v, xv)
                elif isinstance(w, tuple):
                    p = bl.sub(e.maddubs(w[0], xv), e.maddubs(w[1], xv))
                else:
                    p = e.maddubs(w, xv)
                parts.append(e.madd(p, scv))
            per = len(parts) // steps
            for st in range(steps):
                isum = parts[st * per]
                for p in parts[st * per + 1 : (st + 1) * per]:
                    isum = bl.add(isum, p)
                if offset is not None:
                    k, sc16 = offset
                    isum = bl.sub(isum, bl.mul(e.madd(bs, sc16), e.const(V8I32, k)))
                a.add_block(e, isum, bl.fmul(dx, d))
                if mprod is not None and repack:  # accm = fma(float(sum of min * bsum), dmin * d_x, accm)
                    lanes = mprod.type.count // steps
                    part = e.shuffle(mprod, None, list(range(st * lanes, (st + 1) * lanes))) if steps > 1 else mprod
                    total = e.isum(part) if lanes > 1 else bl.extract_element(part, I32(0))
                    bl.store(bl.fma(bl.sitofp(total, F32), bl.fmul(dmin, dx), bl.load(a.accm)), a.accm)

    return body
