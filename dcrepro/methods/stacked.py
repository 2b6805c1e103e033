"""S copies of one network trained at once: the seeds-batched path of the AE methods and DAC's head.

:class:`Stacked` holds the parameters and buffers of S modules of one architecture stacked on a leading seed
axis (``torch.func.stack_module_state``) and runs them with ``vmap(functional_call)``: one kernel launch per
layer for all seeds instead of one per seed, which is what pays on a GPU where these small networks are bound
by launches. Inputs carry the seed axis first (``x[s]`` is seed s's batch, each seed keeps its own batch
order). BatchNorm's running statistics are stacked buffers, updated in place per seed.

Training: sum the per-seed losses (never average them) and use an element-wise optimiser (SGD, Adam, AdamW)
on :meth:`Stacked.parameters`; each seed then follows exactly its own gradient. Anything that couples entries
(gradient clipping by global norm, line searches) must be done per seed.

Numerics: a stacked layer runs other kernels than the one-seed layer (e.g. grouped convolutions), so results
agree with the one-seed path to float reassociation, not bit for bit. Adam training of these AEs is chaotic at
that level (measured: a 1e-6 relative perturbation of the gradients moves the codes by ~5 % after 5 steps), so
float32 runs of the two paths are equal in distribution, not per sample; in float64
(``torch.set_default_dtype(torch.float64)``) they give the same labels, which ``tests/test_batched.py`` checks.
"""
from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

__all__ = ["Stacked", "stack_seeds"]


class _Call(nn.Module):
    """Calls ``getattr(module, name)`` as its forward, so ``functional_call`` can run any method of a module."""

    def __init__(self, module: nn.Module, name: str):
        super().__init__()
        self.m = module
        self.name = name

    def forward(self, *args, **kwargs):
        return getattr(self.m, self.name)(*args, **kwargs)


class Stacked:
    """S modules of one architecture as stacked tensors; ``stacked(x)`` = each module's forward on ``x[s]``.

    Parameters
    ----------
    modules : list of nn.Module
        Same architecture, already initialised (each seed as its one-seed path initialises it).
    """

    def __init__(self, modules: list[nn.Module]):
        if not modules:
            raise ValueError("Stacked needs at least one module")
        params, buffers = stack_module_state(modules)
        self.params = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
        self.buffers = {k: v.detach().clone() for k, v in buffers.items()}
        self.n = len(modules)
        self._base = copy.deepcopy(modules[0]).to("meta")
        self._calls: dict[str, _Call] = {}

    # -- module-like API -----------------------------------------------------------------------------------
    def parameters(self) -> list[torch.Tensor]:
        return list(self.params.values())

    def named_parameters(self):
        return self.params.items()

    def train(self, mode: bool = True) -> "Stacked":
        self._base.train(mode)
        return self

    def eval(self) -> "Stacked":
        return self.train(False)

    @property
    def training(self) -> bool:
        return self._base.training

    def to(self, device) -> "Stacked":
        self.params = {k: v.detach().to(device).requires_grad_(True) for k, v in self.params.items()}
        self.buffers = {k: v.to(device) for k, v in self.buffers.items()}
        return self

    def __call__(self, *args, **kwargs) -> Any:
        return self.call("forward", *args, **kwargs)

    def call(self, method: str, *args, in_dims: Any = 0, **kwargs) -> Any:
        """``getattr(module_s, method)(*args[s])`` for every seed s at once (``in_dims`` as ``vmap`` takes it:
        0 = every positional argument has the seed axis first; None entries are shared by all seeds)."""
        wrapper = self._calls.get(method)
        if wrapper is None:
            wrapper = self._calls[method] = _Call(self._base, method)
        wrapper.train(self._base.training)
        params = {f"m.{k}": v for k, v in self.params.items()}
        buffers = {f"m.{k}": v for k, v in self.buffers.items()}

        def one(p, b, *a):
            return functional_call(wrapper, (p, b), a, kwargs)

        dims = (0, 0, *(in_dims if isinstance(in_dims, tuple) else (in_dims,) * len(args)))
        return vmap(one, in_dims=dims, randomness="different")(params, buffers, *args)

    # -- conversion ------------------------------------------------------------------------------------
    def state_dict(self, s: int) -> dict[str, torch.Tensor]:
        """Seed ``s``'s state, loadable into the one-seed module (``module.load_state_dict``)."""
        out = {k: v[s].detach().clone() for k, v in self.params.items()}
        out.update({k: v[s].clone() for k, v in self.buffers.items()})
        return out

    def load_state_dict(self, s: int, state: dict[str, torch.Tensor]) -> None:
        """Overwrite seed ``s``'s parameters and buffers with a one-seed module's ``state_dict()``."""
        with torch.no_grad():
            for k, v in state.items():
                (self.params if k in self.params else self.buffers)[k][s].copy_(v)

    def module(self, s: int, template: nn.Module) -> nn.Module:
        """A one-seed copy of seed ``s`` (``template`` gives the architecture; it is deep-copied)."""
        m = copy.deepcopy(template)
        m.load_state_dict(self.state_dict(s))
        m.train(self.training)
        return m


def stack_seeds(build, seeds: list[int], seed_fn) -> Stacked:
    """Build one module per seed exactly as the one-seed path does (``seed_fn(seed)`` seeds the RNGs, then
    ``build()`` initialises) and stack them."""
    modules = []
    for s in seeds:
        seed_fn(s)
        modules.append(build())
    return Stacked(modules)
