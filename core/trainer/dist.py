"""Data parallelism for the GRPO trainer: the few collectives where ranks must agree.

Every rank is a whole integrated worker (rollout, reference and actor on one device, as
MindSpeed-RL's ``use_integrated_worker``). Each step all ranks draw the same global batch of
prompts; the rollout instances (``rollout.tensor_parallel`` x ``pipeline_parallel`` ranks each,
generating on their first rank) generate and score contiguous slices of it, gathered on every
rank, and each rank keeps its share (``shard_prompts``); advantages stay local, since a GRPO
group never spans ranks. The optimizer step equals the single-process one:

    loss = sum_k share_k * loss_k,   share_k = tokens_k / tokens(global mini-batch)

so with the token total summed over ranks (``sum_int``) and the gradients summed over ranks
before clipping, every rank holds the single-process gradient and takes the same step. The
sharded engine (``engines.fsdp``) sums gradients in its own reduce-scatter; only
``actor.engine: torch`` at several ranks (whole replicas) uses ``all_reduce_grads``.
``GRPOTrainer(dist=None)`` is the single-process trainer.
"""

from __future__ import annotations

import datetime
import logging
from typing import Any, Callable, Iterable, Sequence

import torch
import torch.distributed as tdist
from r1zero.config.layout import rollout_instances


log = logging.getLogger(__name__)


def instance_slice(n: int, k: int, count: int) -> tuple[int, int]:
    """[lo, hi) of instance ``k``'s rows among ``n``, split into ``count`` contiguous near-equal
    slices: n 5, count 2 -> (0, 2), (2, 5)."""
    return k * n // count, (k + 1) * n // count


def shard_prompts(ids: Sequence[int], mini: int, rank: int, world: int) -> list[int]:
    """Rank ``rank``'s prompts of a step: the rank-th contiguous piece of each mini-batch.

    ids = [0..7], mini 4, world 2 -> rank 0 [0, 1, 4, 5], rank 1 [2, 3, 6, 7]. Rank r's k-th
    local mini-batch is then its piece of the k-th global one, so the ranks' pieces together
    are exactly the mini-batch one process would take (mini == global: one contiguous share).
    """
    per = mini // world
    out: list[int] = []
    for start in range(0, len(ids), mini):
        out.extend(ids[start + rank * per:start + (rank + 1) * per])
    return out


def unshard_prompts(parts: Sequence[Sequence[Any]], mini: int) -> list[Any]:
    """Inverse of ``shard_prompts``: the ranks' pieces (rank order) -> the global order."""
    per = mini // len(parts)
    out: list[Any] = []
    for start in range(0, len(parts[0]), per):
        for part in parts:
            out.extend(part[start:start + per])
    return out


def merge_records(parts: Sequence[dict]) -> dict:
    """Per-rank sample records -> one, in rank order: lists concatenate, dicts of lists
    concatenate key by key, dicts of numbers (counts) add up."""
    out: dict[str, Any] = {}
    for key, first in parts[0].items():
        if isinstance(first, dict):
            keys = list(dict.fromkeys(k for p in parts for k in p[key]))
            if all(isinstance(v, (list, tuple)) for p in parts for v in p[key].values()):
                out[key] = {k: [x for p in parts for x in p[key].get(k, [])] for k in keys}
            else:
                out[key] = {k: sum(p[key].get(k, 0) for p in parts) for k in keys}
        else:
            out[key] = [x for p in parts for x in p[key]]
    return out


class NullWriter:
    """The metrics writer of ranks > 0: rank 0 alone writes metrics, plots and checkpoints."""
    path = None

    def write(self, step: int, metrics: Any) -> None:
        pass

    def close(self) -> None:
        pass


