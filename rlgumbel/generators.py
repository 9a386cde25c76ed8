"""Random streams of a population: member k draws only from its own generator, the numbers a
single run with its seed would draw, whatever the other members do."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import Tensor


class MemberGenerators:
    """One `torch.Generator` per member of a population.

    A tensor drawn through `uniform_` or `randint` with these has the members along dim 0;
    member k's slice is what generator k alone would give for the slice's shape.

    Args:
        seeds: the members' seeds, one generator each.
    """

    def __init__(self, seeds: Sequence[int]) -> None:
        self.generators = [torch.Generator().manual_seed(int(seed)) for seed in seeds]

    def __len__(self) -> int:
        return len(self.generators)

    def __getitem__(self, member: int) -> torch.Generator:
        return self.generators[member]

    def __iter__(self) -> Iterator[torch.Generator]:
        return iter(self.generators)


Generator = torch.Generator | MemberGenerators | None


def uniform_(tensor: Tensor, low: float, high: float, generator: Generator) -> Tensor:
    """Fill `tensor` with uniform values in [low, high); per member along dim 0 for `MemberGenerators`."""
    if isinstance(generator, MemberGenerators):
        for part, member in zip(tensor, generator):
            part.uniform_(low, high, generator=member)
        return tensor
    return tensor.uniform_(low, high, generator=generator)


def rand(shape: Sequence[int], generator: Generator, device: torch.device | str = "cpu") -> Tensor:
    """Uniform values in [0, 1) of `shape`; per member along dim 0 for `MemberGenerators`."""
    return uniform_(torch.empty(tuple(shape), device=device), 0.0, 1.0, generator)


def randint(high: int, shape: Sequence[int], generator: Generator, device: torch.device | str = "cpu") -> Tensor:
    """Whole numbers uniform in [0, high) of `shape`, int64; per member along dim 0 for `MemberGenerators`."""
    if isinstance(generator, MemberGenerators):
        if len(shape) == 0 or shape[0] != len(generator):
            raise ValueError(f"a draw for {len(generator)} members needs them along dim 0, got shape {list(shape)}")
        return torch.stack([torch.randint(high, tuple(shape[1:]), generator=g, device=device) for g in generator])
    return torch.randint(high, tuple(shape), generator=generator, device=device)


def member_generator(generator: Generator, member: int) -> torch.Generator | None:
    """Member `member`'s generator: its own of `MemberGenerators`, else `generator` itself."""
    return generator[member] if isinstance(generator, MemberGenerators) else generator
