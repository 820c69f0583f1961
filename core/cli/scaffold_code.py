"""The code that ``r1zero plugin new`` writes: one module and one test per plugin kind.

Placeholders, filled by :class:`r1zero.cli.scaffold.Names`: ``__NAME__`` (registered name and entry
point), ``__MODULE__``, ``__DIST__``, ``__CLASS__``. Each skeleton does something small but real,
so its test checks behaviour, not just that an object exists.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class Skeleton:
    hook: str           # hook function name
    host_kind: str      # PluginHost kind
    noun: str
    cls_suffix: str
    pick_key: str       # config key that picks between colliding plugins
    config_line: str    # how a recipe names the thing
    readme_use: str
    module: str
    test: str


def _test(imports: str, body: str) -> str:
    """A test file: docstring, imports, the registration test every kind shares, ``body``."""
    return ('"""Contract tests for __DIST__. Run after `pip install -e .`:  python -m pytest -q"""\n\n'
            + imports + _HOOK_TEST + body)


_HOOK_TEST = '''

@pytest.fixture
def host():
    return PluginHost().load()


def test_hook___HOOK__(host):
    """r1zero loaded the entry point from the installed distribution, without errors."""
    info = host.plugins["__NAME__"]
    assert info.error is None, info.error
    assert (info.distribution, info.source) == ("__DIST__", "installed")
    host.items("__HOST_KIND__")
    assert info.error is None, info.error
    assert "__NAME__" in info.registered["__HOST_KIND__"]
'''

REWARD_MODULE = '''\
"""r1zero reward scorer ``__NAME__``: 1.0 when the text between the last ``<answer>`` and
``</answer>`` equals the ground truth. Replace the rule in ``score`` with yours.

Contract (docs/plugins.md, ``register_rewards(register)``): ``name``, ``components``,
``score(response, ground_truth, extra) -> {"reward": float, <component>: float}``, picklable,
pure, safe on any text; ``configure(**options)`` returns a new scorer for
``rewards.__NAME__.options``.
"""

from __future__ import annotations

from typing import Any, Mapping

from r1zero.hookspecs import hookimpl


class __CLASS__:
    name = "__NAME__"
    components = ("tagged", "exact")
    in_process = True
    in_process_reason = "two str.rfind calls and one comparison: linear time, cannot hang"

    def __init__(self, case_sensitive: bool = True):
        if not isinstance(case_sensitive, bool):
            raise ValueError(f"case_sensitive must be true or false, got {case_sensitive!r}")
        self.case_sensitive = case_sensitive

    def configure(self, **options: Any) -> "__CLASS__":
        """A new scorer; an unknown option is a TypeError naming it."""
        return type(self)(**options)

    def score(self, response: str, ground_truth: str, extra: Mapping[str, Any]) -> dict[str, float]:
        text = response if isinstance(response, str) else ""
        end = text.rfind("</answer>")
        start = text.rfind("<answer>", 0, end) if end >= 0 else -1
        if start < 0:
            return {"reward": 0.0, "tagged": 0.0, "exact": 0.0}
        got, want = text[start + len("<answer>"):end].strip(), str(ground_truth).strip()
        if not self.case_sensitive:
            got, want = got.casefold(), want.casefold()
        exact = 1.0 if got == want else 0.0
        return {"reward": exact, "tagged": 1.0, "exact": exact}


@hookimpl
def register_rewards(register):
    register(__CLASS__())
'''

REWARD_TEST = _test('''\
import pickle

import pytest

from r1zero.manager import PluginHost
from r1zero.registry import get_reward
from r1zero.scoring import ScoringPool
from __MODULE__ import __CLASS__
''', '''

def test_scores_by_hand():
    s = __CLASS__()
    assert s.score("<think>7+5</think><answer> 12 </answer>", "12", {}) == {
        "reward": 1.0, "tagged": 1.0, "exact": 1.0}
    assert s.score("<answer>12</answer> then <answer>13</answer>", "12", {})["exact"] == 0.0
    assert s.score("12", "12", {}) == {"reward": 0.0, "tagged": 0.0, "exact": 0.0}


def test_options_from_the_config(host):
    s = get_reward("__NAME__", {"case_sensitive": False}, host=host)
    assert s.score("<answer>ABC</answer>", "abc", {})["reward"] == 1.0
    with pytest.raises(Exception, match="rewards.__NAME__.options"):
        get_reward("__NAME__", {"no_such_option": 1}, host=host)


def test_through_the_scoring_pool(host):
    """The pool checks every returned value; hostile text must still give 0.0, not an error."""
    responses = ["<answer>12</answer>", "<answer>1</answer>", "\\x00" * 10_000, "<answer>" * 5_000]
    pool = ScoringPool([(get_reward("__NAME__", host=host), 1.0)], workers=1, timeout_s=5.0)
    try:
        batch = pool.score(responses, ["12"] * 4, [{}] * 4)
    finally:
        pool.close()
    assert batch.rewards == [1.0, 0.0, 0.0, 0.0]
    assert batch.components["__NAME__/exact"] == [1.0, 0.0, 0.0, 0.0]
    assert not batch.errors


def test_picklable():
    assert pickle.loads(pickle.dumps(__CLASS__(case_sensitive=False))).case_sensitive is False
''')

TEMPLATE_MODULE = '''\
"""r1zero prompt template ``__NAME__``, in MindSpeed-RL's ``templates.json`` entry format.

