"""DeepDPM (Ronen et al., 2022) on whitened sentence embeddings, and DCGLU on it.

Registered as method ``deepdpm``; called by the runner for DCGLU Tables 1 and 4. Re-implemented from the
official code's defaults (``BGU-CS-VIL/DeepDPM`` ``DeepDPM.py`` and ``src/clustering_models/
clusternet_modules``; notes ``dcglu.md`` §1.4), without Lightning:

* Input: text -> cached frozen sentence embeddings -> BERT-whitening to 64-d (DCGLU App. B.3) -> row-wise
  L2 normalisation (``--transform_input_data normalize``). A 'features' data set is used as given.
* Cluster net D -> 50 (ReLU) -> K softmax; K sub-cluster nets D -> 50 (ReLU) -> 2 (one per cluster,
  evaluated together as batched matrices; the official block-masked layer computes the same thing).
* Epoch 0 gathers the data and initialises K = ``init_k`` Gaussians by k-means with the NIW posterior.
  Every later epoch trains the cluster net on KL(r_gmm || r), r_gmm = the GMM E-step (float64); from
  ``start_computing_params`` an M-step with the NIW prior (kappa, nu, Psi) and a Dirichlet prior on pi
  follows each epoch; sub-clusters are trained from ``start_sub_clustering`` (isotropic loss); split
  proposals (Hastings ratio with alpha and the NIW marginal likelihood) and merge proposals (nearest
  neighbour pairs, inverse ratio) alternate from ``start_split_merge`` every ``split_merge_every``
  epochs; the parameters stay frozen for ``freeze_epochs`` epochs after each proposal epoch.
* Learning rates are constant by default. The official code builds ``StepLR(step_size=20)`` but returns it
  under the key ``'scheduler'``; pytorch-lightning 1.2 (its pinned version) reads only ``'lr_scheduler'``
  from optimizer dicts, so the official run never decays (code reading; ``lr_step`` > 0 turns StepLR on).
* Output: argmax of the cluster net on the data it was fitted on (the official evaluation); the number
  of clusters found (``k_found``) may differ from the true K.

``fixed_k=True`` starts at K = n_clusters and never splits or merges (no sub-clusters): the declared
cheap variant. DCGLU (``pu=True``, App. B.3): per sample, the E-step responsibilities are sharpened
(temperature ``pu_temperature``; function not reported, our choice), samples whose sharpened maximum
exceeds t are labeled with its argmax, and the nnPU term of :mod:`dcrepro.methods.pu` on the cluster
net's probabilities (``multiclass_items``) is added with weight lambda.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from threadpoolctl import threadpool_limits
from torch import nn

from dcrepro.seeding import seed_everything

from . import RowOutput, RunContext, params_from_dict, register_method
from .pu import UNLABELED_MODES, PUFields, PURegulariser, multiclass_items, sharpen

__all__ = ["DeepDPMParams", "NIWPrior", "fit_deepdpm", "run_deepdpm", "split_log_h"]

INPUT_TRANSFORMS = ("normalize", "none")
PU_STARTS = ("epoch1", "after_first_split_merge")


@dataclass
class DeepDPMParams(PUFields):
    """Hyper-parameters of DeepDPM (+ DCGLU). Defaults: the official ``DeepDPM.py`` (full budget)."""

    pu_temperature: float = 0.5
    """Temperature of the E-step sharpening p^(1/T): "sharpened" is all the paper says; our choice."""
    pu_unlabeled: str = "mean_binary"
    """Reading of L(f_bar(x), -1) for K classes: 'mean_binary' (ours) or 'literal' (a constant)."""
    pu_start: str = "epoch1"
    """When the PU term starts: 'epoch1' (from the first training epoch, through the K = 1 phase and every
    proposal epoch; our reading of "select ... in the E-step") or 'after_first_split_merge' (from the epoch
    after the first merge proposal, i.e. once one split and one merge proposal have been made; needs
    split/merge, so not with ``fixed_k``). Not stated in the paper."""
    fixed_k: bool = False
    """Start at K = n_clusters and never split or merge (declared cheap variant)."""
    init_k: int = 1
    """Initial number of clusters (official ``--init_k`` default 1); ignored when ``fixed_k``."""
    encoder: str = "all-MiniLM-L6-v2"
    """Sentence encoder for text data (DCGLU: bert-base-uncased; MiniLM offline, declared)."""
    whiten_dim: int = 64
    """BERT-whitening output dimension (DCGLU App. B.3: 768 -> 64); 0 disables whitening."""
    input_transform: str = "normalize"
    """'normalize' (row-wise L2, official default) or 'none'."""
    fit_split: str = "train"
    """Split DeepDPM is fitted on and evaluated on (official: train data; DCGLU keeps its setting)."""
    max_epochs: int = 500
    """Training epochs (official ``--max_epochs``)."""
    batch_size: int = 128
    """Mini-batch size (official)."""
    cluster_lr: float = 5e-4
    """Adam learning rate of the cluster net (official)."""
    subcluster_lr: float = 5e-3
    """Adam learning rate of the sub-cluster nets (official)."""
    lr_step: int = 0
    """StepLR step size in epochs on the cluster net; 0 = no decay. The official code creates
    ``StepLR(step_size=20)`` but pytorch-lightning 1.2 never applies it (see the module docstring)."""
    lr_gamma: float = 0.1
    """StepLR factor when ``lr_step`` > 0 (torch default)."""
    hidden: int = 50
    """Hidden width of the cluster net and of each sub-cluster net (official)."""
    start_computing_params: int = 25
    """First epoch with an M-step (official)."""
    start_sub_clustering: int = 45
    """First epoch that trains the sub-cluster nets (official)."""
    start_split_merge: int = 55
    """First split proposal epoch; merges alternate with splits (official start_splitting/merging)."""
    split_merge_every: int = 30
    """Epochs between proposal epochs (official ``split_merge_every_n_epochs``)."""
    freeze_epochs: int = 5
    """Epochs without M-step after a proposal epoch (official ``freeze_mus_submus_after_splitmerge``)."""
    alpha: float = 10.0
    """Dirichlet-process concentration in the Hastings ratios (official)."""
    prior_kappa: float = 1e-4
    """NIW kappa (official)."""
    prior_nu: float = 0.0
    """NIW nu; 0 means D + 2 (official ``check_args`` when unset)."""
    prior_sigma_scale: float = 0.005
    """NIW Psi = scale * I (official isotropic prior)."""
    prior_dir_counts: float = 0.1
    """Dirichlet pseudo-count added to each pi (official ``prior_dir_counts``)."""

    def __post_init__(self) -> None:
        if self.input_transform not in INPUT_TRANSFORMS:
            raise ValueError(f"input_transform must be one of {list(INPUT_TRANSFORMS)}, got {self.input_transform!r}")
        if self.pu_unlabeled not in UNLABELED_MODES:
            raise ValueError(f"pu_unlabeled must be one of {list(UNLABELED_MODES)}, got {self.pu_unlabeled!r}")
        for name in ("init_k", "max_epochs", "batch_size", "hidden", "split_merge_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr_step < 0 or self.freeze_epochs < 0:
            raise ValueError(f"lr_step and freeze_epochs must be >= 0, got {self.lr_step}, {self.freeze_epochs}")
        if self.pu_temperature <= 0:
            raise ValueError(f"pu_temperature must be > 0, got {self.pu_temperature}")
        if self.pu_start not in PU_STARTS:
            raise ValueError(f"pu_start must be one of {list(PU_STARTS)}, got {self.pu_start!r}")
        if self.pu_start != "epoch1" and self.fixed_k:
            raise ValueError("pu_start='after_first_split_merge' needs split/merge proposals (fixed_k = false)")
        self.pu_params()

    def pu_first_epoch(self) -> int:
        """First epoch with the PU term: 1, or the epoch after the first merge proposal."""
        return 1 if self.pu_start == "epoch1" else self.start_split_merge + self.split_merge_every + 1


# ----------------------------------------------------------------------------------------------------
# Bayesian GMM pieces (float64)


class NIWPrior:
    """Normal-inverse-Wishart prior on (mu, Sigma) plus the Dirichlet smoothing of pi (official ``priors.py``)."""

    def __init__(self, codes: torch.Tensor, p: DeepDPMParams) -> None:
        d = codes.shape[1]
        self.m0 = codes.mean(dim=0)
        self.psi = torch.eye(d, dtype=codes.dtype) * p.prior_sigma_scale
        self.kappa = p.prior_kappa
        self.nu = p.prior_nu if p.prior_nu > 0 else d + 2.0
        self.dir_counts = p.prior_dir_counts

    def post_pi(self, pi: torch.Tensor) -> torch.Tensor:
        return (pi + self.dir_counts) / (pi + self.dir_counts).sum()

    def post_mus(self, counts: torch.Tensor, data_mus: torch.Tensor) -> torch.Tensor:
        c = counts.reshape(-1, 1).to(data_mus.dtype)
        return (c * data_mus + self.kappa * self.m0) / (c + self.kappa)

    def post_cov(self, n: float, mu: torch.Tensor, data_cov: torch.Tensor) -> torch.Tensor:
        """Posterior-mode covariance from n (soft) points whose scatter / n is ``data_cov``."""
        n = float(n)
        if n <= 0:
            return self.psi.clone()
        d = mu.shape[0]
        dm = (mu - self.m0).unsqueeze(1)
        return (self.psi + data_cov * n + (self.kappa * n / (self.kappa + n)) * (dm @ dm.T)) / (self.nu + n + d + 2)

    def log_marginal(self, codes: torch.Tensor, mu: torch.Tensor) -> float:
        """NIW log marginal likelihood of ``codes`` with the scatter taken around ``mu`` (official)."""
        n, d = codes.shape
        kappa_s, nu_s = self.kappa + n, self.nu + n
        diff = codes - mu
        dm = (mu - self.m0).unsqueeze(1)
        psi_s = self.psi + diff.T @ diff + (self.kappa * n / kappa_s) * (dm @ dm.T)
        return float(
            -(n * d / 2.0) * math.log(math.pi)
            + torch.special.multigammaln(torch.tensor(nu_s / 2.0, dtype=torch.float64), d)
            - torch.special.multigammaln(torch.tensor(self.nu / 2.0, dtype=torch.float64), d)
            + (self.nu / 2.0) * torch.logdet(self.psi)
            - (nu_s / 2.0) * torch.logdet(psi_s)
            + (d / 2.0) * (math.log(self.kappa) - math.log(kappa_s))
        )


def _pd(cov: torch.Tensor) -> torch.Tensor:
    """Add 1e-5 I to the matrices that are not positive definite (official ``compute_covs``)."""
    _, info = torch.linalg.cholesky_ex(cov)
    bad = info != 0
    if bad.any():
        cov = cov.clone()
        cov[bad] += 1e-5 * torch.eye(cov.shape[-1], dtype=cov.dtype)
    return cov


def _hard_gaussians(codes, labels, n_comp, prior, centres):
    """Posterior (mus, covs) and counts of hard-assigned groups around given centres (k-means init)."""
    counts = torch.bincount(labels, minlength=n_comp).to(codes.dtype)
    covs = []
    for j in range(n_comp):
        x = codes[labels == j]
        if len(x) == 0:
            covs.append(prior.psi.clone())
            continue
        diff = x - centres[j]
        covs.append(prior.post_cov(len(x), x.mean(dim=0), diff.T @ diff / len(x)))
    return prior.post_mus(counts, centres), _pd(torch.stack(covs)), counts


def _init_kmeans(codes, k, prior, rng):
    from sklearn.cluster import KMeans

    km = KMeans(n_clusters=k, n_init=1, random_state=int(rng.integers(2**31))).fit(codes.numpy())
    labels = torch.as_tensor(km.labels_, dtype=torch.long)
    centres = torch.as_tensor(km.cluster_centers_, dtype=codes.dtype)
    mus, covs, counts = _hard_gaussians(codes, labels, k, prior, centres)
    return mus, covs, counts / len(codes)


def _init_sub(codes_k, n_total, prior, rng):
    """Two sub-clusters of one cluster: 2-means on the first principal component (official 'kmeans_1d')."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    pca = PCA(n_components=1).fit(codes_k.numpy())
    proj = pca.transform(codes_k.numpy())
    km = KMeans(n_clusters=2, n_init=1, random_state=int(rng.integers(2**31))).fit(proj)
    centres = torch.as_tensor(pca.inverse_transform(km.cluster_centers_), dtype=codes_k.dtype)
    labels = torch.as_tensor(km.labels_, dtype=torch.long)
    mus, covs, counts = _hard_gaussians(codes_k, labels, 2, prior, centres)
    return mus, covs, counts / n_total


