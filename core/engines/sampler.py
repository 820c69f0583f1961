"""Lean batched sampling for rollout: n samples per prompt from a causal LM, on any torch device.

Why not ``model.generate``: on the tiny models of the CPU demo and benchmark, each decode step
costs far more in framework overhead (logits processors, mask building, cache objects, module
hooks) than in arithmetic. This loop keeps a static KV cache it owns, runs one plain forward per
step for the whole batch, samples by inverse CDF (one uniform per row instead of one random
number per vocabulary entry), and drops finished rows from the batch once enough have finished.

Two steppers compute the logits of one step:
- ``_FastStepper``: a hand-written forward for the Llama family as transformers implements it
  (``qwen2``, ``qwen3``, ``llama``: RMSNorm, RoPE from the model's own ``rotary_emb``, GQA
  attention, SwiGLU). It reads the model's parameters in place, so weights updated by the
  optimizer are used at the next call with no copy.
- ``_HFStepper``: the model's own forward with a ``DynamicCache``, for any other architecture.

Prompts are left-padded, each row's position ids count its own tokens only, and every row
writes its next key/value into the same cache column, so one step serves the whole batch.
"""

from __future__ import annotations

import contextlib
import inspect
from typing import Any, Sequence

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor

from r1zero.engines.routing import RouteRecorder

FAST_MODEL_TYPES = ("qwen2", "qwen3", "llama")
# Drop finished rows from the batch once this share of the rows still in it has finished:
# the copy of the cache it costs is then repaid by the smaller steps that follow.
COMPACT_SHARE = 0.25


@attrs.define
class SampleOutput:
    """Samples laid out group after group: prompt 0's n samples first, then prompt 1's, ...

    ``response_ids[i]`` ends with the stop token that finished it (any id of ``stop_token_ids``,
    EOS or a template stop word, is kept as the last id) and is cut there; ``finished[i]`` is
    False when it ran to ``max_new_tokens`` instead. ``logprobs[i][t]`` is the log-probability
    of ``response_ids[i][t]`` under softmax(logits / temperature) of the model (before top-k /
    top-p filtering; temperature 1 when temperature is 0), for logging and checks.
    """

    prompt_index: list[int]
    response_ids: list[list[int]]
    finished: list[bool]
    logprobs: list[list[float]] = attrs.field(factory=list)
    # MoE routing replay, when asked: routes[i] (len(response_ids[i]), moe layers, top_k)
    # int16, the experts each response token was routed to (-1: the last token, never fed)
    routes: list = attrs.field(factory=list)
    # decode steps run when ``interrupt`` stopped the call (rows neither finished nor full were
    # cut there and may be continued); None when it ran to the end
    interrupted_at: int | None = None


