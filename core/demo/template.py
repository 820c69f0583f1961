"""The demo's prompt template, ``r1_demo``, registered through the ``r1zero`` entry-point group
exactly as a third-party template plugin registers its own (``demo_template`` in pyproject.toml),
so recipes name it like any other template."""

from __future__ import annotations

from r1zero.data.templates import Template
from r1zero.host.hookspecs import hookimpl

DEMO_INSTRUCTION = "Think in <think> </think>, answer in <answer> </answer> with \\boxed{}."

# A template in the entry format of MindSpeed-RL's templates.json; the response starts after "A:".
DEMO_TEMPLATE = {
    "name": "r1_demo",
    "format_prefix": {"slots": [["bos_token"]]},
    "format_user": {"slots": [DEMO_INSTRUCTION + "\nQ: {{content}}\nA:"]},
    "stop_words": [],
}


@hookimpl
def register_templates(register):
    register(Template.from_entry(DEMO_TEMPLATE, source="r1zero.demo.template"))
