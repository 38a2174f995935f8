"""(e) A small neural autoregressive LM trained recursively on a known order-k Markov language.

The language is an order-2 Markov chain over 16 tokens whose transitions we fix and know, so every
quantity "under the truth" is exact. The model is a Bengio-style neural LM: it embeds the last k
tokens, passes them through one tanh layer and predicts the next token. Its context is exactly the
source's order, so the model is itself an order-k chain and the KL to the truth is computed exactly
over the Markov states rather than estimated from samples.

All runs of one call (cells x seeds) are trained at once as ONE batched model: every weight tensor
carries a leading run axis and the forward pass is a batched matmul, so run r only ever touches
slice r of every tensor. Adam is elementwise, so the optimiser keeps runs independent too.

This file also holds the regime logic (which data each generation trains on), written over padded
per-run tensors so that the VAE family (vae_digits.py) shares it.
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
# Diversity controls, applied to the synthetic samples only

SUPPORTED_CONTROLS = ("temperature", "top_p")
REGIMES = ("replace", "accumulate", "fresh", "fixed_real", "accumulate_subsample")


def check_cells(cells: list[Cell]) -> None:
    for cell in cells:
        if cell.diversity_control not in SUPPORTED_CONTROLS:
            raise ValueError(
                f"diversity control {cell.diversity_control!r} is not supported by the neural families; "
                f"use one of {', '.join(SUPPORTED_CONTROLS)}"
            )
        if cell.regime not in REGIMES:
            raise ValueError(f"unknown regime {cell.regime!r}; use one of {', '.join(REGIMES)}")
        if cell.diversity <= 0 or (cell.diversity_control == "top_p" and cell.diversity > 1):
            raise ValueError(f"{cell.diversity_control} must be > 0 (and top_p <= 1), got {cell.diversity}")
        if cell.real_amount < 1:
            raise ValueError(f"real_amount must be >= 1, got {cell.real_amount}")
        if cell.regime in ("fresh", "fixed_real") and not 0 <= cell.ratio < 1:
            raise ValueError(f"regime {cell.regime!r} needs 0 <= ratio < 1 (ratio 1 is 'replace'), got {cell.ratio}")


def control_values(cells: list[Cell], seeds: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Per-run (tau, top_p); a cell using one control leaves the other neutral (1.0)."""
    tau = [c.diversity if c.diversity_control == "temperature" else 1.0 for c in cells for _ in range(seeds)]
    top_p = [c.diversity if c.diversity_control == "top_p" else 1.0 for c in cells for _ in range(seeds)]
    return torch.tensor(tau, device=device), torch.tensor(top_p, device=device)


def controlled(table: Tensor, tau: Tensor, top_p: Tensor) -> Tensor:
    """Sampling law of each run: its next-token rows tempered by tau, then nucleus-truncated to top_p."""
    probs = torch.softmax(table.log() / tau[:, None, None], dim=-1)
    ordered, order = probs.sort(dim=-1, descending=True)
    # Keep the most likely tokens up to and including the one that reaches mass p.
    keep_sorted = ordered.cumsum(-1) - ordered < top_p[:, None, None]
    keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    probs = probs * keep
    return probs / probs.sum(-1, keepdim=True)


# ----------------------------------------------------------------------------------------------
# Regimes: which data generation g >= 2 trains on (shared with vae_digits.py)


@dataclass
class Pool:
    items: Tensor  # [R, capacity, *item]; row i of run r is data only when i < counts[r]
    counts: Tensor  # [R] long


def pack(parts: list[list[Tensor]]) -> Pool:
    """Per-run lists of item tensors -> one padded batch."""
    runs = [torch.cat(p) for p in parts]
    counts = torch.tensor([len(r) for r in runs], device=runs[0].device)
    items = runs[0].new_zeros((len(runs), int(counts.max()), *runs[0].shape[1:]))
    for i, r in enumerate(runs):
        items[i, : len(r)] = r
    return Pool(items, counts)


