#!/usr/bin/env python3
"""Pre-tokenization goldens for the `gpt-4o` (GPT-OSS) and `tekken` (Mistral
Nemo, Small 3) pre-tokenizers, which llama.cpp ships no vocabulary test for: the pieces Python's `regex` module
cuts the tokenizer corpus (and texts that exercise letter case, contractions
and combining marks) into with llama.cpp's pattern for it (the one that
defines the ids llama.cpp gives), for tests/it/tokenizer_golden.rs.

usage: scripts/pretokenizer-goldens.py   (needs: pip install --user regex)
"""
import json
import os

import regex

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN = os.path.join(HERE, "..", "tests", "data", "golden", "tokenizer")
# llama.cpp's LLAMA_VOCAB_PRE_TYPE_GPT4O pattern (src/llama-vocab.cpp, 0.3.36).
GPT4O = (r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+"
         r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?"
         r"|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*"
         r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?"
         r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")
# llama.cpp's LLAMA_VOCAB_PRE_TYPE_TEKKEN pattern (same file).
TEKKEN = (r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+"
          r"|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*"
          r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")
EXTRA = ["HelloWorld iPhone McDONALD'S DON'T we'll", "CamelCaseWord lowerUPPER",
         "cafe\u0301 na\u00efve \u00c9COLE", "path/to/file.txt\n\n\tindent", "12345678 1,234.5"]


def main():
    with open(os.path.join(GOLDEN, "corpus.jsonl"), encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f] + EXTRA
    for name, source in [("gpt-4o", GPT4O), ("tekken", TEKKEN)]:
        pattern = regex.compile(source)
        with open(os.path.join(GOLDEN, f"{name}-pretokens.jsonl"), "w", encoding="utf-8") as out:
            for text in texts:
                pieces = [m.group(0) for m in pattern.finditer(text)]
                # Text no match covers stays a piece of its own, as in llama.cpp.
                assert "".join(pieces) == text, text
                out.write(json.dumps({"text": text, "pieces": pieces}, ensure_ascii=False) + "\n")
    print(f"{len(texts)} texts, regex {regex.__version__}")


if __name__ == "__main__":
    main()
