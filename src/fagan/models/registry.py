"""The named members of the model family.

``GENERATORS`` maps each name to its :class:`GeneratorConfig`. Every entry is the default
backbone with only the switches ``lffb``, ``channel_attention``, ``self_attention`` and
``fusion`` changed, so a comparison between two names is a comparison of those switches.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from fagan.models.config import DiscriminatorConfig, GeneratorConfig
from fagan.models.discriminator import Discriminator
from fagan.models.generator import Generator
from fagan.scales import check_scale


def _switches(lffb: bool, ca: bool, sa: bool, fusion: str = "weighted") -> GeneratorConfig:
    return GeneratorConfig(lffb=lffb, channel_attention=ca, self_attention=sa, fusion=fusion)  # type: ignore[arg-type]


GENERATORS: dict[str, GeneratorConfig] = {
    # The paper's model and its baselines (Tables 1-5).
    "fagan": _switches(lffb=True, ca=True, sa=True),
    "srgan": _switches(lffb=False, ca=False, sa=False),
    "ca-srgan": _switches(lffb=False, ca=True, sa=False),
    "sa-srgan": _switches(lffb=False, ca=False, sa=True),
    # Table 7: direct instead of weighted fusion.
    "fagan-direct": _switches(lffb=True, ca=True, sa=True, fusion="direct"),
    # Table 6: the remaining LFFB / CA / SA combinations, named by what they have.
    "ca-sa-srgan": _switches(lffb=False, ca=True, sa=True),
    "lffb": _switches(lffb=True, ca=False, sa=False),
    "lffb-ca": _switches(lffb=True, ca=True, sa=False),
    "lffb-sa": _switches(lffb=True, ca=False, sa=True),
}

# The eight LFFB / CA / SA combinations of Table 6, from none to all.
ABLATIONS: tuple[str, ...] = (
    "srgan",
    "ca-srgan",
    "sa-srgan",
    "ca-sa-srgan",
    "lffb",
    "lffb-ca",
    "lffb-sa",
    "fagan",
)

# The methods of Tables 1-5, in the paper's order (bicubic is evaluated beside them).
BASELINES: tuple[str, ...] = ("srgan", "ca-srgan", "sa-srgan", "fagan")


def generator_config(name: str, **overrides: Any) -> GeneratorConfig:
    """The named configuration with ``overrides`` applied; unknown names or keys are errors."""
    if name not in GENERATORS:
        raise ValueError(f"unknown generator {name!r}; valid names: {', '.join(GENERATORS)}")
    fields = {f.name for f in dataclasses.fields(GeneratorConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(
            f"unknown generator option(s) {', '.join(unknown)}; valid: {', '.join(sorted(fields))}"
        )
    return dataclasses.replace(GENERATORS[name], **overrides)


def build_generator(name: str, scale: int, **overrides: Any) -> Generator:
    """Build the named generator for a x2, x4 or x8 ``scale``."""
    check_scale(scale)
    return Generator(generator_config(name, **overrides), scale)


def build_discriminator(**overrides: Any) -> Discriminator:
    """Build the spectral-normalised SRGAN discriminator."""
    fields = {f.name for f in dataclasses.fields(DiscriminatorConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(
            f"unknown discriminator option(s) {', '.join(unknown)}; valid: {', '.join(sorted(fields))}"
        )
    return Discriminator(DiscriminatorConfig(**overrides))
