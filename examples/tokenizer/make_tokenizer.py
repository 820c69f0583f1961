"""Train the example tokenizer in this directory (byte-level BPE, at most 1024 tokens; ~40 KB).

    python examples/tokenizer/make_tokenizer.py    # rewrites tokenizer.json, tokenizer_config.json

Trained only on local text: the records of ../data/deepscaler_sample.jsonl (problem, solution,
answer) and the instructions of the built-in templates. No token holds more than one digit;
``<think>``, ``</think>``, ``<answer>``, ``</answer>`` and the role markers of the
``deepseek3_r1`` / ``qwen_r1`` templates are single normal (not special) tokens, so decoding
with ``skip_special_tokens=True`` keeps them; BOS ``<|bos|>``, EOS ``<|eos|>`` and PAD
``<|pad|>`` are special. Load it with ``AutoTokenizer.from_pretrained("examples/tokenizer")``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from r1zero.demo.corpus import DEMO_INSTRUCTION
from r1zero.demo.tokenizer import TAG_TOKENS, train_tokenizer
from r1zero.plugins.templates.r1 import ASSISTANT, R1_INSTRUCTION, USER

HERE = Path(__file__).resolve().parent
SAMPLE = HERE.parent / "data" / "deepscaler_sample.jsonl"
VOCAB_SIZE = 1024
ROLE_TOKENS = (USER, ASSISTANT, "<|im_start|>", "<|im_end|>")


def training_texts(sample: Path = SAMPLE) -> list[str]:
    texts = [R1_INSTRUCTION, DEMO_INSTRUCTION, "You are a helpful assistant."]
    with open(sample, encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            texts += [rec["problem"], rec["solution"], rec["answer"]]
    return texts


def main() -> int:
    tok = train_tokenizer(training_texts(), VOCAB_SIZE, HERE, tag_tokens=TAG_TOKENS + ROLE_TOKENS)
    for extra in ("special_tokens_map.json", "chat_template.jinja"):
        (HERE / extra).unlink(missing_ok=True)   # keep the directory to the two files it needs
    print(f"wrote a {len(tok)}-token tokenizer to {HERE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
