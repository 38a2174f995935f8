"""Family (b): an order-k Markov "language" over V tokens with known transitions, refit by counting.

Each of the V^k states (the last k tokens) has a Zipf(beta) distribution over the next token, on a
state-specific random order of the tokens, fixed by `truth_seed`. A data set is `real_amount` (or
plan) sequences of `seq_len` tokens, starting from the true stationary state distribution; the
model is the table of transition counts (states never visited fall back to uniform). The metrics
are the shared ones (simulations.metrics) with every per-state quantity weighted by the true
stationary state distribution; the tail is, per state, the rarest next tokens holding `tail_mass`
of its true mass; distinct-1/2 are read off `text_sequences` sequences sampled from the model.
Real sequences come from a `RealStream` (paired across cells). accumulate_subsample redraws
transitions (not whole sequences) from the pool.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from simulations.cells import Cell
from simulations.diversity import apply_control
from simulations.metrics import (
    batch_diversity,
    discrete_metrics,
    distinct_n,
    entropy,
    tail_types,
)
from simulations.regimes import plan_tensors
from simulations.sampling import (
    RealStream,
    draw_indices,
    resample_counts,
    sample_counts,
    stack_runs,
)

SUPPORTED_CONTROLS = ("temperature", "top_p", "top_k", "tail_resample", "matched")


@dataclass(frozen=True)
class Language:
    transitions: torch.Tensor  # [S, V]
    stationary: torch.Tensor  # [S]
    tail: torch.Tensor  # [S, V] bool

    @property
    def vocab(self) -> int:
        return self.transitions.shape[1]


@functools.cache  # deterministic in its arguments; every sweep batch and per-run caller reuses it
def language(vocab: int, order: int, beta: float, tail_mass: float, truth_seed: int, device: torch.device) -> Language:
    states = vocab**order
    gen = torch.Generator().manual_seed(truth_seed)
    zipf = torch.arange(1, vocab + 1, dtype=torch.float64) ** -beta
    orders = torch.stack([torch.randperm(vocab, generator=gen) for _ in range(states)])
    transitions = (zipf / zipf.sum())[orders.argsort(-1)]
    # Stationary distribution of the chain on states: s -> (s * V + v) mod V^k with probability P[s, v].
    chain = torch.zeros(states, states, dtype=torch.float64)
    nxt = (torch.arange(states).unsqueeze(-1) * vocab + torch.arange(vocab)) % states
    chain.scatter_add_(1, nxt, transitions)
    stationary = torch.full((states,), 1 / states, dtype=torch.float64)
    for _ in range(2000):
        stationary = stationary @ chain
    tail = tail_types(transitions, tail_mass)
    return Language(transitions.to(device), stationary.to(device), tail.to(device))


def sample_transition_counts(
    table: torch.Tensor, start: torch.Tensor, n: torch.Tensor, length: int, gen: torch.Generator
) -> torch.Tensor:
    """Transition counts [B, S*V] of n[b] sequences of `length` tokens from tables [B, S, V].

    Sequences are exchangeable, so only the number of them in each state matters: at every step
    the state occupancy splits multinomially over next tokens and flows to the next states. Exact,
    and the cost does not grow with the number of sequences.
    """
    batch, states, vocab = table.shape
    nxt = ((torch.arange(states, device=table.device).unsqueeze(-1) * vocab + torch.arange(vocab, device=table.device)) % states)
    occupancy = sample_counts(start.expand(batch, states), n, gen)
    total = torch.zeros_like(table)
    for _ in range(length):
        moves = sample_counts(table, occupancy, gen)
        total += moves
        occupancy = torch.zeros_like(occupancy).scatter_add_(1, nxt.reshape(1, -1).expand(batch, -1), moves.reshape(batch, -1))
    return total.reshape(batch, states * vocab)


def sample_text(table: torch.Tensor, start: torch.Tensor, sequences: int, length: int, gen: torch.Generator) -> torch.Tensor:
    """Token sequences [B, sequences, length] from tables [B, S, V] (for distinct-n)."""
    batch, states, vocab = table.shape
    state = draw_indices(start.unsqueeze(0), batch * sequences, gen).view(batch, sequences)
    tokens = []
    for _ in range(length):
        probs = table.gather(1, state.unsqueeze(-1).expand(-1, -1, vocab))
        token = draw_indices(probs.reshape(-1, vocab), 1, gen).view(batch, sequences)
        tokens.append(token)
        state = (state * vocab + token) % states
    return torch.stack(tokens, dim=-1)


def _fit(counts: torch.Tensor, states: int, vocab: int) -> torch.Tensor:
    table = counts.view(-1, states, vocab)
    totals = table.sum(-1, keepdim=True)
    return torch.where(totals > 0, table / totals.clamp_min(1), torch.full_like(table, 1 / vocab))


def _metrics(model: torch.Tensor, truth: Language, text: torch.Tensor) -> dict[str, torch.Tensor]:
    """The shared metrics (simulations.metrics) with states weighted by the true stationary law."""
    return {
        **discrete_metrics(model, truth.transitions, truth.tail, truth.stationary),
        "distinct_1": distinct_n(text, 1, truth.vocab),
        "distinct_2": distinct_n(text, 2, truth.vocab),
    }


def simulate(
    cells: list[Cell],
    generations: int,
    seeds: int,
    device: torch.device,
    seed: int,
    *,
    vocab: int = 8,
    order: int = 1,
    beta: float = 1.5,
    seq_len: int = 16,
    tail_mass: float = 0.2,
    text_sequences: int = 8,
    truth_seed: int = 1234,
) -> list[dict[str, torch.Tensor]]:
    for cell in cells:
        if cell.diversity_control not in SUPPORTED_CONTROLS:
            raise ValueError(f"the markov family supports diversity controls {', '.join(SUPPORTED_CONTROLS)}, not {cell.diversity_control!r}")
    truth = language(vocab, order, beta, tail_mass, truth_seed, device)
    states = vocab**order
    plan = plan_tensors(cells, seeds, device)
    controls = [c.diversity_control for c in cells for _ in range(seeds)]
    values = torch.tensor([c.diversity for c in cells], dtype=torch.float64, device=device).repeat_interleave(seeds)
    batch = len(cells) * seeds
    gen = torch.Generator(device).manual_seed(seed)
    true_table = truth.transitions.expand(batch, states, vocab).contiguous()

    real = RealStream(seeds, seed, device)

    def sample(table, n):
        return sample_transition_counts(table, truth.stationary, n, seq_len, gen)

    def draw_real(generation: int, n: torch.Tensor) -> torch.Tensor:
        truth_rows = lambda k: truth.transitions.expand(len(k), states, vocab)  # noqa: E731
        return real.additive(generation, n, lambda k, g: (
            sample_transition_counts(truth_rows(k), truth.stationary, k, seq_len, g),))[0]

    def text(table):
        return sample_text(table, truth.stationary, text_sequences, seq_len, gen)

    nan = torch.full((batch,), torch.nan, dtype=torch.float64, device=device)
    per_generation = [{**_metrics(true_table, truth, text(true_table)), "sampler_entropy": nan,
                       "batch_tail_coverage": nan, "batch_richness": nan, "batch_entropy": nan}]
    real_pool = draw_real(1, plan["first_real"])
    pool = train = real_pool
    for g in range(1, generations + 1):
        model = _fit(train, states, vocab)
        metrics = _metrics(model, truth, text(model))
        # The synthetic batch model g hands to generation g + 1 (also drawn at the last generation).
        sampling = apply_control(model, controls, values, truth.stationary)
        synthetic = sample(sampling, plan["synthetic"])
        metrics["sampler_entropy"] = torch.where(plan["synthetic"] == 0, torch.nan, (entropy(sampling) * truth.stationary).sum(-1))
        metrics.update(batch_diversity(synthetic.view(batch, states, vocab), truth.transitions, truth.tail, truth.stationary))
        per_generation.append(metrics)
        if g == generations:
            break
        new = synthetic + draw_real(g + 1, plan["fresh_real"])
        keep = plan["keep_history"].unsqueeze(-1)
        reuse = plan["reuse_real_pool"].unsqueeze(-1)
        pool = torch.where(keep, pool + new, new) + torch.where(reuse, real_pool, torch.zeros_like(real_pool))
        train = resample_counts(pool, plan["subsample"] * seq_len, gen)
    return stack_runs(per_generation, len(cells), seeds)
