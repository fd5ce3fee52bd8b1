"""Bias adjustment of climate projections against the reference reanalysis.

Projections (CMIP6-, CORDEX-like) drift from the reference reanalysis (ERA5) in
mean, variance and, for precipitation, in the number of dry days.  The deep
ensemble was trained on the reanalysis, so every projection is first mapped onto
the reanalysis climate over an **overlap period** with xsdba's trend-preserving
**Quantile Delta Mapping** (QDM, Cannon et al. 2015): each value is corrected by
the reference-minus-model difference (``kind="+"``) or ratio (``kind="*"``) *at its
own quantile*, so the model's projected change of every quantile survives.  For
skewed multiplicative variables (rain, wind speed) QDM alone inflates the change
of the *mean* (sampling noise of the model's quantiles, see
``docs/bias-adjustment.md``), so each adjusted window is then rescaled per group
to the model's own change of the mean (PresRat, Pierce et al. 2015).  Every
option is per variable (:class:`VariableAdjustment`), and run catalogs reach all
of them through :class:`AdjustmentOptions`.

Input contract (produced by :mod:`cascadia.sources.predictors`): canonical daily
datasets with dims ``(time, region)`` (any other dims are carried along),
``numpy.datetime64`` stamps at 00:00 on the standard calendar, each variable with
a ``units`` attribute (``tas`` K, ``hurs`` %, ``huss`` 1, ``pr`` kg m-2 s-1,
``uas``/``vas``/``sfcWind`` m s-1, ``psl`` Pa, ``rsds`` W m-2).

Typical use::

    cfg = BiasAdjustmentConfig(overlap_start=1985, overlap_end=2014)
    fitted = fit(era5, cmip_historical, cfg)      # one QDM per variable
    adjusted = fitted.adjust(cmip_continuous)     # 1950-2100 in 30-year windows
    fitted.to_dataset().to_zarr("qdm.zarr", zarr_format=2, consolidated=True)
    again = FittedAdjustment.from_dataset(xr.open_zarr("qdm.zarr"))

The first training or adjustment in a process pays numba's compilation of
xsdba's quantile kernels (~5-20 s, partly cached on disk by numba); later calls
take about a second.  Details, measured numbers and pitfalls are in
``docs/bias-adjustment.md``.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import pandas as pd
import xarray as xr
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "DEFAULT_ADJUSTMENTS",
    "AdjustmentOptions",
    "BiasAdjustmentConfig",
    "FittedAdjustment",
    "VariableAdjustment",
    "diagnostics",
    "fit",
]

_GROUP_RE = re.compile(r"^time(\.month|\.season|\.dayofyear(:(?P<window>\d+))?)?$")
_DEFAULT_DOY_WINDOW = 31
_STORE_ATTR = "cascadia_bias_adjustment"
_STORE_VERSION = 2
#: xsdba's trained parameters, then cascadia's group means for mean-change preservation.
_XSDBA_VARS = ("af", "hist_q", "P0_ref", "P0_hist", "pth")
_MEAN_VARS = ("hist_mean", "hist_mean_adjusted")
_PARAM_VARS = (*_XSDBA_VARS, *_MEAN_VARS)
# Variables with the same settings are stacked along this dimension and adjusted together.
_TOGETHER = "adjusted_together"
_WATER_DENSITY = 1000.0  # kg m-3: turns a depth rate (mm/day) into a mass flux


# ------------------------------------------------------------------------ config


def _check_group(value: str) -> str:
    match = _GROUP_RE.match(value)
    if match is None:
        raise ValueError(
            f"unknown group {value!r}: use 'time', 'time.month', 'time.season' or "
            "'time.dayofyear:N' (N-day window, N odd)"
        )
    window = match.group("window")
    if window is not None and (int(window) < 1 or int(window) % 2 == 0):
        raise ValueError(f"group {value!r}: the day-of-year window must be odd and ≥ 1")
    return value


def _parse_quantity(text: str) -> Any:
    """A pint quantity from ``"<number> <units>"`` (xclim's unit registry, loaded anyway)."""
    from xclim.core.units import str2pint

    quantity = str2pint(text)
    if not np.isfinite(float(quantity.magnitude)):
        raise ValueError("not a finite number")
    return quantity


def _check_quantity(text: str) -> None:
    """Validate ``"<number> <units>"`` with cf_xarray's CF units registry: the one xclim
    extends, at a third of xclim's import time, so a catalog validates in about a second."""
    from cf_xarray.units import units

    quantity = units.Quantity(text)
    if not np.isfinite(float(quantity.magnitude)):
        raise ValueError("not a finite number")


class VariableAdjustment(BaseModel):
    """How one variable is adjusted (xsdba ``QuantileDeltaMapping`` options and more).

    Attributes
    ----------
    kind
        ``"+"`` (additive: the reference-minus-model difference at each quantile;
        temperature, humidity, pressure, wind components) or ``"*"`` (multiplicative:
        the ratio; quantities bounded by zero whose errors scale with their size,
        precipitation and wind speed).
    group
        ``"time.month"`` (12 groups), ``"time.season"`` (4), ``"time"`` (one group)
        or ``"time.dayofyear:N"``: day-of-year groups pooled over an N-day centred
        window (N odd; bare ``"time.dayofyear"`` means N = 31).
    nquantiles
        Number of equally spaced quantile nodes per group.  Dry days take most of a
        precipitation distribution's nodes (with 85 % dry days, 50 nodes leave 7 for
        the wet days, 300 leave 45), so ``pr`` defaults to 300.
    tail_nodes
        Two more nodes, this far from 0 and 1 (xsdba's ``equally_spaced_nodes(n,
        eps)``), so the outermost values of the training period get factors of
        their own instead of those of the last equally spaced node.  ``None``: no
        extra nodes.
    interp
        Adjustment factors between nodes: ``"nearest"`` or ``"linear"``.
    extrapolation
        Beyond the outermost nodes: ``"constant"`` (the outer factor) or ``"nan"``.
    adapt_freq_thresh
        Threshold under which a value counts as zero (a dry day), for xsdba's
        frequency adaptation when the model has more such days than the reference
        (Themeßl et al. 2012).  A number with units: the data's own
        (``"1.1574e-05 kg m-2 s-1"``) or a depth rate (``"1 mm/day"``, converted
        with a water density of 1000 kg m-3).  ``None``: no adaptation.
    jitter_under_thresh
        Values under this threshold (zeros included) are replaced by random values
        between 0 and it, in the model before training and before adjusting (not in
        the reference), and adjusted values under it are set to 0.
        Needed for ``"*"`` with exact zeros: a zero quantile makes the ratio
        ``ref_q / hist_q`` 0, infinite or NaN, and tied zeros distort xsdba's ranks.
        Same units rules as ``adapt_freq_thresh``; ``None``: no jitter.
    preserve_mean_change
        Restore the model's own change of the mean after QDM, per group and
        adjustment window (PresRat, Pierce et al. 2015): a ratio for ``"*"``, a
        difference for ``"+"``.  QDM keeps the change of every *quantile*, but for
        a skewed variable its mean change is inflated by sampling noise of the
        model's quantiles (see ``docs/bias-adjustment.md``: +4 to +60 percentage
        points for rain).  On by default for ``pr`` and ``sfcWind``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["+", "*"] = "+"
    group: str = "time.month"
    nquantiles: int = Field(default=50, ge=3, le=1000)
    tail_nodes: float | None = Field(default=None, gt=0, lt=0.5)
    interp: Literal["nearest", "linear"] = "nearest"
    extrapolation: Literal["constant", "nan"] = "constant"
    adapt_freq_thresh: str | None = None
    jitter_under_thresh: str | None = None
    preserve_mean_change: bool = False

    @field_validator("group")
    @classmethod
    def _known_group(cls, value: str) -> str:
        return _check_group(value)

    @field_validator("adapt_freq_thresh", "jitter_under_thresh")
    @classmethod
    def _quantity(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            _check_quantity(value)
        except Exception as err:
            raise ValueError(
                f"expected a number with units, such as '1 mm/day' or "
                f"'1.1574e-05 kg m-2 s-1', got {value!r} ({err})"
            ) from err
        return value

    @model_validator(mode="after")
    def _tail_outside(self) -> VariableAdjustment:
        if self.tail_nodes is not None and self.tail_nodes >= 0.5 / self.nquantiles:
            raise ValueError(
                f"tail_nodes ({self.tail_nodes}) must lie outside the {self.nquantiles} "
                f"equally spaced nodes (below {0.5 / self.nquantiles:g})"
            )
        return self

    def nodes(self) -> np.ndarray:
        """The quantile nodes: ``nquantiles`` equally spaced, plus the tail nodes."""
        from xsdba.utils import equally_spaced_nodes

        return equally_spaced_nodes(self.nquantiles, self.tail_nodes)

    def grouper(self) -> Any:
        """The xsdba ``Grouper`` of :attr:`group`."""
        from xsdba import Grouper

        name, _, window = self.group.partition(":")
        if name == "time.dayofyear":
            return Grouper(name, window=int(window or _DEFAULT_DOY_WINDOW))
        return Grouper(name)


#: Built-in settings per canonical variable; a variable not listed gets
#: ``VariableAdjustment()`` (additive, monthly).  Rain: multiplicative by season
#: (monthly groups of a mostly dry series hold too few wet days), 300 nodes plus
#: tail nodes at 0.0005 and 0.9995 (most nodes fall on dry days), frequency
#: adaptation at 1 mm/day, jitter of zeros under 0.01 mm/day, mean change preserved.
#: Wind speed: multiplicative, mean change preserved. Sea surface temperature:
#: additive by month like ``tas`` (a temperature: its change is a difference).
DEFAULT_ADJUSTMENTS: dict[str, VariableAdjustment] = {
    "pr": VariableAdjustment(
        kind="*",
        group="time.season",
        nquantiles=300,
        tail_nodes=0.0005,
        adapt_freq_thresh="1 mm/day",
        jitter_under_thresh="0.01 mm/day",
        preserve_mean_change=True,
    ),
    "sfcWind": VariableAdjustment(kind="*", preserve_mean_change=True),
    "tos": VariableAdjustment(kind="+", group="time.month"),
}


class AdjustmentOptions(BaseModel):
    """Every bias-adjustment option except the overlap years.

    Shared by :class:`BiasAdjustmentConfig` and the run catalog's
    ``bias_adjustment`` section, so both accept and default the same way.

    Attributes
    ----------
    method
        Only ``"quantile_delta_mapping"`` (xsdba ``QuantileDeltaMapping``).
    variables
        Per variable, a :class:`VariableAdjustment`, given field by field: the fields
        given replace those of the variable's built-in settings
        (:data:`DEFAULT_ADJUSTMENTS`, else ``VariableAdjustment()``).  After
        validation it holds the complete settings of every listed variable and of
        every variable with built-in settings.
    min_overlap_years
        Each input must hold at least this many years of valid daily data in the
        overlap (default 10): fewer cannot sample the quantiles of each group.
    window_years, stride_years
        QDM ranks each simulated value within the period it is adjusted with, so a
        long series (1950-2100) is adjusted in moving ``window_years`` windows,
        keeping the central ``stride_years`` of each (default 30 and 10).  ``None``
        ranks over the whole series given, which turns QDM into plain quantile
        mapping of a trending series and distorts the projected change.
    seed
        Seed of numpy's global generator while fitting and adjusting, used by the
        jitter and frequency adaptation; makes eager (numpy-backed) runs
        reproducible.  ``None`` leaves the generator alone.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: Literal["quantile_delta_mapping"] = "quantile_delta_mapping"
    variables: dict[str, VariableAdjustment] = Field(
        default_factory=lambda: dict(DEFAULT_ADJUSTMENTS)
    )
    min_overlap_years: float = Field(default=10.0, gt=0)
    window_years: int | None = Field(default=30, ge=1)
    stride_years: int = Field(default=10, ge=1)
    seed: int | None = 0

    @field_validator("variables", mode="before")
    @classmethod
    def _over_defaults(cls, value: Any) -> Any:
        """Each given variable's fields over its built-in settings, defaults added."""
        if not isinstance(value, Mapping):
            return value  # pydantic reports the type error
        merged: dict[Any, Any] = {
            var: spec.model_dump() for var, spec in DEFAULT_ADJUSTMENTS.items()
        }
        for var, spec in value.items():
            given = spec.model_dump(exclude_unset=True) if isinstance(spec, BaseModel) else spec
            if not isinstance(given, Mapping):
                merged[var] = given  # pydantic reports the type error
                continue
            base = DEFAULT_ADJUSTMENTS[var].model_dump() if var in DEFAULT_ADJUSTMENTS else {}
            merged[var] = {**base, **given}
        return merged

    @model_validator(mode="after")
    def _windows(self) -> AdjustmentOptions:
        if self.window_years is not None and self.stride_years > self.window_years:
            raise ValueError(
                f"stride_years ({self.stride_years}) must not exceed window_years "
                f"({self.window_years})"
            )
        return self

    def for_variable(self, variable: str) -> VariableAdjustment:
        """The settings of ``variable``: listed, else ``VariableAdjustment()``."""
        return self.variables.get(variable, VariableAdjustment())

    def kind_for(self, variable: str) -> Literal["+", "*"]:
        """Adjustment kind of ``variable``."""
        return self.for_variable(variable).kind


class BiasAdjustmentConfig(AdjustmentOptions):
    """How projections are bias-adjusted against the reference reanalysis.

    The options of :class:`AdjustmentOptions` plus the overlap years.

    Attributes
    ----------
    overlap_start, overlap_end
        First and last calendar year (inclusive) of the training period shared by
        the reference and the historical simulation.  Default 1985-2014: the last 30
        years of CMIP6 ``historical``, long enough to sample a climate.
    """

    overlap_start: int = Field(default=1985, ge=1800, le=2300)
    overlap_end: int = Field(default=2014, ge=1800, le=2300)

    @model_validator(mode="after")
    def _ordered(self) -> BiasAdjustmentConfig:
        if self.overlap_end < self.overlap_start:
            raise ValueError(
                f"overlap_end ({self.overlap_end}) is before overlap_start ({self.overlap_start})"
            )
        return self


# ----------------------------------------------------------------------- helpers


def _same_units(a: str, b: str) -> bool:
    from xclim.core.units import units2pint

    try:
        return bool(units2pint(a) == units2pint(b))
    except Exception:
        return a.strip() == b.strip()


def _units_of(da: xr.DataArray, variable: Hashable, role: str) -> str:
    units = da.attrs.get("units")
    if units is None:
        raise ValueError(f"{variable!r} in the {role} has no 'units' attribute")
    return str(units)


def _resolve_thresh(variable: str, thresh: str, data_units: str) -> str:
    """``thresh`` expressed in ``data_units`` (xsdba wants the data's own units)."""
    from xclim.core.units import units2pint

    quantity = _parse_quantity(thresh)
    target = units2pint(data_units)
    try:
        value = quantity.to(target).magnitude
    except Exception:
        try:  # a depth rate (mm/day) for a mass flux (kg m-2 s-1)
            value = (quantity * _WATER_DENSITY * units2pint("kg m-3")).to(target).magnitude
        except Exception as err:
            raise ValueError(
                f"threshold {thresh!r} for {variable!r} cannot be expressed in the "
                f"data's units {data_units!r}"
            ) from err
    return f"{float(value)!r} {data_units}"


def _check_time(obj: xr.Dataset | xr.DataArray, role: str) -> None:
    if "time" not in obj.dims:
        raise ValueError(f"the {role} has no 'time' dimension (dims {tuple(obj.dims)})")
    values = obj["time"].values
    if not np.issubdtype(values.dtype, np.datetime64):
        raise ValueError(
            f"the {role} time axis must be numpy datetime64 on the standard calendar "
            f"(convert calendars first, cascadia.sources.predictors), got {values.dtype}"
        )
    if values.size and (values != values.astype("datetime64[D]")).any():
        raise ValueError(f"the {role} time stamps must be daily at 00:00")


def _years(obj: xr.Dataset | xr.DataArray) -> tuple[int, int]:
    years = obj["time"].dt.year
    return int(years.min()), int(years.max())


def _sel_years(obj: Any, start: int, end: int) -> Any:
    return obj.sel(time=slice(f"{start:04d}-01-01", f"{end:04d}-12-31"))


def _valid_years(da: xr.DataArray) -> float:
    """Years of valid daily data (the least-covered series over non-time dims)."""
    valid = da.notnull().sum("time")
    return float(valid.min()) / 365.25 if valid.size else 0.0


def _one_time_chunk(da: xr.DataArray) -> xr.DataArray:
    return da.chunk({"time": -1}) if da.chunks is not None else da


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence known, harmless third-party warnings raised inside xsdba calls."""
    with warnings.catch_warnings():
        # jsonpickle 4 on xsdba's (unused here) serialisation of the object.
        warnings.filterwarnings("ignore", message="keys will default", category=DeprecationWarning)
        # pandas 3 on xsdba's day-of-year grouping.
        warnings.filterwarnings("ignore", message=".*dayofyear is deprecated")
        yield


@contextmanager
def _seeded(seed: int | None) -> Iterator[None]:
    """Seed numpy's global generator (xsdba draws from it) and restore it afterwards."""
    if seed is None:
        yield
        return
    # xsdba draws from the legacy global generator, so only it can be seeded.
    state = np.random.get_state()  # noqa: NPY002
    np.random.seed(seed)  # noqa: NPY002
    try:
        yield
    finally:
        np.random.set_state(state)  # noqa: NPY002


def _other_coords_match(ref: xr.DataArray, hist: xr.DataArray, variable: str) -> None:
    for dim in ref.dims:
        if dim == "time" or dim not in hist.dims:
            continue
        if dim in ref.coords and dim in hist.coords and not ref[dim].equals(hist[dim]):
            raise ValueError(
                f"{variable!r}: the reference and the historical simulation have different "
                f"{dim!r} coordinates ({ref[dim].values.tolist()} vs {hist[dim].values.tolist()})"
            )


# ------------------------------------------------------------------------ fitting


def _qdm(
    *,
    kind: str,
    units: str,
    group: Any,
    adapt_freq_thresh: str | None,
    hist_calendar: str,
    params: xr.Dataset,
) -> Any:
    """A trained xsdba ``QuantileDeltaMapping`` rebuilt from its parameters.

    Rebuilding (rather than ``QuantileDeltaMapping.from_dataset``) avoids
    ``jsonpickle.decode`` of a stored attribute, which can execute code.
    """
    from xsdba import QuantileDeltaMapping

    obj = QuantileDeltaMapping(
        _trained=True,
        hist_calendar=hist_calendar,
        train_units=units,
        group=group,
        kind=kind,
        adapt_freq_thresh=adapt_freq_thresh,
        max_tail_factor=None,
    )
    with _quiet():
        obj.set_dataset(params.copy())  # set_dataset writes attributes on its argument
    return obj


@dataclass(frozen=True, eq=False)
class FittedAdjustment:
    """Trained QDM adjustments, one per variable (regions as an extra dimension).

    Attributes
    ----------
    config
        The configuration used for training and adjusting.
    parameters
        Per variable, the trained xsdba parameters: ``af`` (adjustment factor per
        group and quantile, in the variable's units for ``"+"`` or 1 for ``"*"``),
        ``hist_q`` (the model's quantiles over the overlap), with frequency
        adaptation ``P0_ref``, ``P0_hist`` (fractions of days under the threshold)
        and ``pth``, and with ``preserve_mean_change`` ``hist_mean`` and
        ``hist_mean_adjusted`` (per group, the mean of the training period before and
        after QDM).
    units
        Per variable, the units the adjustment was trained in; simulations must use
        the same.
    adapt_freq_thresh
        Per variable with frequency adaptation, the threshold in the data's units.
    overlap
        First and last day actually used for training (both inputs share them).
    jitter_under_thresh
        Per variable with jitter, the threshold in the data's units: simulated
        values under it are jittered before adjustment (xsdba ranks ties at the
        minimum badly, see ``docs/bias-adjustment.md``) and set to 0 afterwards.
    hist_calendar
        Calendar of the training data as xsdba reports it.
    """

    config: BiasAdjustmentConfig
    parameters: Mapping[str, xr.Dataset]
    units: Mapping[str, str]
    adapt_freq_thresh: Mapping[str, str]
    overlap: tuple[str, str]
    jitter_under_thresh: Mapping[str, str] = field(default_factory=dict)
    hist_calendar: str = "proleptic_gregorian"
    _models: dict[tuple[str, ...], Any] = field(default_factory=dict, repr=False, compare=False)

    def _model(self, names: tuple[str, ...]) -> Any:
        """The QDM of ``names`` (one variable, or several stacked along ``_TOGETHER``)."""
        if names not in self._models:
            spec = self.config.for_variable(names[0])
            self._models[names] = _qdm(
                kind=spec.kind,
                units=self.units[names[0]] if len(names) == 1 else "1",
                group=spec.grouper(),
                adapt_freq_thresh=self.adapt_freq_thresh.get(names[0]),
                hist_calendar=self.hist_calendar,
                params=self._parameters(names).drop_vars(_MEAN_VARS, errors="ignore"),
            )
        return self._models[names]

    def _parameters(self, names: tuple[str, ...]) -> xr.Dataset:
        if len(names) == 1:
            return self.parameters[names[0]]
        return xr.concat(
            [self.parameters[v] for v in names], pd.Index(names, name=_TOGETHER), join="exact"
        )

    def _together(self, names: Sequence[str]) -> list[tuple[str, ...]]:
        """``names`` in groups adjusted by one xsdba call per window.

        Variables with the same settings, no frequency adaptation and no jitter (thresholds
        in each variable's own units) and the same quantile nodes are stacked: QDM works
        on each series of the stack independently, so the result is the same as one call
        per variable, at a fraction of xsdba's per-call overhead.
        """
        groups: dict[Any, list[str]] = {}
        for var in names:
            spec = self.config.for_variable(var)
            if var in self.adapt_freq_thresh or var in self.jitter_under_thresh:
                key: Any = var
            else:
                key = (
                    spec.model_dump_json(),
                    tuple(self.parameters[var]["quantiles"].values.tolist()),
                    tuple(self.parameters[var].sizes.items()),
                )
            groups.setdefault(key, []).append(var)
        return [tuple(group) for group in groups.values()]

    @property
    def variables(self) -> list[str]:
        """The adjusted variables, in training order."""
        return list(self.parameters)

    # -------------------------------------------------------------- adjusting

    def adjust(self, simulation: xr.Dataset, variables: Sequence[str] | None = None) -> xr.Dataset:
        """Bias-adjust a simulation of any period (historical, scenario or both).

        Parameters
        ----------
        simulation
            Canonical daily dataset of the same model as the historical training
            data: historical, scenario, or both concatenated.  numpy- or
            dask-backed; dask stays lazy.
        variables
            Variables to adjust (default: every fitted variable; each must be in
            ``simulation``).  Other data variables of ``simulation`` are dropped:
            an unadjusted predictor must not pass as an adjusted one.

        Returns
        -------
        xarray.Dataset
            The adjusted variables on the simulation's time axis, in the training
            units.  Each variable's ``bias_adjustment`` attribute holds its settings
            (JSON, :meth:`settings`), the dataset's ``bias_adjustment_config`` the
            whole configuration.  A series longer than
            ``config.window_years`` is adjusted window by window (QDM ranks values
            within the period adjusted, which is what preserves the model's change).

        Raises
        ------
        ValueError
            A fitted variable is missing, its units differ from the training units,
            or the time axis breaks the input contract.
        """
        _check_time(simulation, "simulation")
        names = list(self.parameters) if variables is None else list(variables)
        for var in names:  # check everything before adjusting anything
            if var not in self.parameters:
                raise ValueError(f"{var!r} was not fitted (fitted: {self.variables})")
            if var not in simulation.data_vars:
                raise ValueError(f"{var!r} is fitted but missing from the simulation")
            da = simulation[var]
            units = _units_of(da, var, "simulation")
            if not _same_units(units, self.units[var]):
                raise ValueError(
                    f"{var!r}: the simulation is in {units!r} but the adjustment was trained "
                    f"in {self.units[var]!r}; convert to the canonical units first"
                )
        out: dict[str, xr.DataArray] = {}
        for group in self._together(names):
            out.update(self._adjust_group(group, simulation))
        out = {var: out[var] for var in names}
        result = xr.Dataset(out, attrs=dict(simulation.attrs))
        result.attrs.update(
            bias_adjustment_method="xsdba QuantileDeltaMapping",
            bias_adjustment_reference_period=f"{self.overlap[0]}/{self.overlap[1]}",
            bias_adjustment_config=json.dumps(self.config.model_dump(mode="json")),
        )
        return result

    def _adjust_group(
        self, names: tuple[str, ...], simulation: xr.Dataset
    ) -> dict[str, xr.DataArray]:
        """Adjust ``names`` (same settings) together, window by window."""
        if len(names) == 1:
            da = simulation[names[0]]
        else:
            da = xr.concat(
                [simulation[v].drop_attrs() for v in names],
                pd.Index(names, name=_TOGETHER),
                coords="minimal",
                compat="override",
                join="exact",
            ).assign_attrs(units="1")
        y0, y1 = _years(da)
        window, stride = self.config.window_years, self.config.stride_years
        if window is None or y1 - y0 + 1 <= window:
            scen = self._adjust_block(names, da)
        else:
            pieces = []
            for b0 in range(y0, y1 + 1, stride):
                b1 = min(b0 + stride - 1, y1)
                w0 = min(max(b0 + (stride - window) // 2, y0), y1 - window + 1)
                block = self._adjust_block(names, _sel_years(da, w0, w0 + window - 1))
                pieces.append(_sel_years(block, b0, b1))
            scen = xr.concat(pieces, "time")
        out = {}
        for var in names:
            one = scen if len(names) == 1 else scen.sel({_TOGETHER: var}, drop=True)
            one = one.transpose(*simulation[var].dims)
            one.attrs = {
                **simulation[var].attrs,
                "units": self.units[var],
                "bias_adjustment": json.dumps(self.settings(var)),
            }
            out[var] = one.rename(var)
        return out

    def settings(self, variable: str) -> dict[str, Any]:
        """Every option ``variable`` is adjusted with, thresholds in the data's units."""
        spec = self.config.for_variable(variable).model_dump(mode="json")
        spec["adapt_freq_thresh"] = self.adapt_freq_thresh.get(variable)
        spec["jitter_under_thresh"] = self.jitter_under_thresh.get(variable)
        return {
            "method": "xsdba QuantileDeltaMapping",
            **spec,
            "reference_period": f"{self.overlap[0]}/{self.overlap[1]}",
            "window_years": self.config.window_years,
            "stride_years": self.config.stride_years,
        }

    def _adjust_block(self, names: tuple[str, ...], da: xr.DataArray) -> xr.DataArray:
        """QDM of one window, then its mean change restored where configured."""
        scen = self._qdm_block(names, da)
        spec = self.config.for_variable(names[0])
        params = self._parameters(names)
        if spec.preserve_mean_change and "hist_mean" in params:
            scen = _restore_mean_change(
                scen, da, params["hist_mean"], params["hist_mean_adjusted"], spec
            )
        return scen

    def _qdm_block(self, names: tuple[str, ...], da: xr.DataArray) -> xr.DataArray:
        """Plain xsdba QDM of one window (jitter, adjust, dry days back to 0)."""
        model = self._model(names)
        var = names[0]
        spec = self.config.for_variable(var)
        kwargs: dict[str, Any] = {"extrapolation": spec.extrapolation, "interp": spec.interp}
        if model.group.window > 1:
            # Rank within the grouping window: the only behaviour of xsdba ≥ 0.8.
            kwargs["rank_window"] = True
        jitter = self.jitter_under_thresh.get(var)
        with _quiet(), _seeded(self.config.seed):
            sim = _one_time_chunk(da)
            if jitter is not None:
                # xsdba's percentile ranks are rescaled from the lowest rank, so a block
                # of tied zeros (dry days) shifts every wet day to a lower quantile.
                from xsdba.processing import jitter_under_thresh

                sim = jitter_under_thresh(sim, jitter)
            scen = model.adjust(sim, **kwargs)
        if jitter is not None:
            limit = float(_parse_quantity(jitter).magnitude)
            scen = scen.where(scen.isnull() | (scen >= limit), 0.0)
        return scen.drop_attrs(deep=False)

    # ------------------------------------------------------------- storage

    def to_dataset(self) -> xr.Dataset:
        """The fitted parameters as one dataset, for Zarr or NetCDF.

        Variables are named ``<variable>_<parameter>`` (``tas_af``, ``tas_hist_q``,
        ``pr_P0_ref``, ``pr_hist_mean``…), each variable with its own quantile axis
        ``<variable>_quantiles``; the configuration, each variable's resolved
        settings, units and overlap are JSON in the global attribute
        ``cascadia_bias_adjustment``.  Write with e.g.
        ``to_zarr(path, zarr_format=2, consolidated=True)``.
        """
        data: dict[str, xr.DataArray] = {}
        for var, params in self.parameters.items():
            for name in _PARAM_VARS:
                if name in params:
                    da = params[name].copy()
                    da.attrs = {
                        k: v for k, v in da.attrs.items() if isinstance(v, str | int | float)
                    }
                    # Variables may have different numbers of nodes: one axis each.
                    if "quantiles" in da.dims:
                        da = da.rename(quantiles=f"{var}_quantiles")
                    data[f"{var}_{name}"] = da
        meta = {
            "version": _STORE_VERSION,
            "config": self.config.model_dump(mode="json"),
            "units": dict(self.units),
            "adapt_freq_thresh": dict(self.adapt_freq_thresh),
            "jitter_under_thresh": dict(self.jitter_under_thresh),
            "overlap": list(self.overlap),
            "hist_calendar": self.hist_calendar,
            "variables": self.variables,
            "settings": {var: self.settings(var) for var in self.variables},
        }
        import xsdba

        return xr.Dataset(
            data,
            attrs={
                "title": "cascadia bias-adjustment parameters (xsdba QuantileDeltaMapping)",
                "reference_period": f"{self.overlap[0]}/{self.overlap[1]}",
                "xsdba_version": str(xsdba.__version__),
                _STORE_ATTR: json.dumps(meta),
            },
        )

    @classmethod
    def from_dataset(cls, ds: xr.Dataset) -> FittedAdjustment:
        """Rebuild a fitted adjustment from :meth:`to_dataset` output (no refitting).

        Parameters
        ----------
        ds
            The dataset, e.g. ``xr.open_zarr(path)``; its (small) parameters are
            loaded into memory.

        Raises
        ------
        ValueError
            The dataset was not written by :meth:`to_dataset`, or a parameter is
            missing.
        """
        if _STORE_ATTR not in ds.attrs:
            raise ValueError(
                f"not a cascadia bias-adjustment dataset (no {_STORE_ATTR!r} attribute)"
            )
        meta = json.loads(ds.attrs[_STORE_ATTR])
        if meta.get("version") != _STORE_VERSION:
            raise ValueError(f"unsupported bias-adjustment store version {meta.get('version')}")
        config = BiasAdjustmentConfig.model_validate(meta["config"])
        parameters: dict[str, xr.Dataset] = {}
        for var in meta["variables"]:
            names = {f"{var}_{p}": p for p in _PARAM_VARS if f"{var}_{p}" in ds}
            if f"{var}_af" not in names or f"{var}_hist_q" not in names:
                raise ValueError(f"{var!r}: af or hist_q missing from the dataset")
            params = ds[list(names)].rename(names).load()
            if f"{var}_quantiles" in params.dims:
                params = params.rename({f"{var}_quantiles": "quantiles"})
            params.attrs = {}
            parameters[var] = _with_raw_quantiles(params)
        return cls(
            config=config,
            parameters=parameters,
            units=meta["units"],
            adapt_freq_thresh=meta["adapt_freq_thresh"],
            jitter_under_thresh=meta["jitter_under_thresh"],
            overlap=(meta["overlap"][0], meta["overlap"][1]),
            hist_calendar=meta["hist_calendar"],
        )


def _with_raw_quantiles(params: xr.Dataset) -> xr.Dataset:
    """Add xsdba's ``hist_q_raw`` placeholder (only read with ``max_tail_factor``)."""
    return params.assign(hist_q_raw=xr.full_like(params.hist_q, np.nan))


def fit(
    reference: xr.Dataset,
    historical: xr.Dataset,
    config: BiasAdjustmentConfig | Mapping[str, Any] | None = None,
    variables: Sequence[str] | None = None,
) -> FittedAdjustment:
    """Train one QDM per variable (all regions at once) over the overlap period.

    Parameters
    ----------
    reference
        The reference reanalysis (canonical daily dataset).
    historical
        The model's historical simulation, alone or concatenated with its
        scenario; only the overlap years are used.
    config
        A :class:`BiasAdjustmentConfig` or a mapping validated into one.
    variables
        Variables to fit (default: every data variable present in both inputs).

    Returns
    -------
    FittedAdjustment
        The trained adjustments; their small parameters are computed eagerly.
        The first call in a process compiles xsdba's numba kernels (~5-20 s).

    Raises
    ------
    ValueError
        Naming the variable: its units differ (or are missing), it is missing from
        one input, or an input holds fewer than ``config.min_overlap_years`` years of
        data in the overlap (naming that input); also for a bad time axis.
    """
    cfg = (
        config
        if isinstance(config, BiasAdjustmentConfig)
        else BiasAdjustmentConfig.model_validate(dict(config or {}))
    )
    _check_time(reference, "reference")
    _check_time(historical, "historical simulation")
    if variables is None:
        names = [str(v) for v in reference.data_vars if v in historical.data_vars]
        if not names:
            raise ValueError("the reference and the historical simulation share no variable")
    else:
        names = list(variables)
    start, end = cfg.overlap_start, cfg.overlap_end
    period = f"{start}-{end}"

    # Cheap checks for every variable before any training.
    pairs: dict[str, tuple[xr.DataArray, xr.DataArray, str]] = {}
    for var in names:
        for role, ds in (("reference", reference), ("historical simulation", historical)):
            if var not in ds.data_vars:
                raise ValueError(f"{var!r} is missing from the {role}")
        ref_units = _units_of(reference[var], var, "reference")
        hist_units = _units_of(historical[var], var, "historical simulation")
        if not _same_units(ref_units, hist_units):
            raise ValueError(
                f"{var!r}: units differ between the reference ({ref_units!r}) and the "
                f"historical simulation ({hist_units!r}); convert to canonical units first"
            )
        ref = _sel_years(reference[var], start, end)
        hist = _sel_years(historical[var], start, end)
        for role, da in (("reference", ref), ("historical simulation", hist)):
            years = _valid_years(da)
            if years < cfg.min_overlap_years:
                raise ValueError(
                    f"{var!r}: the {role} holds only {years:.1f} years of data in the overlap "
                    f"{period} (at least {cfg.min_overlap_years:g} needed)"
                )
        _other_coords_match(ref, hist, var)
        ref, hist = xr.align(ref, hist, join="inner", exclude=[d for d in ref.dims if d != "time"])
        shared = min(_valid_years(ref.where(hist.notnull())), _valid_years(hist))
        if shared < cfg.min_overlap_years:
            raise ValueError(
                f"{var!r}: the reference and the historical simulation share only "
                f"{shared:.1f} years of days in the overlap {period} "
                f"(at least {cfg.min_overlap_years:g} needed)"
            )
        pairs[var] = (ref, hist, ref_units)

    from xsdba import QuantileDeltaMapping

    parameters: dict[str, xr.Dataset] = {}
    units: dict[str, str] = {}
    thresholds: dict[str, str] = {}
    jitters: dict[str, str] = {}
    calendar = "proleptic_gregorian"
    first_day, last_day = None, None
    for var, (ref, hist, var_units) in pairs.items():
        spec = cfg.for_variable(var)
        kwargs: dict[str, Any] = {}
        if spec.adapt_freq_thresh is not None:
            thresholds[var] = _resolve_thresh(var, spec.adapt_freq_thresh, var_units)
            kwargs["adapt_freq_thresh"] = thresholds[var]
        if spec.jitter_under_thresh is not None:
            jitters[var] = _resolve_thresh(var, spec.jitter_under_thresh, var_units)
            kwargs["jitter_under_thresh_value"] = jitters[var]
        ref = ref.copy()
        hist = hist.copy()
        hist.attrs["units"] = ref.attrs["units"] = var_units
        with _quiet(), _seeded(cfg.seed):
            model = QuantileDeltaMapping.train(
                _one_time_chunk(ref),
                _one_time_chunk(hist),
                nquantiles=spec.nodes().astype(ref.dtype),
                group=spec.grouper(),
                kind=spec.kind,
                **kwargs,
            )
        with _seeded(cfg.seed):  # random jitter and frequency adaptation, if dask
            params = model.ds.drop_vars("hist_q_raw").load()
        params.attrs = {}
        parameters[var] = _with_raw_quantiles(params)
        units[var] = str(model.train_units)
        calendar = str(model.hist_calendar)
        first_day = str(pd.Timestamp(ref["time"].values[0]).date())
        last_day = str(pd.Timestamp(ref["time"].values[-1]).date())
        pairs[var] = (ref, hist, var_units)
    fitted = FittedAdjustment(
        config=cfg,
        parameters=parameters,
        units=units,
        adapt_freq_thresh=thresholds,
        jitter_under_thresh=jitters,
        overlap=(first_day or f"{start}-01-01", last_day or f"{end}-12-31"),
        hist_calendar=calendar,
    )
    # Mean-change preservation compares every adjusted window with what QDM makes of
    # the training period itself: keep the group means of both.
    for var, (_, hist, _) in pairs.items():
        spec = cfg.for_variable(var)
        if not spec.preserve_mean_change:
            continue
        group = spec.grouper()
        means = {
            "hist_mean": _group_mean(hist, group),
            "hist_mean_adjusted": _group_mean(fitted._qdm_block((var,), hist), group),
        }
        af = parameters[var]["af"]
        if group.prop in af.dims:  # same group order as xsdba's factors
            means = {k: v.sel({group.prop: af[group.prop]}) for k, v in means.items()}
        means = {k: v.transpose(*[d for d in af.dims if d in v.dims]) for k, v in means.items()}
        parameters[var] = parameters[var].assign(means).load()
    return replace(fitted, parameters=parameters, _models={})


def _group_mean(da: xr.DataArray, group: Any) -> xr.DataArray:
    """Mean of ``da`` per group of ``group`` (an xsdba ``Grouper``); dask stays lazy."""
    with _quiet():
        out = group.apply("mean", da)
    return out.drop_attrs()


def _restore_mean_change(
    scen: xr.DataArray,
    sim: xr.DataArray,
    hist_mean: xr.DataArray,
    hist_mean_adjusted: xr.DataArray,
    spec: VariableAdjustment,
) -> xr.DataArray:
    """Give the adjusted window ``scen`` the raw window ``sim``'s change of the mean.

    Per group, the change of the mean of ``sim`` against the training period
    (``hist_mean``) is imposed on ``scen`` against the adjusted training period
    (``hist_mean_adjusted``): a factor for ``"*"`` (PresRat, Pierce et al. 2015), a
    shift for ``"+"``.  Groups whose means are zero or missing are left alone.
    """
    from xsdba.utils import broadcast

    group = spec.grouper()
    raw, adjusted = _group_mean(sim, group), _group_mean(scen, group)
    if spec.kind == "*":
        with np.errstate(divide="ignore", invalid="ignore"):
            factor = (raw / hist_mean) * (hist_mean_adjusted / adjusted)
        factor = factor.where(np.isfinite(factor) & (factor > 0), 1.0)
        return scen * broadcast(factor, scen, group=group, interp="nearest")
    shift = ((raw - hist_mean) - (adjusted - hist_mean_adjusted)).fillna(0.0)
    return scen + broadcast(shift, scen, group=group, interp="nearest")


# -------------------------------------------------------------------- diagnostics

BIAS_QUANTILES = (0.05, 0.5, 0.95)
CHANGE_QUANTILES = (0.1, 0.5, 0.9)


def _period(
    requested: tuple[int, int], available: Sequence[tuple[int, int]], fallback: int
) -> tuple[int, int]:
    """``requested`` clipped to the years all inputs hold, else their last years."""
    lo = max(a for a, _ in available)
    hi = min(b for _, b in available)
    if hi < lo:
        raise ValueError("the inputs share no year")
    start, end = max(requested[0], lo), min(requested[1], hi)
    if end < start:  # nothing of the requested window: the last `fallback` years
        start, end = max(lo, hi - fallback + 1), hi
    return start, end


def diagnostics(
    reference: xr.Dataset,
    historical_raw: xr.Dataset,
    historical_adjusted: xr.Dataset,
    future_raw: xr.Dataset,
    future_adjusted: xr.Dataset,
    *,
    config: BiasAdjustmentConfig | None = None,
    future_period: tuple[int, int] = (2071, 2100),
) -> xr.Dataset:
    """Bias before/after adjustment and preservation of the projected change.

    Parameters
    ----------
    reference
        The reference reanalysis.
    historical_raw, historical_adjusted
        The model over (at least) the overlap, before and after adjustment.
    future_raw, future_adjusted
        The model over (at least) the far-future window, before and after
        adjustment.  The same continuous dataset may be passed as historical and
        future.
    config
        Gives the overlap years and each variable's kind (default
        :class:`BiasAdjustmentConfig()`).  The overlap is clipped to the years all
        historical inputs hold.
    future_period
        Far-future window (default 2071-2100), clipped to the years the future
        inputs hold; if they hold none of it, their last 30 years.

    Returns
    -------
    xarray.Dataset
        Computed, with dims ``variable``, the non-time dims of the data (``region``),
        ``stage`` (``raw``, ``adjusted``), ``bias_quantile`` (0.05, 0.5, 0.95) and
        ``change_quantile`` (0.1, 0.5, 0.9); coordinates ``units`` and ``kind`` per
        variable.  Over the overlap, against the reference: ``bias_mean``,
        ``relative_bias_mean`` (mean ratio − 1), ``bias_quantiles``.  Between the
        overlap and the far future, each stage against itself: ``change_mean``,
        ``relative_change_mean``, ``change_quantiles``,
        ``relative_change_quantiles``; and ``change_preservation_error`` (adjusted
        minus raw change: absolute for ``"+"``, relative for ``"*"``).  Absolute
        numbers are in each variable's units, relative ones are fractions (NaN
        where the divisor is 0, e.g. dry-day quantiles of ``pr``).
    """
    cfg = config or BiasAdjustmentConfig()
    hist_inputs = (reference, historical_raw, historical_adjusted)
    fut_inputs = (future_raw, future_adjusted)
    for role, ds in zip(
        ("reference", "historical_raw", "historical_adjusted", "future_raw", "future_adjusted"),
        (*hist_inputs, *fut_inputs),
        strict=True,
    ):
        _check_time(ds, role)
    names = [
        str(v)
        for v in historical_adjusted.data_vars
        if all(v in ds.data_vars for ds in (*hist_inputs, *fut_inputs))
    ]
    if not names:
        raise ValueError("no variable is present in all five inputs")
    o0, o1 = _period(
        (cfg.overlap_start, cfg.overlap_end),
        [_years(ds) for ds in hist_inputs],
        cfg.overlap_end - cfg.overlap_start + 1,
    )
    f0, f1 = _period(future_period, [_years(ds) for ds in fut_inputs], 30)

    bias_q = list(BIAS_QUANTILES)
    change_q = list(CHANGE_QUANTILES)
    rows: list[xr.Dataset] = []
    for var in names:
        ref = _sel_years(reference[var], o0, o1).load()
        hist = {
            "raw": _sel_years(historical_raw[var], o0, o1).load(),
            "adjusted": _sel_years(historical_adjusted[var], o0, o1).load(),
        }
        fut = {
            "raw": _sel_years(future_raw[var], f0, f1).load(),
            "adjusted": _sel_years(future_adjusted[var], f0, f1).load(),
        }
        ref_mean = ref.mean("time")
        ref_q = ref.quantile(bias_q, "time").rename(quantile="bias_quantile")
        per_stage: dict[str, dict[str, xr.DataArray]] = {}
        with np.errstate(divide="ignore", invalid="ignore"):
            for stage in ("raw", "adjusted"):
                h, f = hist[stage], fut[stage]
                h_mean, f_mean = h.mean("time"), f.mean("time")
                h_q = h.quantile(change_q, "time").rename(quantile="change_quantile")
                f_q = f.quantile(change_q, "time").rename(quantile="change_quantile")
                bq = h.quantile(bias_q, "time").rename(quantile="bias_quantile")
                per_stage[stage] = {
                    "bias_mean": h_mean - ref_mean,
                    "relative_bias_mean": _ratio(h_mean, ref_mean) - 1,
                    "bias_quantiles": bq - ref_q,
                    "change_mean": f_mean - h_mean,
                    "relative_change_mean": _ratio(f_mean, h_mean) - 1,
                    "change_quantiles": f_q - h_q,
                    "relative_change_quantiles": _ratio(f_q, h_q) - 1,
                }
        stacked = {
            name: xr.concat(
                [per_stage["raw"][name], per_stage["adjusted"][name]], "stage", coords="minimal"
            ).assign_coords(stage=np.array(["raw", "adjusted"], dtype="U8"))
            for name in per_stage["raw"]
        }
        ds = xr.Dataset(stacked)
        kind = cfg.kind_for(var)
        key = "change_mean" if kind == "+" else "relative_change_mean"
        ds["change_preservation_error"] = ds[key].sel(stage="adjusted", drop=True) - ds[key].sel(
            stage="raw", drop=True
        )
        ds = ds.drop_vars([c for c in ds.coords if c not in ds.dims], errors="ignore")
        rows.append(
            ds.expand_dims(variable=np.array([var], dtype="U16")).assign_coords(
                units=("variable", [str(reference[var].attrs.get("units", ""))]),
                kind=("variable", [kind]),
            )
        )
    out = xr.concat(rows, "variable", coords="different", compat="equals", join="outer")
    descriptions = {
        "bias_mean": "mean(model) - mean(reference) over the overlap, variable units",
        "relative_bias_mean": "mean(model) / mean(reference) - 1 over the overlap",
        "bias_quantiles": "quantile(model) - quantile(reference) over the overlap",
        "change_mean": "mean(far future) - mean(overlap) of the model, variable units",
        "relative_change_mean": "mean(far future) / mean(overlap) - 1 of the model",
        "change_quantiles": "quantile(far future) - quantile(overlap) of the model",
        "relative_change_quantiles": "quantile(far future) / quantile(overlap) - 1",
        "change_preservation_error": (
            "adjusted minus raw change: change_mean for kind '+', relative_change_mean for kind '*'"
        ),
    }
    for name, text in descriptions.items():
        out[name].attrs["description"] = text
    out.attrs.update(
        overlap_period=f"{o0}-{o1}",
        future_period=f"{f0}-{f1}",
        title="cascadia bias-adjustment diagnostics",
    )
    return out


def _ratio(num: xr.DataArray, den: xr.DataArray) -> xr.DataArray:
    return (num / den.where(den != 0)).where(den != 0)
