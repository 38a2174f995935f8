"""(f) A small VAE trained recursively on scikit-learn's 8x8 digits, with some classes made rare.

The truth is the bundled digits (sklearn.datasets.load_digits, no download) reweighted so that three
classes are rare: a real sample is a training-split image drawn with probability proportional to its
class weight. The tails are read by a classifier trained once on the real training split; its hidden
layer is also the feature space for precision / recall / coverage.

All runs of one call (cells x seeds) are trained at once as ONE batched VAE: every weight tensor has a
leading run axis and each layer is a batched matmul. Regimes follow simulations/regimes.py through
neural_lm.RecursiveData, so both neural families build training sets the same way.

Common random numbers, as in neural_lm: real images (training, held-out test and the precision /
recall reference) come from simulations/sampling.RealStream, and each generation's initial weights,
minibatch picks and reparameterisation noise are drawn per seed index (neural_lm.model_noise). So
cells of a batch with the same seed index and real count fit the same generation-1 VAE, and a cell
is paired with its real-only counterfactual.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import Tensor

from simulations.cells import Cell
from simulations.metrics import (
    COVERAGE_RATE,
    LOG_FLOOR,
    batch_diversity,
    knn_precision_recall_coverage,
)
from simulations.neural import Pool, RecursiveData, check_cells, one_cpu_thread
from simulations.regimes import plan_tensors
from simulations.sampling import RealStream, model_noise, stream_points

# ----------------------------------------------------------------------------------------------
# The truth: digits with rare classes

PIXELS = 64
CLASSES = 10
RARE_CLASSES = (0, 4, 7)
RARE_WEIGHT = 0.25  # a rare class is drawn 4x less often than a common one: true rare share 0.75 / 7.75
SPLIT_SEED = 7
TEST_SHARE = 0.3


@dataclass(frozen=True)
class Digits:
    train: Tensor  # [n, 64] pixel intensities in [0, 1]
    train_labels: Tensor  # [n]
    test: Tensor
    test_labels: Tensor
    class_probs: Tensor  # [10] the true class law
    rare: Tensor  # [10] bool

    @property
    def rare_share(self) -> float:
        return float(self.class_probs[self.rare].sum())

    def draw(self, split: str, runs: int, n: int, generator: torch.Generator) -> Tensor:
        """[runs, n, 64] i.i.d. images from the truth: class by class_probs, then uniform within class."""
        images, labels = (self.train, self.train_labels) if split == "train" else (self.test, self.test_labels)
        weights = self.class_probs[labels] / torch.bincount(labels, minlength=CLASSES)[labels]
        index = torch.multinomial(weights.expand(runs, -1), n, replacement=True, generator=generator)
        return images[index]


@functools.cache
def digits(device: torch.device) -> Digits:
    data = load_digits()
    images = torch.tensor(data.images.reshape(-1, PIXELS) / 16.0, dtype=torch.float32)
    labels = torch.tensor(data.target)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(SPLIT_SEED))
    n_test = int(TEST_SHARE * len(labels))
    test, train = order[:n_test], order[n_test:]
    rare = torch.zeros(CLASSES, dtype=torch.bool)
    rare[list(RARE_CLASSES)] = True
    weights = torch.where(rare, RARE_WEIGHT, 1.0).double()
    return Digits(
        images[train].to(device), labels[train].to(device), images[test].to(device), labels[test].to(device),
        (weights / weights.sum()).to(device), rare.to(device),
    )


# ----------------------------------------------------------------------------------------------
# The reader: a classifier trained once on real digits (all classes equally)

READER_HIDDEN = 64


@dataclass(frozen=True)
class Reader:
    w1: Tensor
    b1: Tensor
    w2: Tensor
    b2: Tensor

    def features(self, x: Tensor) -> Tensor:
        return torch.relu(x @ self.w1 + self.b1)

    def classify(self, x: Tensor) -> Tensor:
        return (self.features(x) @ self.w2 + self.b2).argmax(-1)


@functools.cache
def reader(device: torch.device) -> Reader:
    data = digits(device)
    g = torch.Generator().manual_seed(SPLIT_SEED)
    params = [
        (torch.randn(PIXELS, READER_HIDDEN, generator=g) / math.sqrt(PIXELS)).to(device),
        torch.zeros(READER_HIDDEN, device=device),
        (torch.randn(READER_HIDDEN, CLASSES, generator=g) / math.sqrt(READER_HIDDEN)).to(device),
        torch.zeros(CLASSES, device=device),
    ]
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(params, lr=2e-2, weight_decay=1e-4)
    for _ in range(150):  # full batch; about 96 % test accuracy
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(Reader(*params).features(data.train) @ params[2] + params[3], data.train_labels).backward()
        optimizer.step()
    return Reader(*(p.detach() for p in params))


# ----------------------------------------------------------------------------------------------
# The model: a batched VAE with a Bernoulli decoder

LATENT = 8
HIDDEN = 128


def init_params(runs: int, generator: torch.Generator, device: torch.device) -> dict[str, Tensor]:
    def uniform(*shape: int, fan_in: int) -> Tensor:
        bound = 1.0 / math.sqrt(fan_in)  # the nn.Linear default, per run
        return (torch.rand(runs, *shape, generator=generator, device=device) * 2 - 1) * bound

    return {
        "enc_w1": uniform(PIXELS, HIDDEN, fan_in=PIXELS), "enc_b1": uniform(HIDDEN, fan_in=PIXELS),
        "enc_w2": uniform(HIDDEN, 2 * LATENT, fan_in=HIDDEN), "enc_b2": uniform(2 * LATENT, fan_in=HIDDEN),
        "dec_w1": uniform(LATENT, HIDDEN, fan_in=LATENT), "dec_b1": uniform(HIDDEN, fan_in=LATENT),
        "dec_w2": uniform(HIDDEN, PIXELS, fan_in=HIDDEN), "dec_b2": uniform(PIXELS, fan_in=HIDDEN),
    }


def decode(params: dict[str, Tensor], z: Tensor) -> Tensor:
    """z [R, B, LATENT] -> pixel logits [R, B, 64]."""
    h = torch.relu(torch.baddbmm(params["dec_b1"][:, None], z, params["dec_w1"]))
    return torch.baddbmm(params["dec_b2"][:, None], h, params["dec_w2"])


def negative_elbo(params: dict[str, Tensor], x: Tensor, eps: Tensor) -> Tensor:
    """x [R, B, 64], eps [R, B, LATENT] -> -ELBO per image [R, B] (nats), one reparameterised sample."""
    h = torch.relu(torch.baddbmm(params["enc_b1"][:, None], x, params["enc_w1"]))
    mean, log_var = torch.baddbmm(params["enc_b2"][:, None], h, params["enc_w2"]).chunk(2, dim=-1)
    z = mean + eps * torch.exp(0.5 * log_var)
    reconstruction = F.binary_cross_entropy_with_logits(decode(params, z), x, reduction="none").sum(-1)
    kl = 0.5 * (mean.square() + log_var.exp() - 1 - log_var).sum(-1)
    return reconstruction + kl


# ----------------------------------------------------------------------------------------------
# Training: fixed steps of minibatch Adam, all runs at once

STEPS = 500
BATCH = 128
LR = 5e-3


def fit(params: dict[str, Tensor], images: Tensor, counts: Tensor, draws: Tensor, eps: Tensor) -> dict[str, Tensor]:
    """Train every run on its own images [R, N, 64] (rows >= counts[r] are padding). draws [S, R, BATCH]
    uniforms pick each step's minibatch, eps [S, R, BATCH, LATENT] are its reparameterisation noise;
    passed in so a run's training depends only on its own slices."""
    params = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    optimizer = torch.optim.Adam(params.values(), lr=LR)
    rows = torch.arange(images.shape[0], device=images.device)[:, None]
    for u, noise in zip(draws, eps):
        pick = torch.minimum((u * counts[:, None]).long(), counts[:, None] - 1)
        optimizer.zero_grad(set_to_none=True)
        negative_elbo(params, images[rows, pick], noise).mean(1).sum().backward()  # sum of per-run means
        optimizer.step()
    return {k: v.detach() for k, v in params.items()}


