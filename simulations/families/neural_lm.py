"""(e) A small neural autoregressive LM trained recursively on a known order-k Markov language.

The language is an order-2 Markov chain over 16 tokens whose transitions we fix and know, so every
quantity "under the truth" is exact. The model is a Bengio-style neural LM: it embeds the last k
tokens, passes them through one tanh layer and predicts the next token. Its context is exactly the
source's order, so the model is itself an order-k chain and the KL to the truth is computed exactly
over the Markov states rather than estimated from samples.

All runs of one call (cells x seeds) are trained at once as ONE batched model: every weight tensor
carries a leading run axis and the forward pass is a batched matmul, so run r only ever touches
slice r of every tensor. Adam is elementwise, so the optimiser keeps runs independent too.

Regimes (simulations/regimes.py) and diversity controls (simulations/diversity.py) are the lab's
shared definitions; this file turns a run's DataPlan into padded per-run training sets, which the VAE
family (vae_digits.py) reuses. Every control except dedup applies to the next-token rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from simulations.cells import Cell
from simulations.diversity import CONTROLS, apply_control, check_control
from simulations.metrics import distinct_n
from simulations.regimes import data_plan

# ----------------------------------------------------------------------------------------------
# The language: a fixed order-k Markov source with known transitions

VOCAB = 16
ORDER = 2  # tokens of context, for the source and for the model
STATES = VOCAB**ORDER
SEQ_LEN = 32  # tokens per sequence; a "sample" of this family is one sequence
BURN_IN = 16  # tokens generated and dropped before each sequence so it starts near stationarity
ZIPF = 1.2  # each context's next-token law is Zipf(1.2) over its own random ranking of tokens
TAIL_RANKS = 4  # the 4 least likely next tokens of every context are its "rare transitions"
KEEP_FRACTION = 0.1  # a rare transition is still produced if the model gives it >= 10 % of its true probability
LANGUAGE_SEED = 1234  # the language is one fixed object, independent of the simulation seed


@dataclass(frozen=True)
class MarkovLanguage:
    transitions: Tensor  # [STATES, VOCAB] float64, row s = P(next | context s)
    stationary: Tensor  # [STATES] float64, stationary law of the context
    rare: Tensor  # [STATES, VOCAB] bool, the TAIL_RANKS least likely next tokens of each context


def language(device: torch.device) -> MarkovLanguage:
    g = torch.Generator().manual_seed(LANGUAGE_SEED)
    zipf = torch.arange(1, VOCAB + 1, dtype=torch.float64) ** -ZIPF
    zipf /= zipf.sum()
    ranking = torch.stack([torch.randperm(VOCAB, generator=g) for _ in range(STATES)])  # token -> rank
    transitions = zipf[ranking]
    rare = ranking >= VOCAB - TAIL_RANKS
    # Context s = (a, b) moves to (b, c) with probability P(c | a, b); all entries are positive, so
    # the chain is irreducible and aperiodic and power iteration converges.
    stationary = torch.full((STATES,), 1.0 / STATES, dtype=torch.float64)
    for _ in range(500):
        stationary = _advance(stationary[None], transitions[None])[0]
    return MarkovLanguage(transitions.to(device), stationary.to(device), rare.to(device))


def _advance(context_law: Tensor, transitions: Tensor) -> Tensor:
    """One step of the context chain: [R, STATES] law and [R, STATES, VOCAB] transitions -> [R, STATES]."""
    joint = context_law[:, :, None] * transitions  # P(a, b, c)
    return joint.view(-1, VOCAB, VOCAB**(ORDER - 1), VOCAB).sum(1).reshape(-1, STATES)  # P(b, c)


def sample_sequences(table: Tensor, n: int, generator: torch.Generator) -> Tensor:
    """n sequences per run from per-run order-k chains. table [R, STATES, VOCAB] -> tokens [R, n, SEQ_LEN]."""
    runs = table.shape[0]
    rows = torch.arange(runs, device=table.device)[:, None]
    state = torch.randint(STATES, (runs, n), generator=generator, device=table.device)
    tokens = []
    for _ in range(BURN_IN + SEQ_LEN):
        probs = table[rows, state].reshape(runs * n, VOCAB)
        token = torch.multinomial(probs, 1, generator=generator).view(runs, n)
        tokens.append(token)
        state = (state * VOCAB + token) % STATES
    return torch.stack(tokens[BURN_IN:], dim=2)


# ----------------------------------------------------------------------------------------------
# The model: a batched neural LM over the last ORDER tokens

EMBED = 16
HIDDEN = 64


def init_params(runs: int, generator: torch.Generator, device: torch.device) -> dict[str, Tensor]:
    def uniform(*shape: int, fan_in: int) -> Tensor:
        bound = 1.0 / math.sqrt(fan_in)  # the nn.Linear default, per run
        return (torch.rand(runs, *shape, generator=generator, device=device) * 2 - 1) * bound

    return {
        "embed": torch.randn(runs, VOCAB, EMBED, generator=generator, device=device),
        "w1": uniform(ORDER * EMBED, HIDDEN, fan_in=ORDER * EMBED),
        "b1": uniform(HIDDEN, fan_in=ORDER * EMBED),
        "w2": uniform(HIDDEN, VOCAB, fan_in=HIDDEN),
        "b2": uniform(VOCAB, fan_in=HIDDEN),
    }


def forward(params: dict[str, Tensor], contexts: Tensor) -> Tensor:
    """contexts [R, B, ORDER] token ids -> next-token logits [R, B, VOCAB]."""
    runs, batch, _ = contexts.shape
    rows = torch.arange(runs, device=contexts.device)[:, None, None]
    x = params["embed"][rows, contexts].reshape(runs, batch, ORDER * EMBED)
    h = torch.tanh(torch.baddbmm(params["b1"][:, None], x, params["w1"]))
    return torch.baddbmm(params["b2"][:, None], h, params["w2"])


def all_contexts(device: torch.device) -> Tensor:
    """[STATES, ORDER] token ids, row s spelling context s in base VOCAB (most significant first)."""
    s = torch.arange(STATES, device=device)
    return torch.stack([(s // VOCAB**(ORDER - 1 - j)) % VOCAB for j in range(ORDER)], dim=1)


def conditional_table(params: dict[str, Tensor]) -> Tensor:
    """The model as an order-k chain: [R, STATES, VOCAB] float64 next-token probabilities."""
    runs = params["embed"].shape[0]
    contexts = all_contexts(params["embed"].device).expand(runs, STATES, ORDER)
    with torch.no_grad():
        return torch.softmax(forward(params, contexts).double(), dim=-1)


# ----------------------------------------------------------------------------------------------
# Training: fixed steps of minibatch Adam, all runs at once

STEPS = 200
BATCH = 256  # (context, next token) windows per run per step
LR = 1.5e-2
WINDOWS = SEQ_LEN - ORDER  # predicted tokens per sequence


def fit(params: dict[str, Tensor], sequences: Tensor, counts: Tensor, draws: Tensor) -> dict[str, Tensor]:
    """Train every run on its own sequences. sequences [R, N, SEQ_LEN] (rows >= counts[r] are padding),
    draws [STEPS', R, BATCH] uniforms that pick each step's windows. The randomness is passed in so
    that a run's training depends only on its own slices (tests train one run alone and compare).
    Training cost is fixed (steps x batch), not proportional to the data size."""
    params = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    optimizer = torch.optim.Adam(params.values(), lr=LR)
    rows = torch.arange(sequences.shape[0], device=sequences.device)[:, None]
    offsets = torch.arange(ORDER + 1, device=sequences.device)
    for u in draws:
        windows_held = counts[:, None] * WINDOWS
        flat = torch.minimum((u * windows_held).long(), windows_held - 1)
        chosen = sequences[rows, flat // WINDOWS]  # [R, B, SEQ_LEN]
        windows = chosen.gather(2, (flat % WINDOWS)[:, :, None] + offsets)  # [R, B, ORDER + 1]
        logits = forward(params, windows[:, :, :ORDER])
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), windows[:, :, ORDER].reshape(-1), reduction="none")
        # Sum of per-run means: each run's gradient is exactly the gradient of its own mean loss.
        optimizer.zero_grad(set_to_none=True)
        loss.view(len(counts), -1).mean(1).sum().backward()
        optimizer.step()
    return {k: v.detach() for k, v in params.items()}


# ----------------------------------------------------------------------------------------------
# Diversity controls (simulations/diversity.py), applied to the synthetic samples only

UNSUPPORTED_CONTROLS = ("dedup",)  # capping copies of a type has no meaning for whole sequences


def check_cells(cells: list[Cell], supported: tuple[str, ...]) -> None:
    """ValueError for a cell this family cannot run: bad regime / ratio / control value, or a control
    outside `supported`."""
    for cell in cells:
        data_plan(cell)
        check_control(cell.diversity_control, cell.diversity)
        if cell.diversity_control not in supported:
            raise ValueError(
                f"diversity control {cell.diversity_control!r} is not supported by the {cell.family} family; "
                f"use one of {', '.join(supported)}"
            )


def run_controls(cells: list[Cell], seeds: int, device: torch.device) -> tuple[list[str], Tensor]:
    """Per-run control names and values (run r = cell r // seeds)."""
    controls = [c.diversity_control for c in cells for _ in range(seeds)]
    values = torch.tensor([c.diversity for c in cells], dtype=torch.float64, device=device).repeat_interleave(seeds)
    return controls, values


# ----------------------------------------------------------------------------------------------
# Regimes: which data generation g >= 2 trains on, by simulations/regimes.py's per-run DataPlan
# (shared with vae_digits.py)


@dataclass
class Pool:
    items: Tensor  # [R, capacity, *item]; row i of run r is data only when i < counts[r]
    counts: Tensor  # [R] long


def pack(parts: list[Tensor]) -> Pool:
    """Per-run item tensors of different lengths -> one padded batch."""
    counts = torch.tensor([len(p) for p in parts], device=parts[0].device)
    items = parts[0].new_zeros((len(parts), int(counts.max()), *parts[0].shape[1:]))
    for r, p in enumerate(parts):
        items[r, : len(p)] = p
    return Pool(items, counts)


class RecursiveData:
    """The training set of each run, generation by generation, following its cell's DataPlan:
    new data = `synthetic` samples of the previous model + `fresh_real` real ones; the pool is the new
    data (or everything so far with keep_history); fixed_real adds the generation-1 real data back;
    `subsample` > 0 trains on that many draws (with replacement) from the pool."""

    def __init__(self, runs: list[Cell], first_real: Tensor, generator: torch.Generator):
        self.plans = [data_plan(c) for c in runs]
        self.generator = generator
        self.first_real = [first_real[r, : plan.first_real] for r, plan in enumerate(self.plans)]
        self.pool = list(self.first_real)

    def first(self) -> Pool:
        return pack(self.first_real)

    def next(self, draw_real: Callable[[int], Tensor], draw_synthetic: Callable[[int], Tensor]) -> Pool:
        """draw_*(n) -> [R, n, *item] samples for every run; each run takes the counts its plan names."""
        real = self._draw(draw_real, max(p.fresh_real for p in self.plans))
        synthetic = self._draw(draw_synthetic, max(p.synthetic for p in self.plans))
        parts = []
        for r, plan in enumerate(self.plans):
            new = torch.cat([synthetic[r, : plan.synthetic], real[r, : plan.fresh_real]])
            self.pool[r] = torch.cat([self.pool[r], new]) if plan.keep_history else new
            train = torch.cat([self.pool[r], self.first_real[r]]) if plan.reuse_real_pool else self.pool[r]
            if plan.subsample:
                train = train[torch.randint(len(train), (plan.subsample,), generator=self.generator, device=train.device)]
            parts.append(train)
        return pack(parts)

    def _draw(self, draw: Callable[[int], Tensor], n: int) -> Tensor:
        if n > 0:
            return draw(n)
        empty = self.first_real[0][:0]
        return empty.expand(len(self.plans), *empty.shape)


# ----------------------------------------------------------------------------------------------
# Metrics: exact where the truth allows it

EVAL_SEQUENCES = 32  # sequences sampled per run for distinct-2: 32 x 32 = 1024 tokens, equal for all
TEST_SEQUENCES = 64  # held-out real sequences per run for test_loss


def metrics(table: Tensor, source: MarkovLanguage, test: Tensor, text: Tensor) -> dict[str, Tensor]:
    """Metrics of R order-k chains (fitted models, or the truth itself for entry 0), each [R] float64.

    kl: exact per-token KL(truth || model) = sum_s pi(s) KL(P(.|s) || Q(.|s)), pi the true stationary
        law of the context, computed over all STATES contexts (no sampling).
    test_loss: mean NLL (nats / predicted token) of held-out real sequences `test` [R, n, SEQ_LEN].
    entropy: the model's next-token entropy averaged over true contexts, sum_s pi(s) H(Q(.|s))
        (the truth's entropy rate for entry 0).
    distinct_2: distinct bigrams / total bigrams in `text` [R, n, SEQ_LEN], sampled from the model
        without the diversity control, EVAL_SEQUENCES x SEQ_LEN tokens for every run and the truth.
    tail_mass_kept: the rare transitions are, for every context s, its TAIL_RANKS least likely next
        tokens under the truth. A rare transition (s, x) is still produced when Q(x|s) >=
        KEEP_FRACTION * P(x|s). tail_mass_kept = true joint mass pi(s) P(x|s) of the rare transitions
        still produced / true joint mass of all rare transitions (1 for the truth).
    """
    truth, pi = source.transitions[None], source.stationary[None]
    log_q = table.clamp_min(1e-300).log()
    kl = (pi * (truth * (truth.log() - log_q)).sum(-1)).sum(-1)
    entropy = (pi * -(table * log_q).sum(-1)).sum(-1)

    rows = torch.arange(len(table), device=table.device)[:, None, None]
    contexts = sum(test[:, :, j : SEQ_LEN - ORDER + j] * VOCAB**(ORDER - 1 - j) for j in range(ORDER))
    test_loss = -log_q[rows, contexts, test[:, :, ORDER:]].mean((1, 2))

    distinct_2 = distinct_n(text, 2, VOCAB)
    joint = (pi[..., None] * truth * source.rare)[0]
    kept = (table >= KEEP_FRACTION * truth) & source.rare
    tail_mass_kept = (kept * joint).sum((1, 2)) / joint.sum()
    return {"kl": kl, "test_loss": test_loss, "entropy": entropy, "distinct_2": distinct_2, "tail_mass_kept": tail_mass_kept}


# ----------------------------------------------------------------------------------------------
# The recursive-training loop


@contextmanager
def one_cpu_thread(device: torch.device) -> Iterator[None]:
    """Run torch on one intra-op thread while simulating on CPU. These ops are too small to gain from
    splitting, and on a shared machine every op of a 2-thread pool waits for a busy core: measured 6x
    slower on 2 shared cores. Runs are parallel through batching (and a process pool for sweeps)."""
    if torch.device(device).type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def simulate(cells: list[Cell], generations: int, seeds: int, device: torch.device, seed: int) -> list[dict[str, Tensor]]:
    """Recursive training of a neural LM on its own samples, every (cell, seed) run batched together.

    real_amount counts sequences of SEQ_LEN tokens. Returns, per cell, metric -> float64 CPU tensor
    [seeds, generations + 1]: entry 0 is the truth, entry g the model fitted at generation g
    (generation 1 on real data only). See `metrics` for the definitions and `RecursiveData` for the
    regimes; the diversity control shapes the synthetic samples only, never the metrics' samples.
    """
    check_cells(cells, tuple(c for c in CONTROLS if c not in UNSUPPORTED_CONTROLS))
    with one_cpu_thread(device):
        return _simulate(cells, generations, seeds, torch.device(device), seed)


def _simulate(cells: list[Cell], generations: int, seeds: int, device: torch.device, seed: int) -> list[dict[str, Tensor]]:
    generator = torch.Generator(device=device).manual_seed(seed)
    source = language(device)
    runs = [cell for cell in cells for _ in range(seeds)]
    controls, values = run_controls(cells, seeds, device)
    truth = source.transitions.expand(len(runs), STATES, VOCAB)

    def draw_real(n: int) -> Tensor:
        return sample_sequences(truth.float(), n, generator)

    test = draw_real(TEST_SEQUENCES)
    history = [metrics(truth, source, test, draw_real(EVAL_SEQUENCES))]
    data = RecursiveData(runs, draw_real(max(c.real_amount for c in cells)), generator)
    pool = data.first()
    for generation in range(1, generations + 1):
        if generation > 1:
            sampling_law = apply_control(table, controls, values, source.stationary).float()
            pool = data.next(draw_real, lambda n: sample_sequences(sampling_law, n, generator))
        params = init_params(len(runs), generator, device)
        draws = torch.rand(STEPS, len(runs), BATCH, generator=generator, device=device)
        table = conditional_table(fit(params, pool.items, pool.counts, draws))
        history.append(metrics(table, source, test, sample_sequences(table.float(), EVAL_SEQUENCES, generator)))

    stacked = {name: torch.stack([h[name] for h in history], dim=1).double().cpu() for name in history[0]}
    return [{name: v[i * seeds : (i + 1) * seeds] for name, v in stacked.items()} for i in range(len(cells))]