Contract (docs/plugins.md, ``register_templates(register)``): a ``Template`` with a ``name``,
``render(content, system=None, tokenizer=None) -> str`` and ``stop_words``.
"""

from __future__ import annotations

from r1zero.hookspecs import hookimpl
from r1zero.templates import Template

ENTRY = {
    "name": "__NAME__",
    "format_system": {"slots": ["{{content}}\\n\\n"]},
    "format_user": {"slots": ["Question: {{content}}\\nAnswer:"]},
    "default_system": ("Think inside <think> </think>, then give the final answer inside "
                       "<answer> </answer>."),
    "stop_words": ["</answer>"],
}


@hookimpl
def register_templates(register):
    register(Template.from_entry(ENTRY, source=__name__))
'''

TEMPLATE_TEST = _test('''\
import pickle

import pytest

from r1zero.manager import PluginHost
from r1zero.registry import get_template
''', '''

def test_renders_the_prompt(host):
    t = get_template("__NAME__", host=host)
    assert t.render("What is 2 + 3?", system="Be brief.") == (
        "Be brief.\\n\\nQuestion: What is 2 + 3?\\nAnswer:")
    assert t.render("Q").startswith("Think inside <think>")
    assert t.stop_words == ("</answer>",)


def test_picklable(host):
    t = get_template("__NAME__", host=host)
    assert pickle.loads(pickle.dumps(t)) == t
''')

DATASET_MODULE = '''\
"""r1zero dataset handler ``__NAME__``: GSM8K-style records whose answer field holds a worked
solution ending in ``#### <final answer>``; only the final answer becomes the ground truth.

Contract (docs/plugins.md, ``register_dataset_handlers(register)``): ``name`` and
``convert(record, map_keys, where) -> Item``; a bad record raises ``DatasetError`` naming the
file (``where.path``), the row (``where.row``) and the field.
"""

from __future__ import annotations

from typing import Any, Mapping

from r1zero.data import DatasetHandler, Item, RowRef
from r1zero.errors import DatasetError
from r1zero.hookspecs import hookimpl


class __CLASS__(DatasetHandler):
    name = "__NAME__"

    def convert(self, record: Mapping[str, Any], map_keys: Mapping[str, str],
                where: RowRef) -> Item:
        question = self.text_field(record, map_keys, "prompt", where)
        solution = self.text_field(record, map_keys, "response", where, allow_int=True)
        _, sep, final = solution.rpartition("####")
        if not sep or not final.strip():
            key = map_keys["response"]
            raise DatasetError(f"field {key!r} has no '#### <answer>' line (ends {solution[-40:]!r})",
                               path=where.path, row=where.row, field=key)
        return Item(content=question, ground_truth=final.strip().replace(",", ""),
                    extra={"row": where.row, "source": where.path})


@hookimpl
def register_dataset_handlers(register):
    register(__CLASS__())
'''

DATASET_TEST = _test('''\
import json
import pickle

import pytest

from r1zero.data import load_items
from r1zero.errors import DatasetError
from r1zero.manager import PluginHost
from r1zero.registry import get_handler
''', '''
KEYS = {"prompt": "question", "response": "answer"}


def test_reads_a_file(host, tmp_path):
    path = tmp_path / "train.jsonl"
    rows = [{"question": "2 + 3?", "answer": "2 + 3 = 5\\n#### 5"},
            {"question": "Sum?", "answer": "It is 1,234.\\n#### 1,234"}]
    path.write_text("".join(json.dumps(r) + "\\n" for r in rows))
    items, skipped, _ = load_items(path, get_handler("__NAME__", host=host), KEYS)
    assert [(i.content, i.ground_truth) for i in items] == [("2 + 3?", "5"), ("Sum?", "1234")]
    assert skipped == 0 and items[1].extra["row"] == 2


def test_bad_row_names_file_row_and_field(host, tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"question": "q", "answer": "no marker"}) + "\\n")
    with pytest.raises(DatasetError, match=r"bad.jsonl row 1: field 'answer' has no '####"):
        load_items(path, get_handler("__NAME__", host=host), KEYS)
    items, skipped, errors = load_items(path, get_handler("__NAME__", host=host), KEYS,
                                        skip_bad_rows=True)
    assert (items, skipped) == ([], 1) and "row 1" in errors[0]


def test_picklable(host):
    assert pickle.loads(pickle.dumps(get_handler("__NAME__", host=host))).name == "__NAME__"
''')

BACKEND_MODULE = '''\
"""r1zero hardware backend ``__NAME__``. As written it runs torch on the CPU; for a device,
change ``device`` / ``collective`` / ``ray_resource`` and the import in ``is_available``.

