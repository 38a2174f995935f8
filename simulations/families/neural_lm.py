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

Real data are common random numbers (simulations/sampling.RealStream): run b takes the first n real
sequences of the stream of its seed index at each generation, so cells of a batch with the same
seed index and real count train on the same real sequences, and a cell's real-only counterfactual is
paired with it. The held-out test sequences come from the same kind of stream. Each generation's
initial weights and minibatch picks are drawn per seed index too (`model_noise`), so those runs also
fit the same generation-1 model; the synthetic samples and the metrics' own samples are drawn per run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from simulations.cells import Cell
from simulations.diversity import CONTROLS, apply_control
from simulations.metrics import batch_diversity, discrete_metrics, distinct_n, entropy
from simulations.neural import RecursiveData, check_cells, one_cpu_thread
from simulations.regimes import plan_tensors
from simulations.sampling import RealStream, model_noise, stream_points, zipf

# ----------------------------------------------------------------------------------------------
# The language: a fixed order-k Markov source with known transitions

VOCAB = 16
ORDER = 2  # tokens of context, for the source and for the model
STATES = VOCAB**ORDER
SEQ_LEN = 32  # tokens per sequence; a "sample" of this family is one sequence
BURN_IN = 16  # tokens generated and dropped before each sequence so it starts near stationarity
ZIPF = 1.2  # each context's next-token law is Zipf(1.2) over its own random ranking of tokens
TAIL_RANKS = 4  # the tail: the 4 least likely next tokens of every context (5.95 % of each context's mass)
LANGUAGE_SEED = 1234  # the language is one fixed object, independent of the simulation seed


@dataclass(frozen=True)
class MarkovLanguage:
    transitions: Tensor  # [STATES, VOCAB] float64, row s = P(next | context s)
    stationary: Tensor  # [STATES] float64, stationary law of the context
    rare: Tensor  # [STATES, VOCAB] bool, the tail: the TAIL_RANKS least likely next tokens of each context


def language(device: torch.device) -> MarkovLanguage:
    g = torch.Generator().manual_seed(LANGUAGE_SEED)
    ranking = torch.stack([torch.randperm(VOCAB, generator=g) for _ in range(STATES)])  # token -> rank
    transitions = zipf(VOCAB, ZIPF, torch.device("cpu"))[ranking]
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
    """n sequences per run from per-run order-k chains. table [R, STATES, VOCAB] -> tokens [R, n, SEQ_LEN].

    Exact inverse-CDF draws (float64): a zero-probability token is never drawn. The randomness used
    depends only on (R, n), so equal-shaped calls consume the generator identically."""
    runs = table.shape[0]
    rows = torch.arange(runs, device=table.device)[:, None]
    cdf = table.double().cumsum(-1)
    cdf = cdf / cdf[..., -1:]
    state = torch.randint(STATES, (runs, n), generator=generator, device=table.device)
    uniforms = torch.rand(BURN_IN + SEQ_LEN, runs, n, 1, generator=generator, device=table.device, dtype=torch.float64)
    tokens = []
    for u in uniforms:
        token = torch.searchsorted(cdf[rows, state], u, right=True).squeeze(-1).clamp_max(VOCAB - 1)
        tokens.append(token)
        state = (state * VOCAB + token) % STATES
    return torch.stack(tokens[BURN_IN:], dim=2)


def transition_counts(sequences: Tensor, used: Tensor) -> Tensor:
    """Counts [R, STATES, VOCAB] float64 of the (context, next token) windows of the sequences
    [R, n, SEQ_LEN] with used[r, i] (the windows a model trains on)."""
    runs = sequences.shape[0]
    contexts = sum(sequences[:, :, j : SEQ_LEN - ORDER + j] * VOCAB**(ORDER - 1 - j) for j in range(ORDER))
    index = (contexts * VOCAB + sequences[:, :, ORDER:]).reshape(runs, -1)
    weight = used[:, :, None].expand(-1, -1, SEQ_LEN - ORDER).reshape(runs, -1).double()
    counts = torch.zeros(runs, STATES * VOCAB, dtype=torch.float64, device=sequences.device)
    return counts.scatter_add_(1, index, weight).view(runs, STATES, VOCAB)


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


