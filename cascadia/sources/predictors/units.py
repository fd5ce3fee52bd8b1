"""Unit conversion to canonical CF units, and derived humidity and wind.

Every conversion goes through pint (xclim's registry, which reads CF unit
strings), never through hand-written factor tables: sources disagree (ERA5
precipitation is metres of water accumulated over the hour, CMIP is a flux in
kg m-2 s-1, station-like products give mm/day; pressure comes in Pa or hPa,
relative humidity as % or as a fraction).

Only a few unit *spellings* that pint would misread or not know are rewritten
first (``"mb"`` is a millibarn to pint, not a millibar).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import pint
import xarray as xr

__all__ = [
    "UNIT_SPELLINGS",
    "amount_to_rate",
    "convert_dataset",
    "convert_variable",
    "hurs_from_dewpoint",
    "huss_from_hurs",
    "source_units",
    "time_step_seconds",
    "wind_speed",
]

#: Unit strings found in the wild that pint misreads or lacks, and their CF spelling.
UNIT_SPELLINGS: dict[str, str] = {
    "mb": "hPa",
    "Pascals": "Pa",
    "fraction": "1",
    "0-1": "1",
    "(0 - 1)": "1",
    "m of water equivalent": "m",
    # UDUNITS names of degrees Celsius and kelvin that pint misreads or lacks (CMEMS
    # writes degrees_C); degC, deg_C, degreeC, degree_Celsius, celsius, degK, deg_K,
    # degreeK, degree_Kelvin and kelvin are read as they are
    **dict.fromkeys(
        (
            "deg C",
            "degree C",
            "degrees C",
            "degree_C",
            "degrees_C",
            "degree Celsius",
            "degrees Celsius",
        ),
        "degC",
    ),
    **dict.fromkeys(
        (
            "deg K",
            "degree K",
            "degrees K",
            "degree_K",
            "degrees_K",
            "Kelvin",
            "Kelvins",
            "degree Kelvin",
            "degrees Kelvin",
            "degrees_Kelvin",
        ),
        "K",
    ),
}


def _dimensionality(text: str) -> Any:
    from xclim.core.units import units2pint

    return units2pint(text).dimensionality


def source_units(da: xr.DataArray, name: Hashable | None = None) -> pint.Unit:
    """Parse the ``units`` attribute of a variable.

    Why: a missing or unreadable unit must stop the pipeline with a message
    that names the variable, not with a pint traceback deep in a dask graph.

    Parameters
    ----------
    da : xarray.DataArray
        Variable with a ``units`` attribute.
    name : Hashable, optional
        Name used in error messages (defaults to ``da.name``).

    Returns
    -------
    pint.Unit
        The parsed unit.

    Raises
    ------
    ValueError
        If ``units`` is missing, empty or not understood.
    """
    from xclim.core.units import units2pint

    label = da.name if name is None else name
    raw = da.attrs.get("units")
    if raw is None or str(raw).strip() == "":
        raise ValueError(f"Variable {label!r} has no units attribute (found {raw!r}).")
    text = UNIT_SPELLINGS.get(str(raw).strip(), str(raw).strip())
    try:
        return units2pint(text)
    except Exception as err:  # pint raises several unrelated exception types
        raise ValueError(f"Variable {label!r} has units {raw!r} that are not understood.") from err


def time_step_seconds(time: xr.DataArray) -> float:
    """Typical sampling step of a time coordinate, in seconds.

    Why: converting an amount accumulated per step into a rate needs the step
    length; the median difference is robust to a few missing steps, where
    frequency inference fails.

    Parameters
    ----------
    time : xarray.DataArray
        1-D time coordinate (numpy datetime64 or cftime), at least 2 values.

    Returns
    -------
    float
        Median step in seconds.

    Raises
    ------
    ValueError
        If there are fewer than two time steps.
    """
    index = time.to_index()
    if len(index) < 2:
        raise ValueError("At least two time steps are needed to infer the sampling step.")
    steps = np.asarray(index[1:] - index[:-1])
    return float(np.median(steps.astype("timedelta64[ms]").astype(np.int64)) / 1000.0)


def amount_to_rate(da: xr.DataArray, step_seconds: float | None = None) -> xr.DataArray:
    """Divide an amount accumulated over each time step by the step length.

    Why: ERA5 ``total_precipitation`` is the amount accumulated over the hour;
    a flux is the amount divided by the accumulation period. (xclim's
    ``amount2rate`` does the same but needs an inferable frequency, which a
    series with a missing step does not have.)

    Parameters
    ----------
    da : xarray.DataArray
        Amount per step with a ``units`` attribute (e.g. ``kg m-2``, ``mm``).
    step_seconds : float, optional
        Accumulation period in seconds; inferred from the time coordinate
        (median step) when omitted.

    Returns
    -------
    xarray.DataArray
        Rate, units of ``da`` per second (reduced by pint).
    """
    from xclim.core.units import pint_multiply, units

    step = time_step_seconds(da["time"]) if step_seconds is None else step_seconds
    return pint_multiply(da, 1 / units.Quantity(step, "s"))


def _precipitation_to_flux(da: xr.DataArray, unit: pint.Unit, target: str) -> xr.DataArray:
    """Route a precipitation variable to a flux according to its dimensionality."""
    from xclim.core.units import convert_units_to

    dim = unit.dimensionality
    if dim == _dimensionality("m"):  # depth of liquid water per step (ERA5: m per hour)
        da = convert_units_to(da, "kg m-2", context="hydro")
        da = amount_to_rate(da)
    elif dim == _dimensionality("kg m-2"):  # mass per area per step
        da = amount_to_rate(da)
    elif dim == _dimensionality("m s-1"):  # depth per time (mm/day)
        da = convert_units_to(da, "kg m-2 s-1", context="hydro")
    return convert_units_to(da, target)


def convert_variable(da: xr.DataArray, target: str, name: Hashable | None = None) -> xr.DataArray:
    """Convert one variable to the target unit.

    Why: the network and the bias adjustment assume one unit per predictor.
    Beyond plain pint conversions (degC→K, hPa→Pa, fraction→%), a target flux
    of ``kg m-2 s-1`` accepts precipitation as a depth per step (``m``, water
    density 1000 kg m-3, divided by the step length), a mass per area per
    step (``kg m-2``) or a depth rate (``mm/day``).

    Parameters
    ----------
    da : xarray.DataArray
        Variable with a ``units`` attribute; may be dask-backed (stays lazy).
    target : str
        Target unit in CF spelling (e.g. ``"K"``, ``"%"``, ``"kg m-2 s-1"``).
    name : Hashable, optional
        Name for error messages (defaults to ``da.name``).

    Returns
    -------
    xarray.DataArray
        Converted variable with ``units`` set to ``target``.

    Raises
    ------
    ValueError
        If the units are missing, unknown, or incompatible with ``target``.
    """
    from xclim.core.units import convert_units_to, pint2cfunits, units2pint

    label = da.name if name is None else name
    unit = source_units(da, label)
    target_unit = units2pint(target)
    # Clean copy: our own spelling fix, and no standard_name so that xclim does
    # not apply CF-name-driven automatic conversions behind our back.
    clean = da.copy(deep=False)
    clean.attrs = {k: v for k, v in da.attrs.items() if k not in {"standard_name", "units"}}
    clean.attrs["units"] = pint2cfunits(unit)
    try:
        flux = _dimensionality("kg m-2 s-1")
        if target_unit.dimensionality == flux and unit.dimensionality != flux:
            out = _precipitation_to_flux(clean, unit, target)
        else:
            out = convert_units_to(clean, target)
    except Exception as err:  # pint's DimensionalityError and friends
        raise ValueError(
            f"Cannot convert variable {label!r} from units {da.attrs.get('units')!r} "
            f"to {target!r}: {err}"
        ) from err
    out.attrs.pop("units_metadata", None)
    out.attrs["units"] = target
    if "standard_name" in da.attrs:
        out.attrs["standard_name"] = da.attrs["standard_name"]
    return out


def convert_dataset(ds: xr.Dataset, targets: Mapping[Hashable, str]) -> xr.Dataset:
    """Convert the variables of a dataset that appear in ``targets``.

    Parameters
    ----------
    ds : xarray.Dataset
        Dataset with ``units`` attributes.
    targets : mapping
        Variable name → target CF unit; variables not listed are unchanged.

    Returns
    -------
    xarray.Dataset
        Dataset with converted variables (lazy for dask inputs).

    Raises
    ------
    ValueError
        If a variable's units are missing, unknown or incompatible.
    """
    return ds.assign(
        {name: convert_variable(ds[name], target, name) for name, target in targets.items()}
    )


def hurs_from_dewpoint(
    tas: xr.DataArray, tdps: xr.DataArray, method: str = "sonntag90"
) -> xr.DataArray:
    """Relative humidity (%) from air and dewpoint temperature.

    Why: ERA5 gives 2 m dewpoint, not relative humidity. By definition
    ``hurs = 100 · e_sat(tdps) / e_sat(tas)``; the saturation vapour pressure
    formula (over water) is xclim's, ``sonntag90`` by default.

    Parameters
    ----------
    tas : xarray.DataArray
        Near-surface air temperature, any temperature unit.
    tdps : xarray.DataArray
        Near-surface dewpoint temperature, any temperature unit.
    method : str
        Saturation vapour pressure formula accepted by
        :func:`xclim.indices.relative_humidity`.

    Returns
    -------
    xarray.DataArray
        ``hurs`` in %, clipped to [0, 100].
    """
    from xclim.indices import relative_humidity

    tas = convert_variable(tas, "K", "tas")
    tdps = convert_variable(tdps, "K", "tdps")
    out = relative_humidity(tas=tas, tdps=tdps, method=method, invalid_values="clip")
    out = convert_variable(out, "%", "hurs")
    return out.rename("hurs").assign_attrs(standard_name="relative_humidity")


def huss_from_hurs(
    tas: xr.DataArray, hurs: xr.DataArray, ps: xr.DataArray, method: str = "sonntag90"
) -> xr.DataArray:
    """Specific humidity (1) from air temperature, relative humidity and pressure.

    Why: some sources lack ``huss``. Using sea-level pressure for ``ps`` is a
    fair approximation over the sea (the Gulf of Lion), not over mountains.

    Parameters
    ----------
    tas : xarray.DataArray
        Air temperature, any temperature unit.
    hurs : xarray.DataArray
        Relative humidity, % or fraction (with matching ``units``).
    ps : xarray.DataArray
        Surface (or sea-level) pressure, any pressure unit.
    method : str
        Saturation vapour pressure formula accepted by xclim.

    Returns
    -------
    xarray.DataArray
        ``huss`` in kg/kg (units ``"1"``).
    """
    from xclim.indices import specific_humidity

    out = specific_humidity(
        tas=convert_variable(tas, "K", "tas"),
        hurs=convert_variable(hurs, "%", "hurs"),
        ps=convert_variable(ps, "Pa", "ps"),
        method=method,
    )
    out = convert_variable(out, "1", "huss")
    return out.rename("huss").assign_attrs(standard_name="specific_humidity")


def wind_speed(uas: xr.DataArray, vas: xr.DataArray) -> xr.DataArray:
    """Wind speed (m s-1) from its eastward and northward components.

    Why: the daily wind predictor is the mean of sub-daily speeds, so speed is
    computed at each time step before any averaging (the speed of a mean wind
    underestimates it whenever the direction changes).

    Parameters
    ----------
    uas, vas : xarray.DataArray
        Eastward and northward near-surface wind, any speed unit.

    Returns
    -------
    xarray.DataArray
        ``sfcWind`` in m s-1 (lazy for dask inputs).
    """
    u = convert_variable(uas, "m s-1", "uas")
    v = convert_variable(vas, "m s-1", "vas")
    out = np.hypot(u, v)
    return out.rename("sfcWind").assign_attrs(units="m s-1", standard_name="wind_speed")
