"""Built-in templates: ``deepseek3_r1`` (the seed's), ``qwen_r1`` and ``deepseek3``. Strings are
exactly MindSpeed-RL's templates.json entries. (The demo registers its own ``r1_demo`` from
``r1zero.demo.template``.)"""

from __future__ import annotations

from r1zero.host.hookspecs import hookimpl
from r1zero.data.templates import Template

R1_INSTRUCTION = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant "
    "solves it. The assistant first thinks about the reasoning process in the mind and then "
    "provides the user with the answer. The reasoning process and answer are enclosed within "
    "<think> </think> and <answer> </answer> tags, respectively, i.e., <think> reasoning process "
    "here </think><answer> answer here </answer>. Put your final answer within \\boxed{}."
)
USER, ASSISTANT = "<\uff5cUser\uff5c>", "<\uff5cAssistant\uff5c>"   # full-width bars, U+FF5C

ENTRIES = [
    {"name": "deepseek3_r1", "format_prefix": {"slots": [["bos_token"]]},
     "format_user": {"slots": [R1_INSTRUCTION + " " + USER + "{{content}}" + ASSISTANT]}},
    {"name": "deepseek3", "format_prefix": {"slots": [["bos_token"]]},
     "format_user": {"slots": [USER + "{{content}}" + ASSISTANT]}},
    {"name": "qwen_r1",
     "format_user": {"slots": ["<|im_start|>user\n" + R1_INSTRUCTION
                               + "\n{{content}}<|im_end|>\n<|im_start|>assistant\n"]},
     "format_system": {"slots": ["<|im_start|>system\n{{content}}<|im_end|>\n"]},
     "format_separator": {"slots": ["\n"]},
     "default_system": "You are a helpful assistant.",
     "stop_words": ["<|im_end|>"], "replace_eos": True},
]


def builtin_templates() -> list[Template]:
    return [Template.from_entry(e, source="r1zero.plugins.templates.r1") for e in ENTRIES]


@hookimpl
def register_templates(register):
    for template in builtin_templates():
        register(template)