def run_controls(cells: list[Cell], seeds: int, device: torch.device) -> tuple[list[str], Tensor]:
    """Per-run control names and values (run r = cell r // seeds)."""
    controls = [c.diversity_control for c in cells for _ in range(seeds)]
    values = torch.tensor([c.diversity for c in cells], dtype=torch.float64, device=device).repeat_interleave(seeds)
    return controls, values


# ----------------------------------------------------------------------------------------------
# Metrics: exact where the truth allows it

EVAL_SEQUENCES = 32  # sequences sampled per run for distinct-2: 32 x 32 = 1024 tokens, equal for all
TEST_SEQUENCES = 64  # held-out real sequences per seed index for test_loss
TEST_STREAM = -1  # the real stream "generation" the held-out sequences come from (no training set uses it)
REAL_CHUNK = 16  # real sequences are drawn from the stream in chunks of this many (see stream_points)


def metrics(table: Tensor, source: MarkovLanguage, test: Tensor, text: Tensor) -> dict[str, Tensor]:
    """Metrics of R order-k chains (fitted models, or the truth itself for entry 0), each [R] float64.

    The states are the STATES contexts, weighted by the truth's stationary context law pi; the tail
    is, per context s, its TAIL_RANKS least likely next tokens under the truth (`source.rare`).
    simulations.metrics.discrete_metrics gives, exactly over all contexts (no sampling):
    tail_mass_ratio, tail_mass_abs_log_ratio, tail_coverage (COVERAGE_RATE = 0.1 of the true rate),
    tail_types_lost, forward_kl = sum_s pi(s) KL(P(.|s) || Q~(.|s)) (Q~ = Q mixed with SMOOTHING of
    uniform mass; the family's old `kl` was this direction, unsmoothed), tail_forward_kl, reverse_kl, types_kept,
    gini_simpson, entropy (sum_s pi(s) H(Q(.|s)); the entropy rate for the truth) and tv. A softmax
    never gives a token probability 0, so tail_types_lost is 0 and types_kept is VOCAB for every model.

    test_loss keeps this family's held-out meaning: mean NLL (nats / predicted token) of the held-out
    real sequences `test` [R, n, SEQ_LEN] under the model (an estimate of the entropy rate + the
    exact forward KL, without smoothing), not discrete_metrics' exact smoothed cross-entropy.
    distinct_2: distinct bigrams / total bigrams in `text` [R, n, SEQ_LEN], sampled from the model
        without the diversity control, EVAL_SEQUENCES x SEQ_LEN tokens for every run and the truth.
    """
    out = discrete_metrics(table, source.transitions, source.rare, source.stationary)
    log_q = table.clamp_min(1e-300).log()
    rows = torch.arange(len(table), device=table.device)[:, None, None]
    contexts = sum(test[:, :, j : SEQ_LEN - ORDER + j] * VOCAB**(ORDER - 1 - j) for j in range(ORDER))
    out["test_loss"] = -log_q[rows, contexts, test[:, :, ORDER:]].mean((1, 2))
    out["distinct_2"] = distinct_n(text, 2, VOCAB)
    return out


def synthetic_diversity(
    sampling_law: Tensor, sequences: Tensor, counts: Tensor, source: MarkovLanguage
) -> dict[str, Tensor]:
    """The realised diversity of each run's synthetic batch: its first counts[r] sequences of
    `sequences` [R, n, SEQ_LEN], drawn from `sampling_law` [R, STATES, VOCAB] (the model after its
    diversity control). batch_tail_coverage / batch_richness / batch_entropy (simulations.metrics.
    batch_diversity) over the batch's (context, next token) transitions, and sampler_entropy, the
    state-weighted next-token entropy of the sampling law; all NaN for runs that draw no synthetic data."""
    used = torch.arange(sequences.shape[1], device=counts.device) < counts[:, None]
    out = batch_diversity(transition_counts(sequences, used), source.transitions, source.rare, source.stationary)
    sampler_entropy = (entropy(sampling_law) * source.stationary).sum(-1)
    out["sampler_entropy"] = torch.where(counts > 0, sampler_entropy, torch.nan)
    return out