Contract (docs/plugins.md, ``register_backends(register)``): data plus factories. Vendor imports
happen inside methods, never at module top, so the plugin lists and reports on any machine.
"""

from __future__ import annotations

from r1zero.backends import Backend
from r1zero.hookspecs import hookimpl


class __CLASS__(Backend):
    name = "__NAME__"
    device = "cpu"          # torch device type, e.g. "cuda", "npu", "xpu"
    collective = "gloo"     # torch.distributed backend, e.g. "nccl", "hccl"
    ray_resource = "CPU"    # what a Ray worker asks for, e.g. "GPU", "NPU"
    devices_per_node = 1

    def is_available(self) -> tuple[bool, str]:
        try:
            import torch  # the vendor import goes here, e.g. `import torch_npu`
        except ImportError as exc:
            return False, f"torch not importable ({exc})"
        return True, f"torch {torch.__version__} on CPU"


@hookimpl
def register_backends(register):
    register(__CLASS__())
'''

BACKEND_TEST = _test('''\
import pickle

import pytest

from r1zero.config_load import load_config
from r1zero.errors import ConfigError
from r1zero.manager import PluginHost
from r1zero.registry import get_backend
''', '''

def test_available_here(host):
    backend = get_backend("__NAME__", host=host)
    ok, reason = backend.is_available()
    assert ok, reason
    backend.require()


def test_layout_is_checked(host):
    backend = get_backend("__NAME__", host=host)
    backend.validate_layout(load_config(None, ["backend.name=__NAME__"]))
    with pytest.raises(ConfigError, match=r"tensor_parallel 2 .* does not divide the 1 devices"):
        backend.validate_layout(load_config(None, ["backend.name=__NAME__", "actor.tensor_parallel=2"]))


def test_picklable(host):
    assert pickle.loads(pickle.dumps(get_backend("__NAME__", host=host))).name == "__NAME__"
''')

ALGORITHM_MODULE = '''\
"""r1zero algorithm plugin ``__NAME__``: GRPO's pieces with a policy loss of your own.

