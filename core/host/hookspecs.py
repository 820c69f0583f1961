"""The five plugin hook families of r1zero.

Every hook receives a ``register`` callback and returns nothing; a plugin calls
``register(thing)`` (or ``register(thing, name="other")``) once per thing it provides.
The core binds each callback to the plugin that received it, so every registered thing
knows its plugin and distribution. Long form with examples: docs/plugins.md.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("r1zero")
hookimpl = pluggy.HookimplMarker("r1zero")


@hookspec
def register_templates(register):
    """Register prompt templates (``r1zero.data.templates.Template``).

    A template has a ``name``, ``render(content, system=None, tokenizer=None) -> str`` and
    ``stop_words``. Two plugins registering one name is an error naming both, unless the
    config picks one with ``template.plugin``.
    """


@hookspec
def register_dataset_handlers(register):
    """Register dataset handlers (``r1zero.data.records.DatasetHandler``).

    A handler has a ``name`` and ``convert(record, map_keys, where) -> Item`` mapping one raw
    record to prompt content + ground truth; a bad record raises ``DatasetError`` naming the
    file, row and field. Collisions: error unless ``data.handler_plugin`` picks one.
    """


@hookspec
def register_rewards(register):
    """Register reward scorers (``r1zero.scoring.pool.Scorer``).

    A scorer has a ``name``, ``components`` and ``score(response, ground_truth, extra)`` that
    returns ``{"reward": float, <component>: float, ...}``; it must be picklable, pure and safe
    on hostile text (the scoring pool kills it past its timeout). Collisions: error unless
    ``rewards.<name>.plugin`` picks one.
    """


@hookspec
def register_backends(register):
    """Register hardware backends (``r1zero.engines.backend.Backend``).

    A backend is data plus factories: ``name``, ``is_available() -> (bool, reason)``, device,
    collective and Ray resource names, env vars, ``make_train_engine`` /
    ``make_rollout_engine`` and ``validate_layout``. Vendor imports only inside methods.
    Collisions: error unless ``backend.plugin`` picks one.
    """


@hookspec
def register_algorithms(register):
    """Register RL algorithms and their pieces (``r1zero.algo.algorithm``): each registered
    object has a ``name`` and a ``kind`` -- ``algorithm`` (an ``AlgorithmSpec`` naming its
    advantage estimator, policy loss and defaults), ``advantage_estimator``, ``policy_loss`` or
    ``kl_controller``. A recipe picks them with ``algorithm.name``, ``algorithm.adv_estimator``,
    ``algorithm.policy_loss`` and ``algorithm.kl_ctrl``; an unknown name lists the valid ones.
    """
