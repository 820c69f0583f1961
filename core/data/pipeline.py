"""One entry point from a recipe to the objects a run uses.

    run = resolve(cfg, host_for(cfg))      # every name in the recipe -> a plugin object, once
    data = prepare(run)                    # the preprocessing stage (reuses a fresh output)
    GRPOTrainer(run, data=data).run()

``resolve`` looks up the backend, template, dataset handler, reward scorers and algorithm in
the run's ``PluginHost`` and checks that the recipe's keys are ones the chosen pieces act on;
an unknown name or an unsupported key is a ``ConfigError`` before anything is built. What it
returns is passed inward: nothing below looks a plugin up again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from r1zero.data.preprocess import preprocess
from r1zero.data.prompts import output_dir
from r1zero.data.templates import get_template
from r1zero.host.errors import ConfigError
from r1zero.host.registry import get_backend, get_handler, get_scorers

if TYPE_CHECKING:
    from r1zero.config.recipe import RecipeConfig


@attrs.frozen
class Resolved:
    """A recipe with every plugin name resolved (the argument of ``GRPOTrainer``)."""
    cfg: RecipeConfig
    host: Any
    backend: Any
    template: Any
    handler: Any
    scorers: list            # (scorer, weight) for each ``rewards`` entry
    algorithm: Any           # r1zero.algo.algorithm.Algorithm


def resolve(cfg: RecipeConfig, host: Any) -> Resolved:
    """``cfg`` (a ``RecipeConfig``) with its plugin names looked up in ``host``."""
    from r1zero.algo.algorithm import resolve_algorithm

    backend = get_backend(cfg.backend.name, cfg.backend.plugin, host=host)
    template = get_template(cfg.template.name, cfg.template.file, cfg.template.plugin, host=host)
    handler = get_handler(cfg.data.handler, cfg.data.handler_plugin, host=host)
    scorers = get_scorers(cfg, host=host)
    algorithm = resolve_algorithm(cfg, host)
    return Resolved(cfg, host, backend, template, handler, scorers, algorithm)


def from_config(cfg: RecipeConfig) -> Resolved:
    """``resolve`` with the host the config's ``plugins:`` section describes."""
    from r1zero.host.registry import host_for

    return resolve(cfg, host_for(cfg))


def prepare(run: Resolved, force: bool = False, skip_bad_rows: bool | None = None):
    """The preprocessing stage: ``data.input`` -> the dataset on disk; returns its manifest.
    An output whose manifest matches the inputs is reused unless ``force``."""
    from r1zero.config.load import to_dict

    cfg = run.cfg
    if not cfg.data.input:
        raise ConfigError("no input dataset: set data.input", key="data.input")
    return preprocess(
        cfg.data.input, run.handler, run.template, cfg.model.tokenizer or cfg.model.path,
        output_dir(cfg), map_keys=cfg.data.map_keys, max_prompt_length=cfg.rollout.max_prompt_length,
        workers=cfg.data.workers,
        skip_bad_rows=cfg.data.skip_bad_rows if skip_bad_rows is None else skip_bad_rows,
        config={"data": to_dict(cfg.data), "template": to_dict(cfg.template)}, force=force)


def stop_sequences(tokenizer: Any, template: Any) -> list[tuple[int, ...]]:
    """What ends a sample, as token ids: EOS, then each of the template's stop words (one id,
    or several for a word the tokenizer splits). A word that encodes to nothing is refused."""
    stops = [] if tokenizer.eos_token_id is None else [(tokenizer.eos_token_id,)]
    for word in template.stop_words:
        toks = tuple(tokenizer.encode(word, add_special_tokens=False))
        if not toks:
            raise ConfigError(f"template {template.name!r}: stop word {word!r} encodes to no "
                              "token of this tokenizer", key="template.name")
        if toks not in stops:
            stops.append(toks)
    return stops