class _EStep:
    """The GMM E-step of ``KL_GMM_2`` for fixed (mus, covs, pi): responsibilities in float64, smoothed with
    the official eps = 1e-5 and returned as float32. The inverse Cholesky factors of all K covariances are
    stacked once, so a batch costs one matrix product."""

    def __init__(self, mus: torch.Tensor, covs: torch.Tensor, pi: torch.Tensor) -> None:
        k, d = mus.shape
        chol = torch.linalg.cholesky(covs)
        inv = torch.linalg.solve_triangular(chol, torch.eye(d, dtype=covs.dtype).expand(k, d, d), upper=False)
        self.k, self.d = k, d
        self.proj = inv.reshape(k * d, d).T  # x @ proj = stacked L_k^{-1} x
        self.offset = (inv @ mus.unsqueeze(2)).reshape(1, k, d)  # L_k^{-1} mu_k
        logdet = 2.0 * torch.log(torch.diagonal(chol, dim1=1, dim2=2)).sum(dim=1)
        self.const = torch.log(pi) - 0.5 * logdet  # D log(2 pi) / 2 cancels in the softmax

    def __call__(self, x64: torch.Tensor) -> torch.Tensor:
        z = (x64 @ self.proj).view(-1, self.k, self.d) - self.offset
        r = torch.softmax(self.const - 0.5 * z.pow(2).sum(dim=2), dim=1)
        return ((r + 1e-5) / (r + 1e-5).sum(dim=1, keepdim=True)).float()