Contract (docs/plugins.md, ``register_algorithms(register)``): a ``PolicyLoss`` is
``fn(logp, logp_old, advantages, mask, *, clip_ratio, clip_ratio_high, dual_clip)`` ->
``(per-token loss (n, T), clipfrac, approx_kl)``; r1zero adds the KL and entropy terms and
aggregates by ``algorithm.loss_agg``. The ``AlgorithmSpec`` names the pieces a recipe gets
with ``algorithm: {name: __NAME__}``.
"""

from __future__ import annotations

import torch

from r1zero.algo.algorithm import AlgorithmSpec, PolicyLoss
from r1zero.algo.loss import masked_mean
from r1zero.hookspecs import hookimpl


def __NAME___loss(logp, logp_old, advantages, mask, *, clip_ratio=0.2, clip_ratio_high=None,
                  dual_clip=None):
    """Importance-weighted policy gradient with the weight capped at 1 + clip_ratio_high:
    l_t = -min(r_t, 1 + c) · A, r_t = exp(logp_t - logp_old_t). Replace with your rule."""
    if advantages.dim() == logp.dim() - 1:
        advantages = advantages.unsqueeze(-1)
    high = clip_ratio if clip_ratio_high is None else clip_ratio_high
    log_ratio = torch.clamp(logp - logp_old, min=-20.0, max=20.0)
    ratio = torch.exp(log_ratio)
    capped = torch.clamp(ratio, max=1.0 + high)
    clipfrac = masked_mean((ratio > 1.0 + high).float(), mask)
    return -capped * advantages, clipfrac.detach(), masked_mean(-log_ratio, mask).detach()


@hookimpl
def register_algorithms(register):
    register(PolicyLoss("__NAME__", __NAME___loss))
    register(AlgorithmSpec("__NAME__", advantage="group_norm", policy_loss="__NAME__",
                           defaults={"loss_agg": "token-mean"}))
'''

ALGORITHM_TEST = _test('''\
import math

import pytest
import torch

from r1zero.manager import PluginHost
from __MODULE__ import __NAME___loss
''', '''

def test_loss_by_hand():
    # ratios 1.5 and .5 with A = 1, 1 and the cap at 1.2: losses -1.2 and -.5 ;
    # the capped token has no gradient, the other d/dlogp = -.5
    logp = torch.tensor([[math.log(1.5), math.log(.5)]], requires_grad=True)
    loss, clipfrac, _ = __NAME___loss(logp, torch.zeros(1, 2), torch.ones(1), torch.ones(1, 2))
    assert torch.allclose(loss, torch.tensor([[-1.2, -.5]]))
    loss.sum().backward()
    assert torch.allclose(logp.grad, torch.tensor([[0., -.5]]))
    assert clipfrac.item() == pytest.approx(.5)


def test_a_recipe_picks_it(host):
    from r1zero.algo.algorithm import resolve_algorithm
    from r1zero.config_load import load_config

    alg = resolve_algorithm(load_config(None, ["algorithm.name=__NAME__"]), host)
    assert alg.name == "__NAME__" and alg.policy_loss is __NAME___loss
''')

SKELETONS: dict[str, Skeleton] = {
    "templates": Skeleton(
        "register_templates", "templates", "template", "", "template.plugin",
        "template: {name: __NAME__}",
        "In a recipe: `template: {name: __NAME__}`.\n", TEMPLATE_MODULE, TEMPLATE_TEST),
    "datasets": Skeleton(
        "register_dataset_handlers", "dataset_handlers", "dataset handler", "Handler",
        "data.handler_plugin", "data: {handler: __NAME__, map_keys: {prompt: question, "
        "response: answer}}",
        "In a recipe: `data: {handler: __NAME__, map_keys: {prompt: question, response: answer}}`.\n",
        DATASET_MODULE, DATASET_TEST),
    "rewards": Skeleton(
        "register_rewards", "rewards", "reward scorer", "Scorer", "rewards.__NAME__.plugin",
        "rewards: {base_acc: {weight: 1.0}, __NAME__: {weight: 0.5}}",
        "In a recipe, beside base_acc (total = 1.0 x base_acc + 0.5 x __NAME__):\n"
        "`rewards: {base_acc: {weight: 1.0}, __NAME__: {weight: 0.5, options: {case_sensitive: false}}}`.\n"
        "Each component is logged as `reward/__NAME__/<component>` and plotted.\n",
        REWARD_MODULE, REWARD_TEST),
    "backends": Skeleton(
        "register_backends", "backends", "backend", "Backend", "backend.plugin",
        "backend: {name: __NAME__}",
        "In a recipe: `backend: {name: __NAME__}`.\n", BACKEND_MODULE, BACKEND_TEST),
    "algorithms": Skeleton(
        "register_algorithms", "algorithms", "algorithm", "", "plugins.disable",
        "algorithm: {name: __NAME__}",
        "In a recipe: `algorithm: {name: __NAME__}`.\n", ALGORITHM_MODULE, ALGORITHM_TEST),
}
