"""Acquisition style: how a (simulated) scanner renders tissue into a B-mode volume.

A style is a frozen dataclass; YAML files hold one mapping of field -> value (fields may be
omitted, they then take the defaults, which equal ``sim/styles/default.yaml``). Units: mm, dB,
MHz. Two styles with the same field values have the same :meth:`AcquisitionStyle.digest`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import yaml

from .errors import PhantomError

__all__ = ['RANDOM_STYLE_RANGES', 'AcquisitionStyle', 'default_style', 'load_style', 'random_style', 'save_style',
           'style_path']

# (lower, upper) inclusive bounds per numeric field; checked on load and on construction.
_BOUNDS: dict[str, tuple[float, float]] = {
    'voxel_mm': (0.4, 3.0),
    'psf_axial_mm': (0.1, 5.0),
    'psf_lateral_mm': (0.1, 8.0),
    'psf_elevation_mm': (0.1, 8.0),
    'frequency_mhz': (1.0, 10.0),
    'attenuation_db_cm_mhz': (0.0, 2.0),
    'tgc_compensation': (0.0, 1.2),
    'gain_db': (-30.0, 30.0),
    'dynamic_range_db': (10.0, 100.0),
    'noise_db': (-90.0, 0.0),
    'gamma': (0.2, 5.0),
    'near_field_haze': (0.0, 5.0),
    'specular_gain': (0.0, 20.0),
    'wall_anisotropy': (0.0, 0.95),
    'cavity_clutter': (0.0, 1.0),
    'trabeculation': (0.0, 3.0),
}

# fields added after the first styles were cached: they enter the digest only when they differ from
# their defaults, so a style that leaves them alone keeps its digest (and its cached phantoms)
_LATER_FIELDS = ('specular_gain', 'wall_anisotropy', 'cavity_clutter', 'trabeculation')


@dataclass(frozen=True)
class AcquisitionStyle:
    """Scanner rendering parameters (one "vendor").

    name:                  label stored in phantom metadata
    voxel_mm:              isotropic voxel size of the generated volume (resolution of the grid)
    psf_axial_mm, psf_lateral_mm, psf_elevation_mm:
                           Gaussian point-spread-function sigmas along the beam (volume z) and
                           across it (volume x, y)
    frequency_mhz, attenuation_db_cm_mhz:
                           round-trip attenuation 2 * a * f dB/cm with depth from the apical window
    tgc_compensation:      fraction of that attenuation the time-gain compensation undoes
    gain_db:               overall gain added before log compression
    dynamic_range_db:      displayed dynamic range of the log compression
    noise_db:              electronic noise amplitude relative to nominal myocardium (0 dB)
    gamma:                 grey-level curve exponent after log compression (1 = linear)
    near_field_haze:       amplitude of stationary near-field clutter under the probe
    specular_gain:         brightness added at blood/tissue interfaces facing the beam (the
                           bright endocardial line; 0: none)
    wall_anisotropy:       share of the myocardial backscatter that depends on the beam angle:
                           walls along the beam keep ``1 - wall_anisotropy`` of their amplitude
                           (lateral-wall dropout; 0: isotropic)
    cavity_clutter:        side-lobe haze in the blood next to bright tissue, relative to that
                           tissue's amplitude (blurs the endocardial border; 0: clean cavities)
    trabeculation:         amplitude (x myocardium) of thin muscle strands in the ventricles'
                           blood within a few mm of the endocardium (0: smooth walls)
    """

    name: str = 'default'
    voxel_mm: float = 1.0
    psf_axial_mm: float = 0.45
    psf_lateral_mm: float = 1.1
    psf_elevation_mm: float = 1.3
    frequency_mhz: float = 2.5
    attenuation_db_cm_mhz: float = 0.5
    tgc_compensation: float = 0.85
    gain_db: float = 0.0
    dynamic_range_db: float = 55.0
    noise_db: float = -42.0
    gamma: float = 1.0
    near_field_haze: float = 0.6
    specular_gain: float = 8.0
    wall_anisotropy: float = 0.0
    cavity_clutter: float = 0.0
    trabeculation: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise PhantomError(f'style field "name": expected a non-empty string, got {self.name!r}')
        for key, (low, high) in _BOUNDS.items():
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise PhantomError(f'style field "{key}": expected a finite number, got {value!r}')
            if not low <= value <= high:
                raise PhantomError(f'style field "{key}": {value} is outside [{low}, {high}]')
            object.__setattr__(self, key, float(value))

    def as_dict(self) -> dict:
        """Plain mapping field -> value (JSON/YAML-serialisable)."""
        return dataclasses.asdict(self)

    def digest(self) -> str:
        """Short stable hash of the field values (cache keys); the rendering fields added later
        (specular gain, wall anisotropy, cavity clutter, trabeculation) count only when they
        differ from their defaults, so older styles keep their digests."""
        values = self.as_dict()
        for key in _LATER_FIELDS:
            if values[key] == _DEFAULTS[key]:
                del values[key]
        text = json.dumps(values, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


_DEFAULTS = {f.name: f.default for f in dataclasses.fields(AcquisitionStyle)}


def style_path(name: str) -> Path:
    """Path of a style shipped in ``sim/styles/`` (``name`` without ``.yaml``)."""
    return Path(str(resources.files('echoposed_sim') / 'styles' / f'{name}.yaml'))


def load_style(path: str | Path | None = None) -> AcquisitionStyle:
    """Read a style YAML file (``None``: the shipped ``default.yaml``).

    Raises PhantomError naming the file and the bad field when the file is missing, is not a
    mapping, holds unknown fields, or a value has the wrong type or range.
    """
    path = style_path('default') if path is None else Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise PhantomError(f'{path}: cannot read style file ({exc.strerror or exc})') from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PhantomError(f'{path}: not valid YAML ({exc})') from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise PhantomError(f'{path}: a style file must hold a mapping of field: value, '
                           f'got {type(raw).__name__}')
    known = {f.name for f in dataclasses.fields(AcquisitionStyle)}
    unknown = sorted(str(k) for k in raw if k not in known)
    if unknown:
        raise PhantomError(f'{path}: unknown style field(s) {unknown}; expected some of {sorted(known)}')
    try:
        return AcquisitionStyle(**raw)
    except PhantomError as exc:
        raise PhantomError(f'{path}: {exc}') from None


def save_style(style: AcquisitionStyle, path: str | Path) -> Path:
    """Write ``style`` as YAML to ``path``; :func:`load_style` reads it back equal."""
    path = Path(path)
    path.write_text(yaml.safe_dump(style.as_dict(), sort_keys=False))
    return path


def default_style() -> AcquisitionStyle:
    """The style in the shipped ``sim/styles/default.yaml``."""
    return load_style(None)


#: Uniform ranges of :func:`random_style` per field (units of :class:`AcquisitionStyle`): wide enough to hold
#: the shipped styles and scanners coarser, noisier, darker or flatter than any of them. ``voxel_mm`` stays 1.
RANDOM_STYLE_RANGES: dict[str, tuple[float, float]] = {
    'psf_axial_mm': (0.35, 1.2),
    'psf_lateral_mm': (0.8, 3.0),
    'psf_elevation_mm': (1.0, 3.5),
    'frequency_mhz': (1.5, 3.5),
    'attenuation_db_cm_mhz': (0.3, 0.8),
    'tgc_compensation': (0.5, 1.0),
    'gain_db': (-4.0, 10.0),
    'dynamic_range_db': (35.0, 65.0),
    'noise_db': (-48.0, -24.0),
    'gamma': (0.6, 1.6),
    'near_field_haze': (0.0, 2.5),
    # tissue look, from the earlier bright-edged walls (specular 8, isotropic, clean cavities) to the
    # banded walls of `clinical.yaml` and beyond; drawn after the fields above, which keep their draws
    'specular_gain': (0.0, 8.0),
    'wall_anisotropy': (0.0, 0.85),
    'cavity_clutter': (0.0, 0.2),
    'trabeculation': (0.0, 2.0),
}


def random_style(seed: int) -> AcquisitionStyle:
    """A scanner drawn for phantom patient ``seed``: each field uniform in :data:`RANDOM_STYLE_RANGES`, from a
    stream of its own (the same seed always gives the same style; the anatomy does not depend on it).
    Named ``random_<seed>``. For training on many scanners (``phantom_style: random``)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise PhantomError(f'random_style: seed must be a non-negative int, got {seed!r}')
    rng = np.random.default_rng([int(seed), 0x5717E])
    return AcquisitionStyle(name=f'random_{seed}',
                            **{k: float(rng.uniform(lo, hi)) for k, (lo, hi) in RANDOM_STYLE_RANGES.items()})