def synthetic_count(cell: Cell) -> int:
    """Synthetic samples a generation draws. replace / accumulate kinds add real_amount per generation;
    fresh / fixed_real keep real_amount real samples and add synthetic ones up to share `ratio`,
    so real amount and ratio vary independently."""
    if cell.regime in ("fresh", "fixed_real"):
        return round(cell.ratio / (1 - cell.ratio) * cell.real_amount)
    return cell.real_amount


class RecursiveData:
    """The training set of each run, generation by generation.

    replace: only the previous model's samples. accumulate: everything so far. accumulate_subsample:
    everything so far, subsampled to real_amount. fresh: real_amount new real samples + synthetic.
    fixed_real: the generation-1 real samples again + synthetic.
    """

    def __init__(self, runs: list[Cell], first_real: Tensor, generator: torch.Generator):
        self.runs = runs  # one Cell per run
        self.generator = generator
        self.first_real = [first_real[r, : c.real_amount] for r, c in enumerate(runs)]
        self.history = [[x] for x in self.first_real]

    def first(self) -> Pool:
        return pack([[x] for x in self.first_real])

    def next(self, draw_real: Callable[[int], Tensor], draw_synthetic: Callable[[int], Tensor]) -> Pool:
        """draw_*(n) -> [R, n, *item] samples for every run; each run takes what its regime needs."""
        real = draw_real(max(c.real_amount for c in self.runs)) if any(c.regime == "fresh" for c in self.runs) else None
        synthetic = draw_synthetic(max(synthetic_count(c) for c in self.runs))
        parts = []
        for r, cell in enumerate(self.runs):
            new = synthetic[r, : synthetic_count(cell)]
            if cell.regime == "replace":
                parts.append([new])
            elif cell.regime == "fresh":
                parts.append([real[r, : cell.real_amount], new])
            elif cell.regime == "fixed_real":
                parts.append([self.first_real[r], new])
            else:  # accumulate, accumulate_subsample
                self.history[r].append(new)
                everything = torch.cat(self.history[r])
                if cell.regime == "accumulate_subsample":
                    pick = torch.randperm(len(everything), generator=self.generator, device=everything.device)
                    everything = everything[pick[: cell.real_amount]]
                parts.append([everything])
        return pack(parts)


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

    bigrams = (text[:, :, :-1] * VOCAB + text[:, :, 1:]).flatten(1)
    seen = torch.zeros(len(text), VOCAB * VOCAB, device=text.device).scatter_(1, bigrams, 1.0)
    distinct_2 = seen.sum(1).double() / bigrams.shape[1]

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
    check_cells(cells)
    with one_cpu_thread(device):
        return _simulate(cells, generations, seeds, torch.device(device), seed)


def _simulate(cells: list[Cell], generations: int, seeds: int, device: torch.device, seed: int) -> list[dict[str, Tensor]]:
    generator = torch.Generator(device=device).manual_seed(seed)
    source = language(device)
    runs = [cell for cell in cells for _ in range(seeds)]
    tau, top_p = control_values(cells, seeds, device)
    truth = source.transitions.expand(len(runs), STATES, VOCAB)

    def draw_real(n: int) -> Tensor:
        return sample_sequences(truth.float(), n, generator)

    test = draw_real(TEST_SEQUENCES)
    history = [metrics(truth, source, test, draw_real(EVAL_SEQUENCES))]
    data = RecursiveData(runs, draw_real(max(c.real_amount for c in cells)), generator)
    pool = data.first()
    for generation in range(1, generations + 1):
        if generation > 1:
            sampling_law = controlled(table, tau, top_p).float()
            pool = data.next(draw_real, lambda n: sample_sequences(sampling_law, n, generator))
        params = init_params(len(runs), generator, device)
        draws = torch.rand(STEPS, len(runs), BATCH, generator=generator, device=device)
        table = conditional_table(fit(params, pool.items, pool.counts, draws))
        history.append(metrics(table, source, test, sample_sequences(table.float(), EVAL_SEQUENCES, generator)))

    stacked = {name: torch.stack([h[name] for h in history], dim=1).double().cpu() for name in history[0]}
    return [{name: v[i * seeds : (i + 1) * seeds] for name, v in stacked.items()} for i in range(len(cells))]
