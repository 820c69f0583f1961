"""r1zero template plugin ``chat_r1``: the R1-Zero instruction as a plain-text chat.

    <bos>System: <R1 instruction>
    User: <problem>
    Assistant:

The system text defaults to the R1 instruction (MindSpeed-RL's, reused from the built-in
templates) and can be replaced per record. Generation stops after ``</answer>``, so a model
that has answered does not run on to its token budget.
"""

from __future__ import annotations

from r1zero.hookspecs import hookimpl
from r1zero.plugins.templates.r1 import R1_INSTRUCTION
from r1zero.templates import Template

# The same entry format as MindSpeed-RL's templates.json; Template.from_entry validates it.
CHAT_R1 = {
    "name": "chat_r1",
    "format_prefix": {"slots": [["bos_token"]]},
    "format_system": {"slots": ["System: {{content}}\n"]},
    "format_user": {"slots": ["User: {{content}}\nAssistant:"]},
    "default_system": R1_INSTRUCTION,
    "stop_words": ["</answer>"],
}


@hookimpl
def register_templates(register):
    register(Template.from_entry(CHAT_R1, source=__name__))
