"""Writes the fuzzer's seed inputs: small GGUF headers that use every value type, nested arrays and tensors."""
import os
import struct
import sys

out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus")
os.makedirs(out, exist_ok=True)


def s(text):
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def value(kind, v):
    fmt = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
    if kind == 8:
        return s(v)
    if kind == 9:
        element, items = v
        body = struct.pack("<IQ", element, len(items))
        for item in items:
            body += value(element, item)
        return body
    return struct.pack(fmt[kind], v)


def header(version, metadata, tensors):
    body = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(metadata))
    for key, kind, v in metadata:
        body += s(key) + struct.pack("<I", kind) + value(kind, v)
    for name, dims, kind, offset in tensors:
        body += s(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        body += struct.pack("<IQ", kind, offset)
    return body


every_type = [
    ("general.architecture", 8, "llama"),
    ("u8", 0, 7), ("i8", 1, -7), ("u16", 2, 700), ("i16", 3, -700), ("u32", 4, 70000), ("i32", 5, -70000),
    ("f32", 6, 1.5), ("bool", 7, True), ("u64", 10, 1 << 40), ("i64", 11, -(1 << 40)), ("f64", 12, 2.25),
    ("general.alignment", 4, 64),
    ("tokens", 9, (8, ["<s>", "</s>", "a", "b"])),
    ("nested", 9, (9, [(4, [1, 2, 3]), (8, ["x"])])),
    ("llama.block_count", 4, 2), ("llama.context_length", 4, 512), ("llama.embedding_length", 4, 64),
    ("llama.attention.head_count", 4, 4), ("llama.attention.head_count_kv", 4, 2),
]
tensors = [("token_embd.weight", [64, 4], 0, 0), ("blk.0.attn_q.weight", [64, 64], 2, 1024)]
seeds = {
    "v3-every-type": header(3, every_type, tensors),
    "v2-minimal": header(2, [("general.architecture", 8, "gpt2")], []),
    "v3-tensors-only": header(3, [], tensors * 3),
    "v3-empty-array": header(3, [("empty", 9, (4, []))], []),
}
for name, data in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)
