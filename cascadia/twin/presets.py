"""Sizes of the twin world: which stores exist, over which years, on which grids.

A preset changes only how much of the world is written (periods, grid spacing,
members), never its physics, so a test on ``tiny`` exercises the same code and
the same conventions as a benchmark on ``full``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Calendar = Literal["standard", "noleap", "360_day"]

#: Domain of every gridded store, degrees north / east. It reaches 1 degree
#: west of Greenwich so that stores in the 0-360 convention wrap (358-360 E).
LAT_RANGE = (40.5, 45.0)
LON_RANGE = (-1.0, 8.0)

#: Experiments of the projection stores.
SCENARIOS = ("ssp126", "ssp245", "ssp585")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Years(_Strict):
    start: int
    end: int  # inclusive


class ReanalysisSpec(_Strict):
    years: Years
    resolution: float = Field(gt=0, description="grid spacing, degrees")
    members: int = 1


class CmipSourceSpec(_Strict):
    source_id: str
    institution_id: str
    calendar: Calendar
    resolution: float
    #: Climate sensitivity relative to the multi-model middle (1.0).
    sensitivity: float
    #: Static biases of the stored fields against the physical atmosphere.
    tas_bias: float = 0.0  # K
    hurs_bias: float = 0.0  # %
    pr_factor: float = 1.0
    wind_factor: float = 1.0
    psl_bias: float = 0.0  # Pa
    #: Its first member also published regridded (``grid_label`` gr) at this spacing,
    #: degrees: many CMIP6 models are in both gn and gr, and a run must read one.
    gr_resolution: float | None = None
    #: Variables of the first member's historical run first published incomplete
    #: (first year only) under an earlier version, as Pangeo lists superseded versions.
    superseded: tuple[str, ...] = ()
    #: The ocean model: its curvilinear grid's spacing (degrees), the static bias of its
    #: sea surface (K; coupled models' Mediterranean SST biases reach 1-2 K) and the table
    #: of its ``tos``: daily ``Oday`` or, as some models publish, monthly ``Omon`` only.
    ocean_resolution: float = 1.0
    tos_bias: float = 0.0
    ocean_table: Literal["Oday", "Omon"] = "Oday"
    #: Static bias (K) of its intermediate water (``thetao`` near 500-1000 m, first
    #: member only): CMIP6 models' Levantine Intermediate Water is often several tenths
    #: of a degree too warm or too cold.
    thetao_bias: float = 0.0


class CordexSpec(_Strict):
    driving_source: str
    rcm: str
    institution: str
    tas_bias: float = 0.0
    pr_factor: float = 1.0
    wind_factor: float = 1.0
    #: A coupled (Med-CORDEX-like) RCM publishes ``tos`` on its grid with this SST bias
    #: (K); an atmosphere-only RCM (None) reads its driving model's SST and publishes none.
    tos_bias: float | None = None


class Preset(_Strict):
    name: str
    era5: ReanalysisSpec
    twentycr: ReanalysisSpec
    era20c: ReanalysisSpec
    cmip_sources: tuple[CmipSourceSpec, ...]
    cmip_members: int
    #: Multiplies every CMIP source's grid spacing (coarser grids for small presets).
    cmip_resolution_scale: float = 1.0
    historical: Years
    future: Years
    cordex: tuple[CordexSpec, ...]
    cordex_resolution: float
    cordex_experiments: tuple[str, ...] = ("historical", "ssp126", "ssp585")
    observations: Years
    #: Spin-up of the ocean before the first stored day, years.
    spinup_years: int = 3
    #: Hours per chunk of the ERA5 Zarr store (each chunk spans the whole domain). ARCO-ERA5
    #: stores one global hour per chunk (1); larger chunks keep small worlds quick to write.
    era5_time_chunk: int = Field(24 * 92, gt=0)


CMIP_SOURCES = (
    CmipSourceSpec(
        source_id="TWIN-ESM-A",
        institution_id="TWINLAB-A",
        calendar="noleap",
        resolution=2.0,
        sensitivity=0.85,
        tas_bias=-1.6,
        wind_factor=1.12,
        pr_factor=1.25,
        gr_resolution=2.5,
        superseded=("tas",),
        ocean_resolution=1.0,
        tos_bias=-0.9,
        thetao_bias=0.6,
    ),
    CmipSourceSpec(
        source_id="TWIN-ESM-B",
        institution_id="TWINLAB-B",
        calendar="360_day",
        resolution=2.5,
        sensitivity=1.25,
        tas_bias=2.1,
        hurs_bias=-6.0,
        pr_factor=0.7,
        wind_factor=0.85,
        ocean_resolution=1.25,
        tos_bias=1.3,
        ocean_table="Omon",
        thetao_bias=-0.4,
    ),
    CmipSourceSpec(
        source_id="TWIN-ESM-C",
        institution_id="TWINLAB-C",
        calendar="standard",
        resolution=1.5,
        sensitivity=1.0,
        tas_bias=0.6,
        psl_bias=180.0,
        wind_factor=1.05,
        ocean_resolution=0.75,
        tos_bias=0.4,
        thetao_bias=0.9,
    ),
)

CORDEX_PAIRS = (
    CordexSpec(
        driving_source="TWIN-ESM-A",
        rcm="TWIN-RCM-X",
        institution="TWINRCM-X",
        tas_bias=-0.7,
        wind_factor=1.08,
        tos_bias=-0.4,
    ),
    CordexSpec(
        driving_source="TWIN-ESM-C",
        rcm="TWIN-RCM-Y",
        institution="TWINRCM-Y",
        tas_bias=0.9,
        pr_factor=1.15,
        wind_factor=0.92,
    ),
)

PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        name="tiny",
        era5=ReanalysisSpec(years=Years(start=2013, end=2014), resolution=2.25),
        twentycr=ReanalysisSpec(years=Years(start=2010, end=2014), resolution=3.0, members=2),
        era20c=ReanalysisSpec(years=Years(start=2010, end=2011), resolution=3.0),
        cmip_sources=CMIP_SOURCES,
        cmip_members=2,
        cmip_resolution_scale=1.5,
        historical=Years(start=2012, end=2014),
        future=Years(start=2015, end=2016),
        cordex=CORDEX_PAIRS,
        cordex_resolution=2.5,
        observations=Years(start=2013, end=2014),
        spinup_years=3,
    ),
    "demo": Preset(
        name="demo",
        era5=ReanalysisSpec(years=Years(start=1940, end=2025), resolution=1.5),
        twentycr=ReanalysisSpec(years=Years(start=1900, end=2015), resolution=2.0, members=3),
        era20c=ReanalysisSpec(years=Years(start=1900, end=2010), resolution=2.0),
        cmip_sources=CMIP_SOURCES,
        cmip_members=2,
        historical=Years(start=1950, end=2014),
        future=Years(start=2015, end=2100),
        cordex=CORDEX_PAIRS,
        cordex_resolution=1.0,
        observations=Years(start=1993, end=2025),
    ),
    "full": Preset(
        name="full",
        era5=ReanalysisSpec(years=Years(start=1940, end=2025), resolution=0.5),
        twentycr=ReanalysisSpec(years=Years(start=1900, end=2015), resolution=1.0, members=5),
        era20c=ReanalysisSpec(years=Years(start=1900, end=2010), resolution=1.0),
        cmip_sources=CMIP_SOURCES,
        cmip_members=3,
        historical=Years(start=1950, end=2014),
        future=Years(start=2015, end=2100),
        cordex=CORDEX_PAIRS,
        cordex_resolution=0.44,
        observations=Years(start=1993, end=2025),
        era5_time_chunk=1,  # the ARCO-ERA5 layout: one hour per chunk
    ),
}


def get_preset(name: str) -> Preset:
    """Return the named preset or raise a ``ValueError`` listing the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        known = ", ".join(PRESETS)
        raise ValueError(f"unknown preset {name!r}; expected one of: {known}") from None