# ----------------------------------------------------------------------------------------------
# The recursive-training loop


def simulate(cells: list[Cell], generations: int, seeds: int, device: torch.device, seed: int) -> list[dict[str, Tensor]]:
    """Recursive training of a neural LM on its own samples, every (cell, seed) run batched together.

    real_amount counts sequences of SEQ_LEN tokens. Returns, per cell, metric -> float64 CPU tensor
    [seeds, generations + 1]: entry 0 is the truth, entry g the model fitted at generation g
    (generation 1 on real data only). See `metrics` and `synthetic_diversity` for the definitions and
    `RecursiveData` for the regimes; the diversity control shapes the synthetic samples only, never
    the metrics' samples. The batch_* metrics and sampler_entropy at entry g describe the synthetic
    batch model g hands to generation g + 1 (drawn at the last generation too); NaN at entry 0 and
    for runs without synthetic data (ratio 0).
    """
    check_cells(cells, tuple(c for c in CONTROLS if c not in UNSUPPORTED_CONTROLS))
    with one_cpu_thread(device):
        return _simulate(cells, generations, seeds, torch.device(device), seed)


def _simulate(cells: list[Cell], generations: int, seeds: int, device: torch.device, seed: int) -> list[dict[str, Tensor]]:
    generator = torch.Generator(device=device).manual_seed(seed)
    source = language(device)
    runs = [cell for cell in cells for _ in range(seeds)]
    controls, values = run_controls(cells, seeds, device)
    synthetic_counts = plan_tensors(cells, seeds, device)["synthetic"]
    most_synthetic = int(synthetic_counts.max())
    truth = source.transitions.expand(len(runs), STATES, VOCAB)
    stream = RealStream(seeds, seed, device)
    seed_index = torch.arange(len(runs), device=device) % seeds

    def draw_truth(k: int, g: torch.Generator) -> Tensor:
        return sample_sequences(source.transitions.expand(seeds, STATES, VOCAB), k, g)

    def real(generation: int, n: int) -> Tensor:
        return stream_points(stream, generation, len(runs), n, draw_truth, REAL_CHUNK)

    test = real(TEST_STREAM, TEST_SEQUENCES)
    nan = torch.full((len(runs),), torch.nan, dtype=torch.float64, device=device)
    history = [{**metrics(truth, source, test, sample_sequences(truth, EVAL_SEQUENCES, generator)),
                "sampler_entropy": nan, "batch_tail_coverage": nan, "batch_richness": nan, "batch_entropy": nan}]
    data = RecursiveData(runs, real(1, max(c.real_amount for c in cells)), generator)
    pool = data.first()
    synthetic = truth.new_zeros(0)
    for generation in range(1, generations + 1):
        if generation > 1:
            pool = data.next(lambda n: real(generation, n), lambda n: synthetic[:, :n])  # noqa: B023
        noise = model_noise("neural_lm", seed, generation, device)
        params = {k: v[seed_index] for k, v in init_params(seeds, noise, device).items()}
        draws = torch.rand(STEPS, seeds, BATCH, generator=noise, device=device)[:, seed_index]
        table = conditional_table(fit(params, pool.items, pool.counts, draws))
        result = metrics(table, source, test, sample_sequences(table, EVAL_SEQUENCES, generator))
        # The synthetic batch this model hands to the next generation (also at the last generation,
        # so every model's realised output diversity is reported).
        sampling_law = apply_control(table, controls, values, source.stationary)
        synthetic = sample_sequences(sampling_law, most_synthetic, generator)
        result.update(synthetic_diversity(sampling_law, synthetic, synthetic_counts, source))
        history.append(result)

    stacked = {name: torch.stack([h[name] for h in history], dim=1).double().cpu() for name in history[0]}
    return [{name: v[i * seeds : (i + 1) * seeds] for name, v in stacked.items()} for i in range(len(cells))]