class Sampler:
    """Batched sampler over a transformers causal LM (read in place, never copied)."""

    def __init__(self, model: Any, stop_token_ids: Sequence[int | Sequence[int]],
                 pad_token_id: int, path: str = "auto"):
        """``stop_token_ids``: ids that end a sample, or id sequences that end it once all of
        them were generated in a row (a stop word of several tokens). ``path``: "fast" (own
        forward, Llama family only), "hf" (the model's forward) or "auto" (fast where
        supported); ``self.path`` is the one chosen, ``self.path_reason`` why not fast."""
        self.model = model
        stops = [tuple(int(t) for t in s) if isinstance(s, (list, tuple)) else (int(s),)
                 for s in stop_token_ids]
        self.stop_token_ids = [s[0] for s in stops if len(s) == 1]
        self.stop_sequences = [s for s in stops if len(s) > 1]
        self.pad_token_id = int(pad_token_id)
        ok, self.path_reason = fast_path_supported(model)
        if path not in ("auto", "fast", "hf"):
            raise ValueError(f"Sampler: path must be 'auto', 'fast' or 'hf', got {path!r}")
        if path == "fast" and not ok:
            raise ValueError(f"Sampler: fast path unsupported for this model: {self.path_reason}")
        self.path = "hf" if path == "hf" or not ok else "fast"

    @torch.inference_mode()
    def generate(self, prompts: Sequence[Sequence[int]], n: int, max_new_tokens: int,
                 temperature: float = 1.0, top_p: float = 1.0, top_k: int = -1,
                 generator: torch.Generator | None = None, min_p: float = 0.0,
                 seeds: Sequence[int] | None = None, record_routes: bool = False,
                 uniforms: Tensor | None = None, interrupt: Any = None) -> SampleOutput:
        """n samples for each prompt (lists of token ids, any lengths), at most max_new_tokens each.

        temperature 0 (or top_k 1) is greedy decoding. ``generator`` seeds the sampling (one
        uniform per row and step, drawn on the generator's device); same generator state, same
        model, same arguments -> same output. ``seeds`` (one int per prompt) instead draws each
        prompt's uniforms from its own seed, so a prompt's samples do not depend on the other
        prompts of the batch (nor on how a run splits prompts over ranks). ``record_routes``
        fills ``routes`` (an MoE model's expert choices, ``r1zero.engines.routing``).
        ``uniforms`` (len(prompts) * n, >= max_new_tokens): the draws themselves (a partial
        rollout continues a row with the rest of its row of ``prompt_uniforms``).

        ``interrupt``: called after each decode step; when it returns True the call stops there
        and ``out.interrupted_at`` says after how many tokens (``trainer.async_rollout``'s
        partial rollout then syncs weights and continues the unfinished rows).
        """
        _check_args(prompts, n, max_new_tokens, temperature, top_p)
        if seeds is not None and len(seeds) != len(prompts):
            raise ValueError(f"Sampler.generate: {len(seeds)} seeds for {len(prompts)} prompts")
        u, b = len(prompts), len(prompts) * n
        out = SampleOutput(prompt_index=[i for i in range(u) for _ in range(n)],
                           response_ids=[[] for _ in range(b)], finished=[False] * b,
                           logprobs=[[] for _ in range(b)])
        if max_new_tokens == 0:
            return out
        device = self.model.get_input_embeddings().weight.device
        ids, mask, pos = _left_pad(prompts, self.pad_token_id, device)
        was_training = self.model.training
        self.model.eval()  # no dropout while sampling, even from the actor under training
        recorder = RouteRecorder(self.model) if record_routes else None
        if recorder is not None and not recorder.routers:
            raise ValueError("Sampler.generate: record_routes on a model with no MoE top-k router")
        try:
            with recorder or contextlib.nullcontext():
                stepper = (_FastStepper if self.path == "fast" else _HFStepper)(
                    self.model, ids.shape[1] + max_new_tokens)
                logits = stepper.prefill(ids, mask, pos, n)
                if recorder is not None:
                    recorder.take()             # the prompt's routes: the actor routes those
                tokens, lps, lengths, routes = _decode_loop(
                    stepper, logits, pos[:, -1].repeat_interleave(n) + 1,
                    (self._stop_tensor(device), [torch.tensor(s, device=device)
                                                  for s in self.stop_sequences]), max_new_tokens,
                    (temperature, top_k, top_p, min_p), generator,
                    uniforms.to(device) if uniforms is not None else
                    prompt_uniforms(seeds, n, max_new_tokens, device) if seeds is not None
                    else None, recorder, interrupt)
        finally:
            self.model.train(was_training)
        cut = max_new_tokens
        if bool((lengths < 0).any()) and int(-lengths.min()) < max_new_tokens:
            cut = out.interrupted_at = int(-lengths.min())
        for i, (row, lp, length) in enumerate(zip(tokens.tolist(), lps.tolist(), lengths.tolist())):
            keep = length if length > 0 else min(-length, cut)
            out.response_ids[i], out.logprobs[i] = row[:keep], lp[:keep]
            out.finished[i] = length > 0
        if routes is not None:
            out.routes = [routes[i, :abs(int(k))].cpu() for i, k in enumerate(lengths.tolist())]
        return out

    def _stop_tensor(self, device: torch.device) -> Tensor:
        return torch.tensor(self.stop_token_ids or [-1], dtype=torch.long, device=device)


