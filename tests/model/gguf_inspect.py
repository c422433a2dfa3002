#!/usr/bin/env python3
"""Independent check of a GGUF file as llama.cpp would read it (standard library only).

Parses the header, every metadata value and every tensor info of a GGUF v2/v3 file, then checks
what llama.cpp's loader relies on for a Llama model: tensor data aligned to general.alignment
(32 by default), in bounds, not overlapping, sizes matching the ggml type and shape, the
llama.* hyper-parameters consistent with the tensor shapes, the tokenizer arrays as long as the
vocabulary, and the block contents of Q8_0 / Q4_0 tensors as ggml's reference quantizers make
them (each Q8_0 block with nonzero scale holds a value of magnitude 127; each Q4_0 block with
nonzero scale holds the nibble 0, its largest magnitude, since d = max / -8).

Prints one line "ok tensors=N kv=M types=..." and exits 0, or prints the problems and exits 1.
Used by tests/model/synth_test.cc on files `flotilla synth` writes.
"""
import struct
import sys

GGML_TYPES = {0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 8: ("Q8_0", 32, 34), 30: ("BF16", 1, 2)}
SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


class Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, fmt):
        size = struct.calcsize("<" + fmt)
        if self.pos + size > len(self.data):
            raise ValueError("truncated at byte %d" % self.pos)
        (v,) = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += size
        return v

    def string(self):
        n = self.take("Q")
        if self.pos + n > len(self.data):
            raise ValueError("string past end of file")
        s = self.data[self.pos:self.pos + n].decode("utf-8")
        self.pos += n
        return s

    def value(self, t):
        if t in SCALAR:
            return self.take(SCALAR[t])
        if t == 8:
            return self.string()
        if t == 9:
            et, n = self.take("I"), self.take("Q")
            return [self.value(et) for _ in range(n)]
        raise ValueError("unknown metadata type %d" % t)


def f16(b):
    return struct.unpack("<e", b)[0]


def main(path):
    data = open(path, "rb").read()
    r = Reader(data)
    problems = []
    if r.take("I") != 0x46554747:
        print("not a GGUF file")
        return 1
    version = r.take("I")
    if version not in (2, 3):
        problems.append("version %d" % version)
    n_tensors, n_kv = r.take("Q"), r.take("Q")
    kv = {}
    for _ in range(n_kv):
        key = r.string()
        kv[key] = r.value(r.take("I"))
    tensors = []
    for _ in range(n_tensors):
        name = r.string()
        dims = [r.take("Q") for _ in range(r.take("I"))]
        tensors.append((name, dims, r.take("I"), r.take("Q")))
    align = kv.get("general.alignment", 32)
    start = (r.pos + align - 1) // align * align
    spans = []
    by_name = {}
    for name, dims, t, off in tensors:
        if t not in GGML_TYPES:
            problems.append("%s: ggml type %d" % (name, t))
            continue
        tname, blk, bsize = GGML_TYPES[t]
        n = 1
        for d in dims:
            n *= d
        if dims[0] % blk:
            problems.append("%s: row of %d is not a multiple of %d" % (name, dims[0], blk))
        size = n // blk * bsize
        if off % align:
            problems.append("%s: offset %d not aligned to %d" % (name, off, align))
        if start + off + size > len(data):
            problems.append("%s: data past end of file" % name)
        spans.append((off, off + size, name))
        by_name[name] = (dims, tname, start + off, size)
    spans.sort()
    for a, b in zip(spans, spans[1:]):
        if a[1] > b[0]:
            problems.append("%s overlaps %s" % (a[2], b[2]))

    arch = kv.get("general.architecture")
    if arch != "llama":
        problems.append("architecture %r" % arch)
    need = ["embedding_length", "block_count", "feed_forward_length", "attention.head_count", "context_length"]
    for k in need:
        if "llama." + k not in kv:
            problems.append("missing llama.%s" % k)
    if not problems:
        dim, layers, ffn = kv["llama.embedding_length"], kv["llama.block_count"], kv["llama.feed_forward_length"]
        heads = kv["llama.attention.head_count"]
        kv_heads = kv.get("llama.attention.head_count_kv", heads)
        hd = dim // heads
        vocab = len(kv.get("tokenizer.ggml.tokens", []))
        want = {"token_embd.weight": [dim, vocab], "output_norm.weight": [dim]}
        if "output.weight" in by_name:
            want["output.weight"] = [dim, vocab]
        for l in range(layers):
            p = "blk.%d." % l
            want.update({p + "attn_norm.weight": [dim], p + "ffn_norm.weight": [dim],
                         p + "attn_q.weight": [dim, heads * hd], p + "attn_k.weight": [dim, kv_heads * hd],
                         p + "attn_v.weight": [dim, kv_heads * hd], p + "attn_output.weight": [heads * hd, dim],
                         p + "ffn_gate.weight": [dim, ffn], p + "ffn_up.weight": [dim, ffn],
                         p + "ffn_down.weight": [ffn, dim]})
        for name, dims in want.items():
            if name not in by_name:
                problems.append("missing tensor " + name)
            elif by_name[name][0] != dims:
                problems.append("%s: shape %s, want %s" % (name, by_name[name][0], dims))
        for k in ("tokenizer.ggml.scores", "tokenizer.ggml.token_type"):
            if k in kv and len(kv[k]) != vocab:
                problems.append("%s has %d entries for %d tokens" % (k, len(kv[k]), vocab))
        if kv.get("tokenizer.ggml.model") != "llama":
            problems.append("tokenizer model %r" % kv.get("tokenizer.ggml.model"))

    # Block contents of quantized tensors (a sample of rows of each).
    for name, (dims, tname, off, size) in by_name.items():
        if tname not in ("Q8_0", "Q4_0"):
            continue
        bsize = 34 if tname == "Q8_0" else 18
        nblocks = size // bsize
        for b in range(0, nblocks, max(1, nblocks // 64)):
            blk = data[off + b * bsize: off + (b + 1) * bsize]
            d = f16(blk[:2])
            if d == 0:
                continue
            if tname == "Q8_0":
                qs = struct.unpack("<32b", blk[2:])
                if max(abs(q) for q in qs) != 127:
                    problems.append("%s block %d: no value of magnitude 127" % (name, b))
                    break
            else:
                nib = [x & 15 for x in blk[2:]] + [x >> 4 for x in blk[2:]]
                if 0 not in nib:
                    problems.append("%s block %d: no nibble 0" % (name, b))
                    break

    if problems:
        for p in problems[:20]:
            print(p)
        return 1
    types = sorted({v[1] for v in by_name.values()})
    print("ok tensors=%d kv=%d version=%d types=%s" % (n_tensors, n_kv, version, ",".join(types)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