def _m_step(resp: torch.Tensor, codes: torch.Tensor, prior: NIWPrior):
    """pi, mus, covs from soft responsibilities with the Dirichlet and NIW priors (official M-step).

    The scatter matrices are accumulated in float32, as the official code does with its float32 codes."""
    n = len(codes)
    r_sum = resp.sum(dim=0).clamp_min(1e-12)
    pi = prior.post_pi(r_sum / n)
    mus = prior.post_mus(pi * n, (resp.T @ codes) / r_sum[:, None])
    codes32, resp32, mus32 = codes.float(), resp.float(), mus.float()
    covs = []
    for k in range(resp.shape[1]):  # a loop over clusters, not samples
        diff = codes32 - mus32[k]
        scatter = ((resp32[:, k:k + 1] * diff).T @ diff).double() / (r_sum[k] + 1e-4)
        covs.append(prior.post_cov(r_sum[k], mus[k], scatter))
    return pi, mus, _pd(torch.stack(covs))


def _sub_m_step(resp, sub_resp, codes, prior, mus_sub, covs_sub, rng):
    """Sub-cluster parameters from hard cluster and soft sub-cluster assignments (official)."""
    n, k = resp.shape
    hard = resp.argmax(dim=1)
    r_sub = torch.zeros(2 * k, dtype=codes.dtype)
    r_sub.index_add_(0, 2 * hard, sub_resp[:, 0]).index_add_(0, 2 * hard + 1, sub_resp[:, 1])
    pi_sub = prior.post_pi(r_sub / n)
    mus_sub, covs_sub = mus_sub.clone(), covs_sub.clone()
    for c in range(k):
        idx = hard == c
        rs, x = sub_resp[idx], codes[idx]
        den = rs.sum(dim=0)
        if idx.sum() < 2 or (den == 0).any() or len(torch.unique(rs.argmax(dim=1))) < 2:
            m, s, p_ = _init_sub(x if len(x) > 2 else codes, n, prior, rng)
            mus_sub[2 * c:2 * c + 2], covs_sub[2 * c:2 * c + 2], pi_sub[2 * c:2 * c + 2] = m, s, p_
            continue
        for j in range(2):
            mu = (rs[:, j:j + 1] * x).sum(dim=0) / den[j]
            diff = x - mu
            scatter = (rs[:, j:j + 1] * diff).T @ diff / (den[j] + 1e-4)
            mus_sub[2 * c + j], covs_sub[2 * c + j] = mu, prior.post_cov(den[j], mu, scatter)
    return pi_sub, prior.post_mus(pi_sub * n, mus_sub), _pd(covs_sub)