def _check_args(prompts, n, max_new_tokens, temperature, top_p) -> None:
    empty = [i for i, p in enumerate(prompts) if len(p) == 0]
    if not prompts or empty:
        raise ValueError(f"Sampler.generate: prompts must be non-empty token lists; empty: {empty}")
    if n < 1 or max_new_tokens < 0:
        raise ValueError(f"Sampler.generate: need n >= 1 and max_new_tokens >= 0, got n={n}, "
                         f"max_new_tokens={max_new_tokens}")
    if temperature < 0 or not 0 < top_p <= 1:
        raise ValueError(f"Sampler.generate: need temperature >= 0 and 0 < top_p <= 1, got "
                         f"temperature={temperature}, top_p={top_p}")


def _left_pad(prompts: Sequence[Sequence[int]], pad_id: int,
              device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """-> ids (U, P) left-padded, mask (U, P) bool, position ids (U, P) counting real tokens."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.bool)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):] = torch.as_tensor(list(p), dtype=torch.long)
        mask[i, width - len(p):] = True
    pos = (mask.long().cumsum(-1) - 1).clamp(min=0)
    return ids.to(device), mask.to(device), pos.to(device)


def _decode_loop(stepper, logits: Tensor, next_pos: Tensor, stops: tuple, max_new: int,
                 sampling: tuple[float, int, float, float], generator: torch.Generator | None,
                 uniforms: Tensor | None = None, recorder: RouteRecorder | None = None,
                 interrupt: Any = None):
    """Sample max_new steps -> tokens (B, max_new), logprobs (B, max_new), lengths (B,),
    routes (B, max_new, layers, k) int16 or None.

    ``uniforms`` (B, >= max_new): the draw of each row and step, else draws from ``generator``.
    ``interrupt()``, asked after each step that leaves rows running: True stops the loop there,
    and the rows still running get lengths[i] = -t (t: the steps run).
    ``recorder``: the experts each fed token was routed to (routes[i, t] of token t; -1 for a
    token never fed, such as the last).

    lengths[i] = +k when row i stopped at its k-th token, -max_new when it never stopped.
    ``stops``: (single stop ids (S,), [stop sequences (k,) of k >= 2 ids]).
    """
    stop, sequences = stops
    b, device = logits.shape[0], logits.device
    tokens = torch.zeros((b, max_new), dtype=torch.long, device=device)
    lps = torch.zeros((b, max_new), dtype=torch.float32, device=device)
    lengths = torch.full((b,), -max_new, dtype=torch.long, device=device)
    rows = torch.arange(b, device=device)       # sample id of each row still in the batch
    done = torch.zeros(b, dtype=torch.bool, device=device)
    routes = None if recorder is None else torch.full(
        (b, max_new, len(recorder.routers), recorder.routers[0].top_k), -1, dtype=torch.int16,
        device=device)
    for step in range(max_new):
        if not bool(torch.isfinite(logits).all()):      # diverged weights: say so, not IndexError
            from r1zero.host.errors import TrainingError

            raise TrainingError(f"rollout: the policy's logits hold nan/inf at generated token "
                                f"{step + 1}; the weights have diverged (check actor.lr)")
        u = None if uniforms is None else uniforms[rows, step].unsqueeze(1)
        tok, lp = sample_next(logits, *sampling, generator=generator, u=u)
        tokens[rows, step], lps[rows, step] = tok, lp
        newly = torch.isin(tok, stop)
        for seq in sequences:       # the last len(seq) tokens of each row are the stop word
            k = seq.numel()
            if step + 1 >= k:
                newly |= (tokens[rows, step + 1 - k:step + 1] == seq).all(-1)
        newly &= ~done
        lengths[rows[newly]] = step + 1
        done |= newly
        n_done = int(done.sum())
        if n_done == len(rows) or step + 1 == max_new:
            break
        if interrupt is not None and interrupt():
            lengths[rows[~done]] = -(step + 1)
            break
        if n_done >= max(1, COMPACT_SHARE * len(rows)):
            keep = (~done).nonzero().squeeze(1)
            rows, tok, next_pos, done = rows[keep], tok[keep], next_pos[keep], done[keep]
            stepper.select(keep)
        logits = stepper.decode(tok, next_pos + step)
        if routes is not None:
            routes[rows, step] = recorder.take().to(device).view(len(rows), *routes.shape[2:])
    return tokens, lps, lengths, routes


def prompt_uniforms(seeds: Sequence[int], n: int, max_new: int, device: torch.device) -> Tensor:
    """(len(seeds) * n, max_new) uniforms in [0, 1): prompt i's n rows from its own seed."""
    if len(seeds) * n == 0:
        return torch.zeros((0, max_new), device=device)
    rows = [torch.rand((n, max_new), generator=torch.Generator().manual_seed(int(s)))
            for s in seeds]
    return torch.cat(rows).to(device)


def sample_next(logits: Tensor, temperature: float = 1.0, top_k: int = -1, top_p: float = 1.0,
                min_p: float = 0.0, generator: torch.Generator | None = None,
                u: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """(B, V) logits -> (B,) sampled token ids and their (B,) log-probs.

    p = softmax(logits / temperature), restricted to the top_k most likely tokens (top_k <= 0:
    all), then to the smallest prefix of them (by falling probability) whose mass reaches top_p
    (a token is kept when the mass before it is < top_p), renormalised -- the order and rule of
    transformers' TopK/TopP warpers; then min_p keeps the tokens with p >= min_p · max p (the
    MinP warper). Temperature 0 or top_k 1 takes the argmax. Draws by
    inverse CDF: token = first v with cumsum(p)_v > u·sum(p), u ~ U[0, 1) from ``generator``
    (a float32 running sum: each token's mass is off by at most ~1e-7 absolute), or the given
    (B, 1) ``u``.
    The returned log-prob is log softmax(logits / temperature) of the token, unfiltered.
    """
    z = logits.float()
    if temperature not in (0.0, 1.0):
        z = z / temperature
    if temperature == 0 or top_k == 1:
        tok = z.argmax(-1)
        return tok, torch.log_softmax(z, dim=-1).gather(-1, tok[:, None]).squeeze(1)
    probs = torch.softmax(z, dim=-1)
    idx = None
    if 0 < top_k < z.shape[-1]:
        kept, idx = torch.topk(probs, top_k, dim=-1)
    elif top_p < 1.0:
        kept, idx = torch.sort(probs, dim=-1, descending=True)
    else:
        kept = probs
    if top_p < 1.0:  # transformers renormalises after top-k, before top-p
        kept = kept / kept.sum(-1, keepdim=True)
        kept = kept * ((kept.cumsum(-1) - kept) < top_p)
    if min_p > 0.0:  # relative to the most likely token, which every filter above keeps
        kept = kept * (kept >= min_p * kept.amax(-1, keepdim=True))
    cdf = kept.cumsum(-1)  # unnormalised after filtering: u is scaled by the total
    total = cdf[:, -1:]
    if u is None:
        g_device = generator.device if generator is not None else cdf.device
        u = torch.rand(cdf.shape[0], 1, generator=generator, device=g_device)
    u = u.to(cdf.device)
    # strictly below the total, so zero-probability tokens after the last kept one are never hit
    x = torch.minimum(u * total, torch.nextafter(total, torch.zeros_like(total)))
    choice = torch.searchsorted(cdf, x, right=True)
    tok = (choice if idx is None else idx.gather(-1, choice)).squeeze(1)
    return tok, probs.gather(-1, tok[:, None]).squeeze(1).log()


def fast_path_supported(model: Any) -> tuple[bool, str]:
    """Whether ``_FastStepper`` computes exactly this model's forward; if not, why."""
    cfg = getattr(model, "config", None)
    mtype = getattr(cfg, "model_type", None)
    if mtype not in FAST_MODEL_TYPES:
        return False, f"model_type {mtype!r} is not one of {', '.join(FAST_MODEL_TYPES)}"
    if getattr(cfg, "hidden_act", "silu") != "silu":
        return False, f"hidden_act {cfg.hidden_act!r} is not silu"
    rope = getattr(model.model.rotary_emb, "rope_type", "default")
    if rope in ("dynamic", "longrope"):
        return False, f"rope_type {rope!r} changes its frequencies with the sequence length"
    if any(t != "full_attention" for t in (getattr(cfg, "layer_types", None) or [])):
        return False, "sliding-window layers"
    return True, ""


def _rms(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    """RMSNorm as transformers computes it: normalised in float32, cast back, then scaled."""
    if x.dtype == torch.float32:
        return F.rms_norm(x, weight.shape, weight, eps)
    return weight * F.rms_norm(x.float(), weight.shape, None, eps).to(x.dtype)


def _linear(module: Any, x: Tensor) -> Tensor:
    """An nn.Linear's function without the module call's hook machinery (measurable per step)."""
    return F.linear(x, module.weight, module.bias)


def _rope(x: Tensor, cos: Tensor, sin_signed: Tensor) -> Tensor:
    """RoPE: x·cos + rotate_half(x)·sin, rotate_half(x) = (-x2, x1) on the head's two halves.

    With sin_signed = (-sin1, sin2) that is x·cos + roll(x, D/2)·sin_signed (fewer ops).
    """
    return torch.addcmul(x * cos, x.roll(x.shape[-1] // 2, dims=-1), sin_signed)


class _FastStepper:
    """Static-cache forward of a Llama-family model with a shared-prefix KV cache.

    The n samples of a prompt share its keys and values, so the cache holds them once:
    prompt part (U, KV, P, D) per layer, generated part (B, KV, N, D) per layer (U prompts,
    B = U·n rows, KV key/value heads of size D, P prompt width, N max new tokens). A decode
    step scores each query against both parts, softmaxes them jointly (exact attention), and
    reads the prompt part once per group instead of once per sample -- decode is bound by
    reading the cache. The G = H / KV query heads sharing a key/value head become G (or n·G)
    query rows of that head, so grouped-query attention needs no repeated keys.
    """

    def __init__(self, model: Any, max_len: int):
        self.m, self.cfg = model.model, model.config
        self.head = model.get_output_embeddings()
        attn = self.m.layers[0].self_attn
        self.n_heads = self.cfg.num_attention_heads
        self.d = attn.q_proj.out_features // self.n_heads
        self.n_kv = attn.k_proj.out_features // self.d
        self.eps, self.scale = self.cfg.rms_norm_eps, self.d ** -0.5
        w, rot = self.m.embed_tokens.weight, self.m.rotary_emb
        freqs = torch.arange(max_len, device=w.device, dtype=torch.float32)[:, None] * \
            rot.inv_freq.to(device=w.device, dtype=torch.float32)
        emb = torch.cat((freqs, freqs), dim=-1)
        scale = getattr(rot, "attention_scaling", 1.0)
        self.cos = (emb.cos() * scale).to(w.dtype)  # (max_len, D)
        sin = emb.sin() * scale
        half = sin.shape[-1] // 2
        self.sin = torch.cat((-sin[:, :half], sin[:, half:]), dim=-1).to(w.dtype)  # signed
        self.max_len, self.kp, self.vp, self.kg, self.vg = max_len, [], [], [], []

    def _rope_at(self, pos: Tensor) -> tuple[Tensor, Tensor]:
        """pos (...) -> cos, sin (..., 1, D), broadcasting over heads."""
        return self.cos[pos].unsqueeze(-2), self.sin[pos].unsqueeze(-2)

    def _qkv(self, layer, h: Tensor, cos: Tensor, sin: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """h (..., hidden) -> q (..., H, D), k, v (..., KV, D), RoPE applied to q and k."""
        a = layer.self_attn
        q = _linear(a.q_proj, h).unflatten(-1, (self.n_heads, self.d))
        k = _linear(a.k_proj, h).unflatten(-1, (self.n_kv, self.d))
        v = _linear(a.v_proj, h).unflatten(-1, (self.n_kv, self.d))
        if hasattr(a, "q_norm"):  # qwen3 normalises each head before RoPE
            q, k = a.q_norm(q), a.k_norm(k)
        return _rope(q, cos, sin), _rope(k, cos, sin), v

    def _mlp_out(self, layer, x: Tensor, attn_out: Tensor) -> Tensor:
        x = x + _linear(layer.self_attn.o_proj, attn_out)
        h = _rms(x, layer.post_attention_layernorm.weight, self.eps)
        mlp = layer.mlp
        act = F.silu(_linear(mlp.gate_proj, h)) * _linear(mlp.up_proj, h)
        return x + _linear(mlp.down_proj, act)

    def _logits(self, x: Tensor) -> Tensor:
        return _linear(self.head, _rms(x, self.m.norm.weight, self.eps)).float()

    def prefill(self, ids: Tensor, mask: Tensor, pos: Tensor, n: int) -> Tensor:
        """Prompts (U, P) once -> (U·n, V) last-token logits, each prompt's repeated n times."""
        u, p = ids.shape
        causal = torch.ones(p, p, dtype=torch.bool, device=ids.device).tril()
        # pad queries may see themselves so that no softmax row is empty (NaN)
        att = (causal & mask[:, None, :]) | torch.eye(p, dtype=torch.bool, device=ids.device)
        x, (cos, sin) = self.m.embed_tokens(ids), self._rope_at(pos)
        for layer in self.m.layers:
            q, k, v = self._qkv(layer, _rms(x, layer.input_layernorm.weight, self.eps), cos, sin)
            q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=att[:, None], enable_gqa=True)
            x = self._mlp_out(layer, x, o.transpose(1, 2).flatten(2))
            self.kp.append(k.contiguous())
            self.vp.append(v.contiguous())
            self.kg.append(k.new_empty((u * n, self.n_kv, self.max_len - p, self.d)))
            self.vg.append(torch.empty_like(self.kg[-1]))
        self.u, self.n, self.col = u, n, 0
        self.rows = torch.arange(u * n, device=ids.device)  # sample id of each batch row
        pad = torch.zeros((u, p), dtype=torch.float32, device=ids.device)
        pad.masked_fill_(~mask, -torch.inf)
        self.pad = pad.repeat_interleave(n, 0)[:, None, None, :]  # (B, 1, 1, P) additive mask
        return self._logits(x[:, -1]).repeat_interleave(n, 0)

    def _attend(self, i: int, q: Tensor) -> Tensor:
        """q (B', KV, G, D) of the rows still in the batch -> (B', KV, G, D) attention output.

        Scores, softmax and the weighted sum run in float32 whatever the model's dtype, as
        torch's fused attention kernels accumulate.
        """
        u, n, c, rows = self.u, self.n, self.col, self.rows
        dtype, q = q.dtype, q.float()
        kp, vp, kg, vg = (t.float() for t in (self.kp[i], self.vp[i], self.kg[i][:, :, :c + 1],
                                               self.vg[i][:, :, :c + 1]))
        b, kv, g, d = q.shape
        full = b == u * n
        qf = q if full else q.new_zeros((u * n, kv, g, d)).index_copy_(0, rows, q)
        # (U, n, KV, G, D) -> (U, KV, n·G, D): a group's queries against its prompt keys, once
        qg = qf.view(u, n, kv, g, d).transpose(1, 2).reshape(u, kv, n * g, d)
        sp = torch.matmul(qg, kp.transpose(-1, -2))  # (U, KV, n·G, P)
        sp = sp.view(u, kv, n, g, -1).transpose(1, 2).reshape(u * n, kv, g, -1)
        sp = sp if full else sp[rows]
        sg = torch.matmul(q, kg.transpose(-1, -2))  # (B', KV, G, c+1)
        probs = torch.softmax(torch.cat([sp * self.scale + self.pad, sg * self.scale], -1), -1)
        width = sp.shape[-1]
        out = torch.matmul(probs[..., width:], vg)
        pp = probs[..., :width]
        if not full:
            pp = pp.new_zeros((u * n, kv, g, width)).index_copy_(0, rows, pp)
        pp = pp.view(u, n, kv, g, width).transpose(1, 2).reshape(u, kv, n * g, width)
        op = torch.matmul(pp, vp).view(u, kv, n, g, d)
        op = op.transpose(1, 2).reshape(u * n, kv, g, d)
        return (out + (op if full else op[rows])).to(dtype)

    def decode(self, tok: Tensor, pos: Tensor) -> Tensor:
        """tok, pos (B',) -> (B', V) logits of the next token; writes generated column ``col``."""
        b, c = tok.shape[0], self.col
        x, (cos, sin) = self.m.embed_tokens(tok), self._rope_at(pos)
        for i, layer in enumerate(self.m.layers):
            q, k, v = self._qkv(layer, _rms(x, layer.input_layernorm.weight, self.eps), cos, sin)
            self.kg[i][:, :, c], self.vg[i][:, :, c] = k, v
            o = self._attend(i, q.view(b, self.n_kv, self.n_heads // self.n_kv, self.d))
            x = self._mlp_out(layer, x, o.reshape(b, self.n_heads * self.d))
        self.col += 1
        return self._logits(x)

    def select(self, keep: Tensor) -> None:
        """Keep only the batch rows ``keep`` (B',) in the generated cache."""
        self.kg = [k[keep] for k in self.kg]
        self.vg = [v[keep] for v in self.vg]
        self.rows, self.pad = self.rows[keep], self.pad[keep]


class _HFStepper:
    """The model's own forward with a ``DynamicCache``: any causal LM, more overhead per step."""

    def __init__(self, model: Any, max_len: int):
        from transformers import DynamicCache

        self.model, self.cache = model, DynamicCache(config=model.config)
        self.mask: Tensor | None = None
        # transformers 5 renamed ``past_key_values`` to ``cache``; accept either
        params = inspect.signature(model.forward).parameters
        self.cache_kw = "cache" if "cache" in params else "past_key_values"

    def _forward(self, ids: Tensor, pos: Tensor) -> Tensor:
        out = self.model(input_ids=ids, attention_mask=self.mask.long(), position_ids=pos,
                         use_cache=True, logits_to_keep=1, **{self.cache_kw: self.cache})
        return out.logits[:, -1].float()

    def prefill(self, ids: Tensor, mask: Tensor, pos: Tensor, n: int) -> Tensor:
        self.mask = mask
        logits = self._forward(ids, pos)
        self.cache.batch_repeat_interleave(n)
        self.mask = mask.repeat_interleave(n, 0)
        return logits.repeat_interleave(n, 0)

    def decode(self, tok: Tensor, pos: Tensor) -> Tensor:
        self.mask = torch.cat([self.mask, self.mask.new_ones((tok.shape[0], 1))], dim=1)
        return self._forward(tok[:, None], pos[:, None])

    def select(self, keep: Tensor) -> None:
        self.cache.batch_select_indices(keep)
        self.mask = self.mask[keep]
