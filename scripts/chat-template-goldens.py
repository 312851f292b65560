#!/usr/bin/env python3
"""Render a fixed set of conversations through chat templates with Python's
jinja2, exactly as Hugging Face transformers' `apply_chat_template` sets it
up (sandboxed environment, trim_blocks, lstrip_blocks, loop controls, its
`tojson`, `raise_exception` and `strftime_now`), and write the results as the
goldens nsed's own renderer (minijinja) must equal byte for byte.

The templates are llama.cpp's collection (`models/templates/`, in the
llama-cpp-python source package on the Python registry); the chosen ones are
copied into tests/data/golden/chat/templates/ so the test needs nothing else.
The date a template asks for (`strftime_now`) is fixed, 26 Jul 2024, as nsed
fixes it (Llama 3's own fallback date), so that prompts are reproducible.

usage: scripts/chat-template-goldens.py LLAMA_CPP_TEMPLATES_DIR
       (scripts/bench-llamacpp.sh unpacks the source package under
        ~/.cache/nsed/llama.cpp/<version>/src/vendor/llama.cpp/models/templates)
"""
import datetime
import json
import os
import shutil
import sys

import jinja2
import jinja2.ext
import jinja2.sandbox

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "data", "golden", "chat")

# The templates of the families nsed runs or the NSED paper names, and the
# beginning/end-of-sequence token texts their tokenizers define.
TEMPLATES = {
    "Qwen-Qwen3-0.6B": ("", "<|im_end|>"),
    "Qwen3.5-4B": ("", "<|im_end|>"),
    "Qwen3-Coder": ("", "<|im_end|>"),
    "Qwen-Qwen2.5-7B-Instruct": ("", "<|im_end|>"),
    "Qwen-QwQ-32B": ("", "<|im_end|>"),
    "openai-gpt-oss-120b": ("<|startoftext|>", "<|return|>"),
    "meta-llama-Llama-3.1-8B-Instruct": ("<|begin_of_text|>", "<|eot_id|>"),
    "meta-llama-Llama-3.2-3B-Instruct": ("<|begin_of_text|>", "<|eot_id|>"),
    "meta-llama-Llama-3.3-70B-Instruct": ("<|begin_of_text|>", "<|eot_id|>"),
    "google-gemma-2-2b-it": ("<bos>", "<eos>"),
    "google-gemma-4-31B-it": ("<bos>", "<eos>"),
    "deepseek-ai-DeepSeek-R1-Distill-Llama-8B": ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
    "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B": ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
    "deepseek-ai-DeepSeek-V3.1": ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
    "mistralai-Mistral-Nemo-Instruct-2407": ("<s>", "</s>"),
    "Mistral-Small-3.2-24B-Instruct-2506": ("<s>", "</s>"),
    "mistralai-Ministral-3-14B-Reasoning-2512": ("<s>", "</s>"),
    "unsloth-mistral-Devstral-Small-2507": ("<s>", "</s>"),
    "HuggingFaceTB-SmolLM3-3B": ("", "<|im_end|>"),
    "microsoft-Phi-3.5-mini-instruct": ("<s>", "<|endoftext|>"),
    "ibm-granite-granite-3.3-2B-Instruct": ("", "<|end_of_text|>"),
    "GLM-4.6": ("", "<|endoftext|>"),
    "moonshotai-Kimi-K2": ("", "<|im_end|>"),
}

SYSTEM = {"role": "system", "content": "You are a careful mathematician."}
CASES = [
    ("user", [{"role": "user", "content": "What is 7 * 8?"}], True, {}),
    ("system-user", [SYSTEM, {"role": "user", "content": "Solve: 2x + 3 = 11."}], True, {}),
    ("multi-turn", [SYSTEM, {"role": "user", "content": "What is 2+2?"},
                    {"role": "assistant", "content": "4"},
                    {"role": "user", "content": "And 3+3?"}], True, {}),
    ("no-generation-prompt", [{"role": "user", "content": "Hi"},
                              {"role": "assistant", "content": "Hello! How can I help?"}], False, {}),
    ("unicode", [{"role": "user", "content": "Ünïcödé — 数学 🧮\n  indented\tline \"quoted\" {{ not jinja }}"}], True, {}),
    ("thinking-off", [SYSTEM, {"role": "user", "content": "Solve: 2x + 3 = 11."}], True,
     {"enable_thinking": False}),
    ("reasoning-in-history", [{"role": "user", "content": "What is 2+2?"},
                              {"role": "assistant", "content": "<think>\nTwo and two.\n</think>\n\n4"},
                              {"role": "user", "content": "Next?"}], True, {}),
    ("reasoning-effort-high", [{"role": "user", "content": "What is 7 * 8?"}], True,
     {"reasoning_effort": "high"}),
]

FIXED_DATE = datetime.datetime(2024, 7, 26)


def environment():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent,
                          separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt):
        return FIXED_DATE.strftime(fmt)

    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    src = sys.argv[1]
    env = environment()
    shutil.rmtree(os.path.join(OUT, "templates"), ignore_errors=True)
    os.makedirs(os.path.join(OUT, "templates"))
    rows = []
    for name, (bos, eos) in TEMPLATES.items():
        path = os.path.join(src, name + ".jinja")
        with open(path, encoding="utf-8") as f:
            source = f.read()
        shutil.copy(path, os.path.join(OUT, "templates", name + ".jinja"))
        template = env.from_string(source)
        for case, messages, gen, kwargs in CASES:
            row = {"template": name, "case": case, "bos_token": bos, "eos_token": eos,
                   "add_generation_prompt": gen, "kwargs": kwargs, "messages": messages}
            try:
                row["rendered"] = template.render(messages=messages, tools=None, documents=None,
                                                  add_generation_prompt=gen, bos_token=bos,
                                                  eos_token=eos, **kwargs)
            except jinja2.exceptions.TemplateError as e:
                row["error"] = str(e)
            rows.append(row)
    with open(os.path.join(OUT, "renders.jsonl"), "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    errors = sum("error" in r for r in rows)
    print(f"{len(rows)} renders of {len(TEMPLATES)} templates ({errors} refused by the template) "
          f"with jinja2 {jinja2.__version__}")


if __name__ == "__main__":
    main()