# ----------------------------------------------------------------------------------------------------
# Networks


class _ClusterNet(nn.Module):
    def __init__(self, d: int, hidden: int, k: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d, hidden), nn.Linear(hidden, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.fc2(F.relu(self.fc1(x))), dim=1)


class _SubNets(nn.Module):
    """K independent D -> H -> 2 nets as stacked tensors; sample i uses the net of its cluster z_i."""

    def __init__(self, d: int, hidden: int, k: int) -> None:
        super().__init__()
        b1, b2 = 1 / math.sqrt(d), 1 / math.sqrt(hidden * k)  # nn.Linear init of the official stacked layers
        self.w1 = nn.Parameter(torch.empty(k, d, hidden).uniform_(-b1, b1))
        self.b1 = nn.Parameter(torch.empty(k, hidden).uniform_(-b1, b1))
        self.w2 = nn.Parameter(torch.empty(k, hidden, 2).uniform_(-b2, b2))
        self.b2 = nn.Parameter(torch.empty(k, 2).uniform_(-b2, b2))

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Sub-cluster probabilities (B, 2) of each sample under the net of its cluster ``z``.

        All K nets run on every sample (two matrix products; cheaper than gathering per-sample weights);
        only the selected one gets a gradient, as with the official masked softmax."""
        k, d, h = self.w1.shape
        hidden = F.relu(x @ self.w1.permute(1, 0, 2).reshape(d, k * h) + self.b1.reshape(-1)).view(-1, k, h)
        out = torch.einsum("bkh,khc->bkc", hidden, self.w2) + self.b2
        return torch.softmax(out[torch.arange(len(z)), z], dim=1)

    def rebuild(self, rows: torch.Tensor, n_random: int) -> None:
        """Keep the nets ``rows`` (in order), append ``n_random`` new ones (official 'random': U(-1, 1), bias 0)."""
        with torch.no_grad():
            new = []
            for t in (self.w1, self.b1, self.w2, self.b2):
                fresh = torch.empty((n_random, *t.shape[1:]), dtype=t.dtype, device=t.device)
                fresh = fresh.uniform_(-1.0, 1.0) if t.dim() == 3 else fresh.zero_()
                new.append(nn.Parameter(torch.cat([t[rows], fresh])))
        self.w1, self.b1, self.w2, self.b2 = new


def _replace_last_layer(net: _ClusterNet, opt: torch.optim.Optimizer, rows: torch.Tensor) -> None:
    """New fc2 made of the given rows of the old one; its Adam state is dropped (official)."""
    old = net.fc2
    new = nn.Linear(old.in_features, len(rows)).to(old.weight.device)
    with torch.no_grad():
        new.weight.copy_(old.weight[rows])
        new.bias.copy_(old.bias[rows])
    for prm in old.parameters():
        opt.state.pop(prm, None)
    net.fc2 = new
    opt.param_groups[1]["params"] = list(new.parameters())


# ----------------------------------------------------------------------------------------------------
# Split and merge (official split_merge_operations.py)


class _State:
    """Everything DeepDPM updates: Gaussians, sub-Gaussians, the nets and their optimisers."""

    def __init__(self, codes64, p: DeepDPMParams, k: int, rng, device: str) -> None:
        d = codes64.shape[1]
        self.p, self.rng, self.k = p, rng, k
        self.prior = NIWPrior(codes64, p)
        self.mus, self.covs, self.pi = _init_kmeans(codes64, k, self.prior, rng)
        self.pi_sub = self.mus_sub = self.covs_sub = None
        self.net = _ClusterNet(d, p.hidden, k).to(device)
        self.opt = torch.optim.Adam([{"params": list(self.net.fc1.parameters())},
                                     {"params": list(self.net.fc2.parameters())}], lr=p.cluster_lr, fused=True)
        self.sub = None if p.fixed_k else _SubNets(d, p.hidden, k).to(device)
        self.sub_opt = None if p.fixed_k else torch.optim.Adam(self.sub.parameters(), lr=p.subcluster_lr, fused=True)
        self.events: list[dict] = []

    def reset_sub_opt(self) -> None:
        self.sub_opt = torch.optim.Adam(self.sub.parameters(), lr=self.p.subcluster_lr, fused=True)

    def split(self, epoch, codes, resp, sub_resp) -> None:
        hard, sub_hard = resp.argmax(dim=1), sub_resp.argmax(dim=1)
        ml = self.prior.log_marginal
        decide = torch.zeros(self.k, dtype=torch.bool)
        tests = []
        for c in range(self.k):
            in_c = hard == c
            x1, x2 = codes[in_c & (sub_hard == 0)], codes[in_c & (sub_hard == 1)]
            n1, n2 = len(x1), len(x2)
            if n1 + n2 < 5 or n1 <= 5 or n2 <= 5:
                continue
            log_h = (math.log(self.p.alpha) + math.lgamma(n1) + ml(x1, self.mus_sub[2 * c]) + math.lgamma(n2)
                     + ml(x2, self.mus_sub[2 * c + 1]) - math.lgamma(n1 + n2) - ml(codes[in_c], self.mus[c]))
            decide[c] = log_h > 0 or math.exp(min(log_h, 0.0)) > self.rng.random()
            tests.append([c, n1, n2, round(log_h, 2), bool(decide[c])])
        if not decide.any():
            self.events.append({"epoch": epoch, "op": "split", "k": self.k, "tests": tests})
            return
        keep, split = torch.nonzero(~decide).flatten(), torch.nonzero(decide).flatten()
        children = torch.stack([2 * split, 2 * split + 1], dim=1).flatten()
        self.mus = torch.cat([self.mus[keep], self.mus_sub[children]])
        self.covs = torch.cat([self.covs[keep], self.covs_sub[children]])
        self.pi = torch.cat([self.pi[keep], self.pi_sub[children]])
        keep_sub = torch.stack([2 * keep, 2 * keep + 1], dim=1).flatten()
        new_sub = [_init_sub(codes[(hard == c // 2) & (sub_hard == c % 2)], len(codes), self.prior, self.rng)
                   for c in children.tolist()]
        self.mus_sub = torch.cat([self.mus_sub[keep_sub], *[m for m, _, _ in new_sub]])
        self.covs_sub = torch.cat([self.covs_sub[keep_sub], *[s for _, s, _ in new_sub]])
        self.pi_sub = torch.cat([self.pi_sub[keep_sub], *[q for _, _, q in new_sub]])
        _replace_last_layer(self.net, self.opt, torch.cat([keep, split.repeat_interleave(2)]))
        self.sub.rebuild(keep, 2 * len(split))
        self.reset_sub_opt()
        self.k += len(split)
        self.events.append({"epoch": epoch, "op": "split", "k": self.k, "tests": tests})

    def merge(self, epoch, codes, resp) -> None:
        from sklearn.neighbors import NearestNeighbors

        hard = resp.argmax(dim=1)
        ml = self.prior.log_marginal
        nn_graph = NearestNeighbors(n_neighbors=min(3, self.k)).fit(self.mus.numpy()).kneighbors_graph(self.mus.numpy())
        proposals = np.argwhere(nn_graph.toarray() - np.eye(self.k) > 0)  # row-major, as official
        free, pairs, best, tests = set(range(self.k)), [], [], []
        for a, b in proposals:
            if a not in free or b not in free:
                continue
            ia, ib = hard == a, hard == b
            na, nb = int(ia.sum()), int(ib.sum())
            mu = (na * self.mus[a] + nb * self.mus[b]) / (na + nb) if na + nb else (self.mus[a] + self.mus[b]) / 2
            lla, llb = ml(codes[ia], self.mus[a]), ml(codes[ib], self.mus[b])
            if na + nb:
                log_h = (math.lgamma(na + nb) - math.log(self.p.alpha) - (math.lgamma(na) if na else 0.0)
                         - (math.lgamma(nb) if nb else 0.0) + ml(codes[ia | ib], mu) - lla - llb)
            else:
                log_h = 1.0
            accept = log_h > 0 or math.exp(min(log_h, 0.0)) > self.rng.random()
            tests.append([int(a), int(b), na, nb, round(log_h, 2), accept])
            if accept:
                free -= {a, b}
                pairs.append((int(a), int(b)))
                best.append(int(b) if lla < llb else int(a))
        if not pairs:
            self.events.append({"epoch": epoch, "op": "merge", "k": self.k, "tests": tests})
            return
        merged = torch.zeros(self.k, dtype=torch.bool)
        merged[[i for pr in pairs for i in pr]] = True
        keep = torch.nonzero(~merged).flatten()
        n = len(codes)
        new_mus, new_covs, new_pi, sub = [], [], [], []
        for a, b in pairs:
            ia, ib = hard == a, hard == b
            na, nb = int(ia.sum()), int(ib.sum())
            mu = (na * self.mus[a] + nb * self.mus[b]) / (na + nb) if na + nb else (self.mus[a] + self.mus[b]) / 2
            r = resp[:, a] + resp[:, b]
            diff = codes - mu  # the official code subtracts the scalar mu[0] here (an indexing slip); not copied
            scatter = (r[:, None] * diff).T @ diff / (r.sum() + 1e-4)
            pi = self.pi[a] + self.pi[b]
            new_covs.append(self.prior.post_cov(r.sum(), mu, scatter))
            new_mus.append(self.prior.post_mus(pi.reshape(1) * n, mu.unsqueeze(0))[0])
            new_pi.append(pi)
            x = codes[ia | ib]
            sub.append(_init_sub(x, n, self.prior, self.rng) if len(x) > 5
                       else (self.mus[[a, b]], self.covs[[a, b]], self.pi[[a, b]]))
        keep_sub = torch.stack([2 * keep, 2 * keep + 1], dim=1).flatten()
        self.mus = torch.cat([self.mus[keep], torch.stack(new_mus)])
        self.covs = _pd(torch.cat([self.covs[keep], torch.stack(new_covs)]))
        self.pi = torch.cat([self.pi[keep], torch.stack(new_pi)])
        self.mus_sub = torch.cat([self.mus_sub[keep_sub], *[m for m, _, _ in sub]])
        self.covs_sub = torch.cat([self.covs_sub[keep_sub], *[s for _, s, _ in sub]])
        self.pi_sub = torch.cat([self.pi_sub[keep_sub], *[q for _, _, q in sub]])
        rows = torch.cat([keep, torch.as_tensor(best)])
        _replace_last_layer(self.net, self.opt, rows)
        self.sub.rebuild(rows, 0)  # merged clusters keep the sub-net of their more likely member
        self.reset_sub_opt()
        self.k -= len(pairs)
        self.events.append({"epoch": epoch, "op": "merge", "k": self.k, "tests": tests})


# ----------------------------------------------------------------------------------------------------
# Training


def _is_proposal_epoch(epoch: int, p: DeepDPMParams) -> bool:
    return epoch >= p.start_split_merge and (epoch - p.start_split_merge) % p.split_merge_every == 0


def fit_deepdpm(x: np.ndarray, p: DeepDPMParams, n_clusters: int, seed: int, log=lambda m: None) -> dict:
    """Fit DeepDPM to the rows of ``x`` (already transformed) and predict them.

    Runs on the CPU (the nets are tiny; the cost is in Python and the E/M steps, as in the official code).

    Returns
    -------
    dict
        ``labels`` (N,); ``k_history`` (the model's K after epoch 0, 1, ...); ``sizes_history`` (per
        epoch, the number of samples the cluster net assigns to each cluster); ``events`` (every split or
        merge proposal epoch with its tests: ``[cluster, n1, n2, log H, accepted]`` for splits,
        ``[a, b, n_a, n_b, log H, accepted]`` for merges); ``final_k``; ``pu_time_s``; ``pu_stats``.
    """
    if p.start_sub_clustering < 2 or p.start_split_merge < p.start_sub_clustering:
        raise ValueError("need 2 <= start_sub_clustering <= start_split_merge, got "
                         f"{p.start_sub_clustering} and {p.start_split_merge}")
    # numpy/sklearn BLAS and OpenMP pools use as many threads as torch: a multi-threaded 64 x 64 eigh in
    # sklearn's PCA runs ~60x slower than a single-threaded one on a busy 2-core machine
    with threadpool_limits(limits=max(1, torch.get_num_threads())):
        return _fit(x, p, n_clusters, seed, log)


def _fit(x: np.ndarray, p: DeepDPMParams, n_clusters: int, seed: int, log) -> dict:
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(int(seed))
    codes = torch.as_tensor(np.asarray(x, dtype=np.float32))
    codes64 = codes.double()
    n = len(codes)
    # epoch 0: gather the codes and initialise the Gaussians (official 'gather_codes' stage)
    st = _State(codes64, p, n_clusters if p.fixed_k else p.init_k, rng, "cpu")
    reg = PURegulariser(p.pu_params()) if p.pu else None
    last_op, k_history, sizes_history = "merge", [st.k], []
    pu_stats = {"n_p": 0, "n_u": 0, "defitting_steps": 0, "steps": 0}
    pu_from = p.pu_first_epoch()
    for epoch in range(1, p.max_epochs):
        if p.lr_step:  # StepLR stepped once per epoch, epoch 0 included (Lightning's default interval)
            for g in st.opt.param_groups:
                g["lr"] = p.cluster_lr * p.lr_gamma ** (epoch // p.lr_step)
        train_sub = st.sub is not None and epoch >= p.start_sub_clustering
        resp = torch.empty(n, st.k, dtype=torch.float64)
        sub_resp = torch.zeros(n, 2, dtype=torch.float64)
        e_step = _EStep(st.mus, st.covs, st.pi)
        mus_sub_pairs = st.mus_sub.view(st.k, 2, -1).float() if train_sub else None
        st.net.train()
        for idx in torch.randperm(n, generator=gen).split(p.batch_size):
            xb = codes[idx]
            r = st.net(xb)
            with torch.no_grad():
                r_gmm = e_step(codes64[idx])
            r_eps = (r + 1e-5) / (r + 1e-5).sum(dim=1, keepdim=True)
            loss = (r_gmm * (torch.log(r_gmm) - torch.log(r_eps))).sum() / len(idx)
            if reg is not None and epoch >= pu_from:
                with reg.timer:
                    conf, target = sharpen(r_gmm, p.pu_temperature).max(dim=1)
                    term = reg.risk(conf, *multiclass_items(r, target, p.pu_unlabeled, p.pu_loss),
                                    base_count=len(idx))  # the KL loss is a batch mean
                loss = loss + term.objective
                pu_stats["n_p"] += term.n_p
                pu_stats["n_u"] += term.n_u
                pu_stats["defitting_steps"] += term.defitting
                pu_stats["steps"] += 1
            r = r.detach()
            resp[idx] = r.double()
            if train_sub:  # isotropic sub-cluster loss; disjoint parameters, so one backward serves both nets
                z = r.argmax(dim=1)
                s = st.sub(xb, z)
                d2 = (xb.unsqueeze(1) - mus_sub_pairs[z]).pow(2).sum(dim=2)
                loss = loss + (s * d2).sum() / len(idx)
                sub_resp[idx] = s.detach().double()
                st.sub_opt.zero_grad(set_to_none=True)
            st.opt.zero_grad(set_to_none=True)
            loss.backward()
            st.opt.step()
            if train_sub:
                st.sub_opt.step()
        # epoch end, in the official order: M-step, sub-cluster parameters, split or merge
        splitting = st.sub is not None and _is_proposal_epoch(epoch, p)
        frozen = epoch < p.start_computing_params or (
            st.sub is not None and any(_is_proposal_epoch(epoch - j, p) for j in range(1, p.freeze_epochs + 1)))
        if not frozen:
            st.pi, st.mus, st.covs = _m_step(resp, codes64, st.prior)
        if st.sub is not None:
            if epoch + 1 == p.start_sub_clustering:
                subs = [_init_sub(codes64[resp.argmax(dim=1) == c] if (resp.argmax(dim=1) == c).sum() > 2 else codes64,
                                  n, st.prior, rng) for c in range(st.k)]
                st.mus_sub = torch.cat([m for m, _, _ in subs])
                st.covs_sub = torch.cat([s for _, s, _ in subs])
                st.pi_sub = torch.cat([q for _, _, q in subs])
            elif epoch >= p.start_sub_clustering and not frozen:
                st.pi_sub, st.mus_sub, st.covs_sub = _sub_m_step(resp, sub_resp, codes64, st.prior,
                                                                 st.mus_sub, st.covs_sub, rng)
        if splitting and not frozen:
            if last_op == "merge":
                last_op = "split"
                st.split(epoch, codes64, resp, sub_resp)
            else:
                last_op = "merge"
                st.merge(epoch, codes64, resp)
        k_history.append(st.k)
        sizes_history.append(torch.bincount(resp.argmax(dim=1), minlength=resp.shape[1]).tolist())
    st.net.eval()
    with torch.no_grad():
        labels = st.net(codes).argmax(dim=1).numpy()
    log(f"DeepDPM: {p.max_epochs} epochs, model K {st.k}, clusters used {len(np.unique(labels))}")
    return {"labels": labels, "k_history": k_history, "sizes_history": sizes_history, "events": st.events,
            "final_k": st.k, "pu_time_s": reg.timer.seconds if reg is not None else 0.0, "pu_stats": pu_stats}


def _features(data, p: DeepDPMParams, idx: np.ndarray) -> np.ndarray:
    """The rows DeepDPM clusters: embeddings (text) or X (features), whitened, then normalised."""
    if data.modality == "text":
        from .dac import load_text_embeddings

        x = load_text_embeddings(np.asarray(data.X, dtype=object), p.encoder, data.name)[idx]
    elif data.modality == "features":
        x = np.asarray(data.X, dtype=np.float32)[idx]
    else:
        raise ValueError(f"method 'deepdpm' needs text or features; {data.name!r} has modality {data.modality!r}")
    if p.whiten_dim:
        from dcrepro.data import whiten  # BERT-whitening, fitted on the rows being clustered

        x, _ = whiten(x, p.whiten_dim)
    if p.input_transform == "normalize":
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return np.asarray(x, dtype=np.float32)


def split_log_h(events: list[dict]) -> list[list]:
    """Every split proposal's log Hastings ratio: ``[epoch, K after the proposal epoch, cluster, n1, n2,
    log H, accepted]`` rows.

    log H < 0 rejects a split unless a uniform draw falls below H; a full-covariance NIW marginal in 64-d
    needs large sub-clusters to favour a split (notes: audit of DBPedia's K = 4)."""
    return [[e["epoch"], e["k"], *t] for e in events if e["op"] == "split" for t in e["tests"]]


@register_method("deepdpm", params=DeepDPMParams)
def run_deepdpm(data, params: dict, ctx: RunContext) -> dict[str, RowOutput]:
    """Fit DeepDPM (optionally + DCGLU) on ``fit_split`` and predict the same rows (official protocol).

    Returns the row 'deepdpm' with ``k_found`` (distinct predicted clusters, the official final K),
    ``time_s`` (whole run, features included) and ``pu_time_s``. Runs on the CPU whatever ``ctx.device``.
    """
    t0 = time.perf_counter()
    p = params_from_dict(DeepDPMParams, params, where="method 'deepdpm'")
    if p.fit_split not in data.splits:
        raise ValueError(f"{data.name!r} has no split {p.fit_split!r}; available: {sorted(data.splits)}")
    seed_everything(ctx.seed)
    idx = data.splits[p.fit_split]
    x = _features(data, p, idx)
    prep_s = time.perf_counter() - t0
    fit = fit_deepdpm(x, p, int(ctx.n_clusters), int(ctx.seed), ctx.log)
    elapsed = time.perf_counter() - t0
    k_found = int(len(np.unique(fit["labels"])))
    metrics = {"k_found": float(k_found), "time_s": elapsed, "pu_time_s": fit["pu_time_s"],
               "time_ratio": fit["pu_time_s"] / elapsed, "prep_time_s": prep_s}
    if p.pu:
        st = fit["pu_stats"]
        n_items = max(st["n_p"] + st["n_u"], 1)
        metrics.update(defit_share=st["defitting_steps"] / max(st["steps"], 1), p_share=st["n_p"] / n_items,
                       u_share=st["n_u"] / n_items)
    info = {"params": asdict(p), "final_k": fit["final_k"], "k_history": fit["k_history"],
            "final_sizes": fit["sizes_history"][-1] if fit["sizes_history"] else None,
            "events": fit["events"], "split_log_h": split_log_h(fit["events"]), "pu_stats": fit["pu_stats"],
            "device_used": "cpu", "n_fit": int(len(idx))}
    return {"deepdpm": RowOutput(labels=fit["labels"], eval_index=idx, metrics=metrics, info=info)}