# ----------------------------------------------------------------------------------------------
# Sampling, with the diversity controls acting on the latent prior

SUPPORTED_CONTROLS = ("temperature", "top_p")  # the two with a meaning for a continuous latent; tau = p = 1 is unbiased


def control_values(cells: list[Cell], seeds: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Per-run (tau, top_p); a cell using one control leaves the other neutral (1.0)."""
    tau = [c.diversity if c.diversity_control == "temperature" else 1.0 for c in cells for _ in range(seeds)]
    top_p = [c.diversity if c.diversity_control == "top_p" else 1.0 for c in cells for _ in range(seeds)]
    return torch.tensor(tau, device=device), torch.tensor(top_p, device=device)



def chi2_quantile(q: Tensor, dof: int) -> Tensor:
    """Inverse CDF of chi^2_dof by bisection on the regularised incomplete gamma (runs on any device)."""
    low, high = torch.zeros_like(q), torch.full_like(q, dof + 30.0 * math.sqrt(2 * dof) + 50.0)
    for _ in range(50):
        mid = (low + high) / 2
        below = torch.special.gammainc(torch.full_like(q, dof / 2), mid / 2) < q
        low, high = torch.where(below, mid, low), torch.where(below, high, mid)
    return (low + high) / 2


def sample_images(params: dict[str, Tensor], n: int, tau: Tensor, top_p: Tensor, generator: torch.Generator) -> Tensor:
    """n decoded images per run [R, n, 64] (decoder means). The latent prior N(0, I) is
    temperature-scaled (z -> tau z) and truncated to its highest-density ball of mass top_p: for those
    runs the squared radius is redrawn from chi^2_LATENT restricted to its lower top_p quantile, so
    the draw is exact without rejection. tau = top_p = 1 is the plain prior."""
    z = torch.randn(len(tau), n, LATENT, generator=generator, device=tau.device)
    truncated = top_p < 1
    if truncated.any():
        u = torch.rand(int(truncated.sum()), n, generator=generator, device=tau.device, dtype=torch.float64)
        radius = chi2_quantile(u * top_p[truncated].double()[:, None], LATENT).sqrt().float()
        z[truncated] = F.normalize(z[truncated], dim=-1) * radius[..., None]
    with torch.no_grad():
        return torch.sigmoid(decode(params, tau[:, None, None] * z))


# ----------------------------------------------------------------------------------------------
# Metrics

CLASSIFIED = 2000  # samples per run classified for the class histogram
MANIFOLD = 400  # real and generated samples per run for precision / recall / coverage (equal sizes)
NEIGHBOURS = 5
TEST_IMAGES = 400
REAL_CHUNK = 64  # real training images are drawn from the stream in chunks of this many (sampling.stream_points)
TEST_STREAM, REFERENCE_STREAM, TRUTH_STREAM = -1, -2, 0  # real streams no training set uses


def class_counts(images: Tensor, read: Reader, used: Tensor | None = None) -> Tensor:
    """Counts [R, 10] float64 of the reader's classes of images [R, n, 64] (only where used [R, n])."""
    one_hot = F.one_hot(read.classify(images), CLASSES).double()
    if used is not None:
        one_hot = one_hot * used[..., None]
    return one_hot.sum(1)


def metrics(samples: Tensor, real: Tensor, test_loss: Tensor, truth: Digits, read: Reader) -> dict[str, Tensor]:
    """Metrics of R samplers from their images `samples` [R, >= CLASSIFIED, 64] (model samples without
    the diversity control, or real draws for entry 0), against real reference images `real` [R, MANIFOLD, 64].

    The tail is RARE_CLASSES; a sample's class is the reader's. With s_c the share of the CLASSIFIED
    samples read as class c and p_c the true class probability (simulations.metrics meanings):
    tail_mass_ratio: sum_rare s_c / sum_rare p_c (two-sided: about 1 for real draws, 0 when the rare
        classes are no longer generated, above 1 when they are over-produced);
    tail_mass_abs_log_ratio: |log tail_mass_ratio| (floored at LOG_FLOOR);
    tail_coverage: share of the rare classes' true mass on rare classes with s_c >= COVERAGE_RATE * p_c
        (generated at >= 0.1 of their true share);
    tail_types_lost: rare classes with s_c = 0 (never generated among the CLASSIFIED samples; the
        reader is about 96 % accurate, so a misread image can hide a loss, or fake a rare class).
    precision, recall, coverage: k-NN precision / recall (arXiv 1904.06991) and coverage (arXiv
        2002.09797) in the reader's hidden-feature space, NEIGHBOURS-th neighbour balls, MANIFOLD each side.
    entropy: entropy (nats) of the reader's class histogram of the samples (ln 10 is uniform).
    test_loss: negative ELBO (nats per image) of held-out real digits, computed by the caller.
    """
    share = class_counts(samples[:, :CLASSIFIED], read) / CLASSIFIED  # [R, 10]
    p, rare = truth.class_probs, truth.rare
    ratio = share[:, rare].sum(1) / truth.rare_share
    covered = (share >= COVERAGE_RATE * p) & rare
    manifold = knn_precision_recall_coverage(read.features(real), read.features(samples[:, :MANIFOLD]), NEIGHBOURS)
    return {
        "tail_mass_ratio": ratio,
        "tail_mass_abs_log_ratio": ratio.clamp_min(LOG_FLOOR).log().abs(),
        "tail_coverage": (p * covered).sum(1) / truth.rare_share,
        "tail_types_lost": (rare & (share == 0)).sum(1).double(),
        **{name: v.double() for name, v in manifold.items()},
        "test_loss": test_loss.double(),
        "entropy": -(share * share.clamp_min(1e-300).log()).sum(1),
    }


# ----------------------------------------------------------------------------------------------
# The recursive-training loop


def simulate(cells: list[Cell], generations: int, seeds: int, device: torch.device, seed: int) -> list[dict[str, Tensor]]:
    """Recursive training of a VAE on its own samples, every (cell, seed) run batched together.

    real_amount counts images. Returns, per cell, metric -> float64 CPU tensor [seeds, generations + 1]:
    entry 0 describes the truth (metrics of fresh real draws; test_loss is NaN there, the truth has no
    ELBO), entry g the VAE fitted at generation g (generation 1 on real data only). Synthetic images are
    decoder means of latents drawn under the cell's control; the metrics sample with the plain prior.
    batch_tail_coverage / batch_richness / batch_entropy at entry g (simulations.metrics.batch_diversity
    over the reader's classes) describe the synthetic batch VAE g hands to generation g + 1 (drawn at
    the last generation too); NaN at entry 0 and for runs without synthetic data (ratio 0).
    """
    check_cells(cells, SUPPORTED_CONTROLS)
    with one_cpu_thread(device):
        return _simulate(cells, generations, seeds, torch.device(device), seed)


def _simulate(cells: list[Cell], generations: int, seeds: int, device: torch.device, seed: int) -> list[dict[str, Tensor]]:
    generator = torch.Generator(device=device).manual_seed(seed)
    truth, read = digits(device), reader(device)
    runs = [cell for cell in cells for _ in range(seeds)]
    seed_index = torch.arange(len(runs), device=device) % seeds
    tau, top_p = control_values(cells, seeds, device)
    ones = torch.ones_like(tau)
    synthetic_counts = plan_tensors(cells, seeds, device)["synthetic"]
    most_synthetic = int(synthetic_counts.max())
    stream = RealStream(seeds, seed, device)

    def real(split: str, generation: int, n: int, chunk: int = REAL_CHUNK) -> Tensor:
        return stream_points(stream, generation, len(runs), n, lambda k, g: truth.draw(split, seeds, k, g), chunk)

    test = real("test", TEST_STREAM, TEST_IMAGES, TEST_IMAGES)
    test_noise = model_noise("vae_digits", seed, 0, device)  # generation 0 fits no model: its noise is the test ELBO's
    test_eps = torch.randn(seeds, TEST_IMAGES, LATENT, generator=test_noise, device=device)[seed_index]
    reference = real("test", REFERENCE_STREAM, MANIFOLD, MANIFOLD)
    nan = torch.full((len(runs),), math.nan, dtype=torch.float64, device=device)
    history = [{**metrics(real("train", TRUTH_STREAM, CLASSIFIED, CLASSIFIED), reference, nan, truth, read),
                "batch_tail_coverage": nan, "batch_richness": nan, "batch_entropy": nan}]
    data = RecursiveData(runs, real("train", 1, max(c.real_amount for c in cells)), generator)
    pool: Pool = data.first()
    synthetic = test[:, :0]
    used = torch.arange(most_synthetic, device=device) < synthetic_counts[:, None]
    for generation in range(1, generations + 1):
        if generation > 1:
            pool = data.next(lambda n: real("train", generation, n), lambda n: synthetic[:, :n])  # noqa: B023
        noise = model_noise("vae_digits", seed, generation, device)
        params = {k: v[seed_index] for k, v in init_params(seeds, noise, device).items()}
        draws = torch.rand(STEPS, seeds, BATCH, generator=noise, device=device)[:, seed_index]
        eps = torch.randn(STEPS, seeds, BATCH, LATENT, generator=noise, device=device)[:, seed_index]
        params = fit(params, pool.items, pool.counts, draws, eps)
        with torch.no_grad():
            test_loss = negative_elbo(params, test, test_eps).mean(1)
        result = metrics(sample_images(params, CLASSIFIED, ones, ones, generator), reference, test_loss, truth, read)
        # The synthetic batch this VAE hands to the next generation, drawn under the cell's control.
        synthetic = sample_images(params, most_synthetic, tau, top_p, generator)
        result.update(batch_diversity(class_counts(synthetic, read, used), truth.class_probs, truth.rare))
        history.append(result)

    stacked = {name: torch.stack([h[name] for h in history], dim=1).double().cpu() for name in history[0]}
    return [{name: v[i * seeds : (i + 1) * seeds] for name, v in stacked.items()} for i in range(len(cells))]