class DataParallel:
    """This process's rank in a ``torch.distributed`` group, and the trainer's collectives.

    With tensor parallel ``tp`` > 1 the ranks form a (dp, tp) mesh: the ``tp`` ranks of one
    group hold the same data (``dp_rank``, ``dp_world``), and data sums run over the dp group.
    The megatron engine lays ranks out itself (tp x pp model-parallel groups): ``adopt`` takes
    its layout, and one rank of each model-parallel group generates for the group.
    """

    def __init__(self, rank: int, world: int, device: str = "cpu", tp: int = 1):
        self.rank, self.world, self.device = rank, world, torch.device(device)
        self.tp, self.dp_rank, self.dp_world = tp, rank // tp, world // tp
        self.mini: int | None = None        # prompts per mini-batch of the last ``shard``
        self.mesh: Any = None
        self.dp_group: Any = None
        self.leaders = list(range(0, world, tp))   # one rank per data-parallel rank
        self.mp_group: Any = None            # ranks that share one replica's data (megatron)
        self.mp_src = rank
        self.instance_size = 1               # ranks per rollout instance (lay_out_instances)

    def adopt(self, layout: dict[str, Any]) -> None:
        """Take a model-parallel engine's data layout (``MegatronTrainEngine.data_parallel``):
        its data-parallel rank, size and group, and its model-parallel group, whose ranks
        train one replica on the same samples (rank ``mp_src`` generates them)."""
        self.dp_rank, self.dp_world = layout["dp_rank"], layout["dp_world"]
        self.dp_group, self.mp_group, self.mp_src = (layout["dp_group"], layout["mp_group"],
                                                     layout["mp_src"])
        self.leaders = sorted(set(self.gather(self.mp_src)))

    def lay_out_instances(self, tp: int, pp: int) -> None:
        """Rollout instances of tp x pp ranks (rollout.tensor_parallel, pipeline_parallel):
        world / (tp x pp) of them (``config.layout.rollout_instances``, which refuses an uneven
        split), instance k generating on its first rank, k x tp x pp."""
        rollout_instances(self.world, tp, pp)
        self.instance_size = tp * pp

    @property
    def generates(self) -> bool:
        """Whether this rank is a rollout instance's generating rank (the others hold no
        rollout model)."""
        return self.rank % self.instance_size == 0

    def instance_samples(self, rows: Sequence[Any], make: Callable[[list], Any],
                         mini: int) -> Any:
        """The rollout instances generate the step's ``rows`` (every rank holds the same list),
        instance k its k-th contiguous slice (``make(slice)`` -> ``Samples``); the slices are
        gathered on every rank, and each keeps its data-parallel share (``shard`` of the row
        positions). Samples are seeded per (seed, step, prompt), so they do not depend on
        which instance drew them."""
        count, k = self.world // self.instance_size, self.rank // self.instance_size
        lo, hi = instance_slice(len(rows), k, count)
        mine = make(list(rows[lo:hi])) if self.generates and hi > lo else None
        parts: list[Any] = [None] * self.world
        tdist.all_gather_object(parts, mine)
        full = None
        for part in parts:
            if part is None:
                continue
            if full is None:
                full = part
            else:
                full.extend(part)
        return full.keep(self.shard(list(range(len(rows))), mini))


    @classmethod
    def init(cls, rank: int, world: int, collective: str, master: tuple[str, int],
             device: str = "cpu", timeout_s: float = 1800, tp: int = 1) -> "DataParallel":
        """Join the group by TCP rendezvous at ``master`` = (rank 0's node IP, a free port)
        and lay the ranks out as a (dp, tp) device mesh."""
        from r1zero.engines.fsdp import make_mesh

        tdist.init_process_group(collective, init_method=f"tcp://{master[0]}:{master[1]}",
                                 rank=rank, world_size=world,
                                 timeout=datetime.timedelta(seconds=timeout_s))
        dp = cls(rank, world, device, tp)
        dp.mesh = make_mesh(torch.device(device).type, tp)
        dp.dp_group = dp.mesh["dp"].get_group()
        return dp

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, ids: Sequence[int], mini: int) -> list[int]:
        self.mini = mini
        return shard_prompts(ids, mini, self.dp_rank, self.dp_world)

    def null_writer(self) -> NullWriter:
        return NullWriter()

    def sum_int(self, value: int) -> int:
        t = torch.tensor([value], dtype=torch.int64, device=self.device)
        tdist.all_reduce(t, group=self.dp_group)
        return int(t.item())

    def max_int(self, value: int) -> int:
        """The largest ``value`` over all ranks."""
        t = torch.tensor([value], dtype=torch.int64, device=self.device)
        tdist.all_reduce(t, op=tdist.ReduceOp.MAX)
        return int(t.item())

    def sum_stats(self, stats: dict[str, float]) -> dict[str, float]:
        """Add up per-rank statistics that are already weighted by their global share."""
        keys = sorted(stats)
        t = torch.tensor([stats[k] for k in keys], dtype=torch.float64, device=self.device)
        tdist.all_reduce(t, group=self.dp_group)
        return dict(zip(keys, t.tolist()))

    def all_reduce_grads(self, params: Iterable[torch.nn.Parameter],
                         bucket_numel: int = 1 << 24) -> None:
        """Sum gradients over ranks in float32 buckets. A parameter with no gradient on any rank
        keeps ``grad=None`` (as it would in one process); one with a gradient somewhere gets the
        sum, zeros standing in for the ranks where it had none."""
        params = [p for p in params if p.requires_grad]
        if not params:
            return
        seen = torch.tensor([float(p.grad is not None) for p in params], device=self.device)
        tdist.all_reduce(seen)
        live = [p for p, s in zip(params, seen.tolist()) if s > 0]
        for p in live:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        bucket: list[torch.nn.Parameter] = []
        size = 0
        for p in live:
            bucket.append(p)
            size += p.numel()
            if size >= bucket_numel:
                _reduce_bucket(bucket)
                bucket, size = [], 0
        if bucket:
            _reduce_bucket(bucket)

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        box = [obj]
        tdist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank."""
        out: list[Any] = [None] * self.world
        tdist.all_gather_object(out, obj)
        return out

    def merge_step(self, record: dict, timings: dict[str, float],
                   step_s: float) -> tuple[dict, dict[str, float], float]:
        """All dp ranks' samples of this step (rank order; ``ids`` back in the global order;
        one rank per tp or model-parallel group) and the slowest rank's timings."""
        every = self.gather((record, timings, step_s))
        parts = [every[r] for r in self.leaders]
        names = list(dict.fromkeys(k for _, t, _ in parts for k in t))
        slowest = {k: max(t.get(k, 0.0) for _, t, _ in every) for k in names}
        merged = merge_records([r for r, _, _ in parts])
        if "ids" in record and self.mini:
            merged["ids"] = unshard_prompts([r["ids"] for r, _, _ in parts], self.mini)
        return merged, slowest, max(s for _, _, s in every)

    def rank_rng(self, state: dict) -> dict:
        """This rank's RNG state from a checkpoint's ``rng_ranks`` (written by a run of the same
        world size); otherwise rank 0's state with a warning (sampling then differs)."""
        ranks = state.get("rng_ranks")
        if ranks is not None and len(ranks) == self.world:
            return ranks[self.rank]
        if self.rank:
            log.warning("checkpoint has RNG states for %s ranks, this run has %d: rank %d "
                        "keeps its own sampler seed", len(ranks) if ranks else 1, self.world,
                        self.rank)
            return {}
        return state["rng"]

    def check_same(self, what: str, value: Any) -> None:
        """Raise unless every rank holds the same ``value`` (e.g. the data and weights)."""
        values = self.gather(value)
        odd = [r for r, v in enumerate(values) if v != values[0]]
        if odd:
            raise RuntimeError(f"data-parallel ranks disagree on {what}: rank 0 has {values[0]!r}, "
                               f"rank(s) {odd} have {[values[r] for r in odd]!r}; every node "
                               "needs the same model, data and config")

    def close(self) -> None:
        if tdist.is_initialized():
            tdist.destroy_process_group()


def _reduce_bucket(bucket: list[torch.nn.Parameter]) -> None:
    flat = torch.cat([p.grad.reshape(-1).float() for p in bucket])
    tdist.all_reduce(flat)
    offset = 0
    for p in bucket:
        n = p.numel()
        p.grad.copy_(flat[offset:offset + n].view_as(p.grad))
        offset += n
