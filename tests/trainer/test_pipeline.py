"""``pipeline.resolve`` looks every plugin up once, in the run's host, and passes it inward:
a template from a local module (``plugins.modules``) preprocesses, samples with its stop word
and trains."""

from __future__ import annotations

import textwrap

from r1zero.cli.main import main
from r1zero.config.load import load_config
from r1zero.host.manager import PluginHost
from r1zero.trainer.metrics import read_metrics
from r1zero.data.pipeline import prepare, resolve
from tests.trainer.conftest import recipe, write_recipe

MY_TPL = textwrap.dedent('''
    from r1zero.hookspecs import hookimpl
    from r1zero.templates import Template


    @hookimpl
    def register_templates(register):
        register(Template.from_entry({
            "name": "my_tpl",
            "format_user": {"slots": ["Q: {{content}}\\nA: <think>"]},
            "stop_words": ["</answer>"],
        }))
''')


def test_a_template_from_a_local_module_trains(tiny_setup, tmp_path, monkeypatch, capsys):
    (tmp_path / "my_tpl.py").write_text(MY_TPL)
    monkeypatch.chdir(tmp_path)                       # plugins.modules: a relative .py path
    base = recipe(tiny_setup, tmp_path, template={"name": "my_tpl"},
                  plugins={"modules": ["my_tpl.py"]}, actor={"train_iters": 1},
                  data={"output": str(tmp_path / "prep")})
    path = write_recipe(tmp_path / "recipe.yaml", base)
    assert main(["train", str(path)]) == 0, capsys.readouterr().err
    assert len(read_metrics(tmp_path / "logs" / "metrics.jsonl")) == 1
    # the same resolution the trainer made, in a host of its own: the stop word is a token
    resolved = resolve(load_config(path), PluginHost(["my_tpl.py"]).load())
    assert resolved.template.name == "my_tpl" and resolved.template.stop_words == ("</answer>",)
    assert prepare(resolved).reused                   # the trainer's preprocessing, reused


def test_resolve_names_an_unknown_template_before_anything_is_built(tiny_setup, tmp_path, capsys):
    path = write_recipe(tmp_path / "recipe.yaml",
                        recipe(tiny_setup, tmp_path, template={"name": "my_tpl"}))
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("r1zero: error: ") and "unknown template 'my_tpl'" in err
    assert not (tmp_path / "logs").exists()
