"""A recipe's ``algorithm:`` section resolved into the pieces the trainer calls.

Four kinds of piece are registered through the ``register_algorithms`` hook, each an object
with a ``name`` and a ``kind``:
- ``AlgorithmSpec`` (kind ``algorithm``): a named recipe of pieces and defaults (``grpo``,
  ``dr_grpo``, ``dapo``, ``gspo``), picked by ``algorithm.name``;
- ``AdvantageEstimator`` (``advantage_estimator``): (rewards, groups, section) -> advantages;
- ``PolicyLoss`` (``policy_loss``): per-token loss, like ``r1zero.algo.loss.ppo_clip_loss``;
- ``KLController`` (``kl_controller``): section -> an object with ``value`` and
  ``update(kl, n_samples)``;
- ``RolloutCorrection`` (``rollout_correction``): (logp_old, logp_rollout, mask, C) -> (n, T)
  detached weights on the policy term, for the train/rollout mismatch
  (``r1zero.algo.rollout_corr``: ``tis_token``, ``tis_seq``, ``mis_token``, ``mis_seq``),
  picked by ``algorithm.rollout_correction`` (off by default).

A key of the section left unset (None) takes the algorithm's default, then the global one.
The trainer sees only ``Algorithm``: ``advantages`` once per step, ``loss`` for every
micro-batch (the one objective, ``r1zero.algo.loss.objective``) and ``kl_ctrl``.

Pieces may come from plugins, so their outputs are checked where they enter the trainer:
advantages must be a finite float tensor of shape (n,) or (n, T) for n rewards, a policy
loss must return (per-token loss of the log-probs' shape (n, T), clip fraction, approx KL).
A piece that raises or breaks this is a ``PluginError`` naming it and its plugin, one line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Mapping

import attrs
from torch import Tensor

from r1zero.algo.loss import masked_mean, objective
from r1zero.host.errors import ConfigError, PluginError
from r1zero.host.manager import KINDS

if TYPE_CHECKING:
    from r1zero.config.recipe import RecipeConfig

# the value of each preset-able key when neither the recipe nor the algorithm sets it
DEFAULTS: dict[str, Any] = {"loss_agg": "token-mean", "clip_ratio": 0.2, "clip_ratio_high": None,
                            "dynamic_sampling": False, "overlong_mask": False}


@attrs.frozen
class AdvantageEstimator:
    name: str
    fn: Callable[[Tensor, Tensor, Any], Tensor]      # (rewards, groups, algorithm section)
    kind: str = "advantage_estimator"


@attrs.frozen
class PolicyLoss:
    name: str
    fn: Callable[..., tuple[Tensor, Tensor, Tensor]]
    supports_dual_clip: bool = False
    kind: str = "policy_loss"


@attrs.frozen
class KLController:
    name: str
    make: Callable[[Any], Any]                       # algorithm section -> controller
    kind: str = "kl_controller"


@attrs.frozen
class RolloutCorrection:
    name: str
    fn: Callable[[Tensor, Tensor, Tensor, float], Tensor]   # (logp_old, logp_rollout, mask, C)
    kind: str = "rollout_correction"


@attrs.frozen
class AlgorithmSpec:
    name: str
    advantage: str
    policy_loss: str
    defaults: Mapping[str, Any] = attrs.field(factory=dict)   # keys of DEFAULTS
    kind: str = "algorithm"


@attrs.define
class Algorithm:
    """The resolved algorithm of a run."""
    name: str
    advantage: Callable[[Tensor, Tensor], Tensor]      # (rewards, groups) -> advantages
    policy_loss: Callable[..., tuple[Tensor, Tensor, Tensor]]
    kl_ctrl: Any
    loss_agg: str = "token-mean"
    clip_ratio: float = 0.2
    clip_ratio_high: float | None = None
    dual_clip: float | None = None
    kl_kind: str = "k3"
    entropy_coeff: float = 0.0
    norm_len: int | None = None
    dynamic_sampling: bool = False
    max_resample: int = 0
    overlong_mask: bool = False
    advantage_label: str = "advantage estimator"     # "advantage estimator 'x' (plugin ...)"
    loss_label: str = "policy loss"
    correction: Callable[[Tensor, Tensor, Tensor, float], Tensor] | None = None
    correction_c: float = 2.0
    correction_label: str = "rollout correction"

    def advantages(self, rewards: Tensor, groups: Tensor) -> Tensor:
        """(n,) rewards, (n,) group ids -> advantages (n,) or (n, T), checked finite."""
        try:
            out = self.advantage(rewards, groups)
        except Exception as exc:    # noqa: BLE001 - a plugin's code; named in one line
            raise _raised(self.advantage_label, exc) from exc
        n = rewards.shape[0]
        if not isinstance(out, Tensor) or out.dim() not in (1, 2) or out.shape[0] != n \
                or not out.is_floating_point():
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise PluginError(f"{self.advantage_label} returned {got}; advantages must be a "
                              f"float tensor of shape (n,) or (n, T) with n = {n}")
        if not bool(out.isfinite().all()):
            raise PluginError(f"{self.advantage_label} returned non-finite advantages "
                              f"({int((~out.isfinite()).sum())} of {out.numel()})")
        return out

    def loss(self, logp: Tensor, logp_old: Tensor, advantages: Tensor, mask: Tensor,
             logp_ref: Tensor | None = None, entropy: Tensor | None = None,
             logp_rollout: Tensor | None = None) -> dict[str, Tensor]:
        """``objective`` on one micro-batch with this algorithm's settings; with a rollout
        correction, its weights (from ``logp_old`` and the rollout's ``logp_rollout``) on the
        policy term, and their masked mean as "correction_weight"."""
        weight = None
        if self.correction is not None:
            if logp_rollout is None:
                raise ValueError("Algorithm.loss: a rollout correction needs logp_rollout")
            weight = self._checked_correction(logp_old, logp_rollout, mask)
        out = objective(logp, logp_old, advantages, mask, logp_ref, entropy,
                        policy_loss=self._checked_loss, kl_coef=self.kl_ctrl.value,
                        kl_kind=self.kl_kind, entropy_coeff=self.entropy_coeff,
                        clip_ratio=self.clip_ratio, clip_ratio_high=self.clip_ratio_high,
                        dual_clip=self.dual_clip, agg=self.loss_agg, norm_len=self.norm_len,
                        pg_weight=weight)
        if weight is not None:
            out["correction_weight"] = masked_mean(weight, mask).detach()
        return out

    def _checked_correction(self, logp_old: Tensor, logp_rollout: Tensor, mask: Tensor) -> Tensor:
        """``correction``'s (n, T) weights, checked to be finite and shaped like ``mask``."""
        try:
            w = self.correction(logp_old, logp_rollout, mask, self.correction_c)
        except Exception as exc:    # noqa: BLE001 - a plugin's code; named in one line
            raise _raised(self.correction_label, exc) from exc
        if not isinstance(w, Tensor) or w.shape != mask.shape or not bool(w.isfinite().all()):
            got = tuple(w.shape) if isinstance(w, Tensor) else type(w).__name__
            raise PluginError(f"{self.correction_label} returned {got}; a rollout correction "
                              f"returns finite weights of shape (n, T) = {tuple(mask.shape)}")
        return w


    def _checked_loss(self, logp: Tensor, *args: Any, **kwargs: Any) -> tuple[Tensor, ...]:
        """``policy_loss``, its per-token loss checked to be (n, T) like ``logp``."""
        try:
            out = self.policy_loss(logp, *args, **kwargs)
        except Exception as exc:    # noqa: BLE001 - a plugin's code; named in one line
            raise _raised(self.loss_label, exc) from exc
        if not (isinstance(out, tuple) and len(out) == 3 and isinstance(out[0], Tensor)
                and out[0].shape == logp.shape):
            got = (tuple(out[0].shape) if isinstance(out, tuple) and out
                   and isinstance(out[0], Tensor) else type(out).__name__)
            raise PluginError(f"{self.loss_label} returned {got}; a policy loss returns "
                              f"(per-token loss of shape (n, T) = {tuple(logp.shape)}, clip "
                              f"fraction, approx KL)")
        return out


def _raised(label: str, exc: BaseException) -> BaseException:
    """The error to raise for a piece that raised ``exc``: memory errors pass unchanged."""
    if isinstance(exc, (MemoryError, PluginError)) or type(exc).__name__ == "OutOfMemoryError":
        return exc
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    return PluginError(f"{label} raised {type(exc).__name__}: {first}")


def _piece(host: Any, kind: str, name: str, key: str) -> tuple[Any, str]:
    """(the piece registered as ``name``, "its noun 'name' (plugin 'p' [source])")."""
    try:
        piece = host.get(kind, name)
    except PluginError as exc:
        raise ConfigError(str(exc), key=key) from None
    owner = next((r.plugin.label() for r in host.items(kind) if r.obj is piece), "?")
    return piece, f"{KINDS[kind][1]} {name!r} (plugin {owner})"


def resolve_algorithm(cfg: RecipeConfig, host: Any) -> Algorithm:
    """``cfg.algorithm`` with its names looked up in ``host`` and its defaults filled in."""
    a = cfg.algorithm
    spec, _ = _piece(host, "algorithms", a.name, "algorithm.name")
    pick = {k: getattr(a, k) if getattr(a, k) is not None else spec.defaults.get(k, v)
            for k, v in DEFAULTS.items()}
    estimator, estimator_label = _piece(host, "advantage_estimators",
                                        a.adv_estimator or spec.advantage, "algorithm.adv_estimator")
    loss, loss_label = _piece(host, "policy_losses", a.policy_loss or spec.policy_loss,
                              "algorithm.policy_loss")
    ctrl, _ = _piece(host, "kl_controllers", a.kl_ctrl, "algorithm.kl_ctrl")
    if a.dual_clip is not None and not loss.supports_dual_clip:
        raise ConfigError(f"policy loss {loss.name!r} has no dual clip; unset it",
                          key="algorithm.dual_clip")

    correction, correction_label = None, "rollout correction"
    if a.rollout_correction is not None:
        piece, correction_label = _piece(host, "rollout_corrections", a.rollout_correction,
                                         "algorithm.rollout_correction")
        correction = piece.fn

    def advantage(rewards: Tensor, groups: Tensor) -> Tensor:
        return estimator.fn(rewards, groups, a)

    return Algorithm(spec.name, advantage, loss.fn, ctrl.make(a), loss_agg=pick["loss_agg"],
                     clip_ratio=pick["clip_ratio"], clip_ratio_high=pick["clip_ratio_high"],
                     dual_clip=a.dual_clip, kl_kind=a.kl_penalty, entropy_coeff=a.entropy_coeff,
                     norm_len=cfg.rollout.max_response_length,
                     dynamic_sampling=pick["dynamic_sampling"], max_resample=a.max_resample,
                     overlong_mask=pick["overlong_mask"], advantage_label=estimator_label,
                     loss_label=loss_label, correction=correction,
                     correction_c=a.rollout_correction_c, correction_label=correction_label)
