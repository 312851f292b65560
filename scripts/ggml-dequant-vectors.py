#!/usr/bin/env python3
"""ggml's own dequantization of random blocks of every weight format nsed's
packed kernels read, written as committed test vectors
(tests/data/golden/dequant/ggml.json). The unit test `dequant_vectors` in
crates/nsed-engine/src/qmm/mod.rs packs the same blocks and checks that
nsed's per-element values equal ggml's bit for bit.

The blocks are random bytes, except that each f16 scale field holds a random
finite value (|v| in [2^-10, 2^-2]), so every code, sub-scale and minimum
pattern occurs. ggml is called through `ggml_get_type_traits(type)->to_float`
in the libggml-base shipped by the llama-cpp-python package (built from its
source package on the Python registry).

usage: scripts/ggml-dequant-vectors.py
needs: pip install --user llama-cpp-python==0.3.36 (compiles llama.cpp, ~15 min)
"""
import ctypes
import json
import os
import random
import struct

import llama_cpp

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "data", "golden", "dequant", "ggml.json")

# name: (ggml type id, offsets of the f16 fields in a block)
FORMATS = {
    "Q4_0": (2, [0]),
    "Q4_1": (3, [0, 2]),
    "Q5_0": (6, [0]),
    "Q8_0": (8, [0]),
    "Q2_K": (10, [80, 82]),
    "Q3_K": (11, [108]),
    "Q4_K": (12, [0, 2]),
    "Q5_K": (13, [0, 2]),
    "Q6_K": (14, [208]),
    "IQ4_NL": (20, [0]),
    "IQ4_XS": (23, [0]),
    "MXFP4": (39, []),
}
# E8M0 scale bytes (MXFP4: the block's first byte) drawn near 2^0, so that
# values stay finite.
E8M0_FIELDS = {"MXFP4": [0]}
# Elements per format: 1024, a whole number of blocks of either size.
ELEMENTS = 1024


class TypeTraits(ctypes.Structure):
    _fields_ = [
        ("type_name", ctypes.c_char_p),
        ("blck_size", ctypes.c_int64),
        ("blck_size_interleave", ctypes.c_int64),
        ("type_size", ctypes.c_size_t),
        ("is_quantized", ctypes.c_bool),
        ("to_float", ctypes.c_void_p),
        ("from_float_ref", ctypes.c_void_p),
    ]


TO_FLOAT = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.POINTER(ctypes.c_float), ctypes.c_int64)


def ggml():
    lib_dir = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
    lib = ctypes.CDLL(os.path.join(lib_dir, "libggml-base.so"))
    lib.ggml_get_type_traits.restype = ctypes.POINTER(TypeTraits)
    lib.ggml_get_type_traits.argtypes = [ctypes.c_int]
    return lib


def random_f16(rng):
    v = rng.uniform(2 ** -10, 2 ** -2) * rng.choice([-1, 1])
    return struct.pack("<e", v)


def main():
    lib = ggml()
    rng = random.Random(20261207)
    out = {
        "generator": "scripts/ggml-dequant-vectors.py",
        "ggml": "libggml-base of llama-cpp-python " + llama_cpp.__version__,
        "formats": {},
    }
    for name, (type_id, f16_fields) in FORMATS.items():
        traits = lib.ggml_get_type_traits(type_id).contents
        assert traits.type_name.decode().upper() == name.upper(), (traits.type_name, name)
        assert traits.to_float, name
        blocks = ELEMENTS // traits.blck_size
        data = bytearray(rng.getrandbits(8) for _ in range(blocks * traits.type_size))
        for b in range(blocks):
            for at in f16_fields:
                start = b * traits.type_size + at
                data[start:start + 2] = random_f16(rng)
            for at in E8M0_FIELDS.get(name, []):
                data[b * traits.type_size + at] = rng.randint(100, 140)
        buf = (ctypes.c_uint8 * len(data)).from_buffer(data)
        values = (ctypes.c_float * ELEMENTS)()
        TO_FLOAT(traits.to_float)(ctypes.addressof(buf), values, ELEMENTS)
        out["formats"][name] = {
            "ggml_type": type_id,
            "blocks": bytes(data).hex(),
            "values_f32le": b"".join(struct.pack("<f", v) for v in values).hex(),
        }
        print(f"{name}: {blocks} blocks, {ELEMENTS} values")
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
