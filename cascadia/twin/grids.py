"""Grids of the twin world's stores: regular (two longitude conventions) and rotated pole."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from cascadia.twin.presets import LAT_RANGE, LON_RANGE

#: EURO-CORDEX rotated pole (CORDEX archive specifications, Table 1).
ROTATED_POLE_LAT = 39.25
ROTATED_POLE_LON = -162.0


@dataclass(frozen=True)
class RegularGrid:
    """A regular lat/lon grid as a store writes it (order and convention included)."""

    lat: np.ndarray  # 1-D, in store order
    lon: np.ndarray  # 1-D, in store order and convention

    def mesh(self) -> tuple[np.ndarray, np.ndarray]:
        """2-D (lat, lon) of cell centres with longitudes in -180..180."""
        lon180 = (self.lon + 180.0) % 360.0 - 180.0
        lon2, lat2 = np.meshgrid(lon180, self.lat)
        return lat2, lon2


def regular_grid(resolution: float, lat_descending: bool, lon_0_360: bool) -> RegularGrid:
    """Cell centres every ``resolution`` degrees from the domain's north-west corner.

    In the 0-360 convention the points west of Greenwich become 359.x and are
    sorted to the end, exactly as a regional cut of a global 0-360 store.
    """
    lat = np.round(np.arange(LAT_RANGE[1], LAT_RANGE[0] - 1e-9, -resolution), 4)
    if not lat_descending:
        lat = lat[::-1]
    lon = np.round(np.arange(LON_RANGE[0], LON_RANGE[1] + 1e-9, resolution), 4)
    if lon_0_360:
        lon = np.sort(lon % 360.0)
    return RegularGrid(lat=lat, lon=lon)


def regrid(values: np.ndarray, source: RegularGrid, target: RegularGrid) -> np.ndarray:
    """(time, lat, lon) fields moved to another regular grid, as a CMIP6 ``gr`` copy.

    Bilinear inside the source's cell centres; beyond them each axis holds its edge
    value (no extrapolated negative precipitation). Longitudes compared in -180..180.
    """
    field = xr.DataArray(
        values,
        dims=("time", "lat", "lon"),
        coords={"lat": source.lat, "lon": (source.lon + 180.0) % 360.0 - 180.0},
    ).sortby(["lat", "lon"])
    lat = np.clip(target.lat, field.lat.values[0], field.lat.values[-1])
    lon = np.clip((target.lon + 180.0) % 360.0 - 180.0, field.lon.values[0], field.lon.values[-1])
    return field.interp(lat=lat, lon=lon).values


def bounds(centres: np.ndarray) -> np.ndarray:
    """Cell bounds (n, 2) of 1-D centres, halfway between neighbours (CF ``bounds``)."""
    step = float(np.median(np.abs(np.diff(centres)))) if centres.size > 1 else 1.0
    steps = np.abs(np.diff(centres))
    steps = np.where(steps > 3 * abs(step), abs(step), steps)  # wrap gap in 0-360 order
    half = np.concatenate([[abs(step)], steps]) / 2.0
    return np.stack([centres - half, centres + half], axis=1)


def _rotation(pole_lat: float, pole_lon: float) -> np.ndarray:
    """Columns: the rotated frame's x, y, z axes in geographic Cartesian coordinates.

    z is the rotated north pole; x is the rotated (0, 0) point, 90 degrees from
    the pole on the meridian opposite to it (CF ``rotated_latitude_longitude``).
    """
    phi, lam = np.deg2rad(pole_lat), np.deg2rad(pole_lon)
    z = np.array([np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)])
    x = np.array([-np.sin(phi) * np.cos(lam), -np.sin(phi) * np.sin(lam), np.cos(phi)])
    return np.stack([x, np.cross(z, x), z], axis=1)


def _to_vector(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    phi, lam = np.deg2rad(lat), np.deg2rad(lon)
    return np.stack([np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)])


def _from_vector(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lat = np.rad2deg(np.arcsin(np.clip(v[2], -1.0, 1.0)))
    return lat, np.rad2deg(np.arctan2(v[1], v[0]))


def rotated_to_geographic(
    rlat: np.ndarray, rlon: np.ndarray, pole_lat: float, pole_lon: float
) -> tuple[np.ndarray, np.ndarray]:
    """Geographic lat/lon (degrees, lon in -180..180) of rotated-pole coordinates."""
    return _from_vector(np.tensordot(_rotation(pole_lat, pole_lon), _to_vector(rlat, rlon), 1))


def geographic_to_rotated(
    lat: np.ndarray, lon: np.ndarray, pole_lat: float, pole_lon: float
) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`rotated_to_geographic`."""
    return _from_vector(np.tensordot(_rotation(pole_lat, pole_lon).T, _to_vector(lat, lon), 1))


@dataclass(frozen=True)
class RotatedGrid:
    """A rotated-pole grid: 1-D rlat/rlon and the 2-D geographic lat/lon of each cell."""

    rlat: np.ndarray
    rlon: np.ndarray
    lat: np.ndarray  # (rlat, rlon)
    lon: np.ndarray  # (rlat, rlon), -180..180

    def mesh(self) -> tuple[np.ndarray, np.ndarray]:
        return self.lat, self.lon


def rotated_grid(resolution: float) -> RotatedGrid:
    """A rotated grid of spacing ``resolution`` (rotated degrees) covering the domain."""
    corners_lat = np.array([LAT_RANGE[0], LAT_RANGE[0], LAT_RANGE[1], LAT_RANGE[1]])
    corners_lon = np.array([LON_RANGE[0], LON_RANGE[1], LON_RANGE[0], LON_RANGE[1]])
    rlat_c, rlon_c = geographic_to_rotated(
        corners_lat, corners_lon, ROTATED_POLE_LAT, ROTATED_POLE_LON
    )
    rlat = np.round(np.arange(rlat_c.min(), rlat_c.max() + resolution, resolution), 4)
    rlon = np.round(np.arange(rlon_c.min(), rlon_c.max() + resolution, resolution), 4)
    rlon2, rlat2 = np.meshgrid(rlon, rlat)
    lat, lon = rotated_to_geographic(rlat2, rlon2, ROTATED_POLE_LAT, ROTATED_POLE_LON)
    return RotatedGrid(rlat=rlat, rlon=rlon, lat=lat, lon=lon)


EARTH_RADIUS = 6_371_000.0  # m


@dataclass(frozen=True)
class CurvilinearGrid:
    """An ocean model's curvilinear grid: cells (j, i) of a smoothly distorted lat/lon mesh.

    Position (y, x) in index space (cell centres at integers, vertices at half
    integers) maps to ``lat = lat0 + y*res + a*sin(pi*x/nx)`` and ``lon = lon0 + x*res
    + b*sin(pi*y/ny)``: rows of constant ``j`` are not parallels and columns of
    constant ``i`` not meridians, as on tripolar or rotated ocean grids, so a reader
    must use the 2-D coordinates and the cell areas (``areacello``).
    """

    lat0: float
    lon0: float
    resolution: float
    ny: int
    nx: int

    def position(self, y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Geographic (lat, lon in -180..180) of index-space positions."""
        res = self.resolution
        lat = self.lat0 + y * res + 0.2 * res * np.sin(np.pi * x / self.nx)
        lon = self.lon0 + x * res + 0.3 * res * np.sin(np.pi * y / self.ny)
        return lat, lon

    def mesh(self) -> tuple[np.ndarray, np.ndarray]:
        """2-D (lat, lon) of cell centres, (j, i), longitudes in -180..180."""
        x, y = np.meshgrid(np.arange(self.nx, dtype=float), np.arange(self.ny, dtype=float))
        return self.position(y, x)

    def vertices(self) -> tuple[np.ndarray, np.ndarray]:
        """Cell corners (j, i, 4), counter-clockwise from south-west, as CMIP6 vertices."""
        x, y = np.meshgrid(np.arange(self.nx, dtype=float), np.arange(self.ny, dtype=float))
        dy = np.array([-0.5, -0.5, 0.5, 0.5])
        dx = np.array([-0.5, 0.5, 0.5, -0.5])
        return self.position(y[..., None] + dy, x[..., None] + dx)

    def cell_area(self) -> np.ndarray:
        """Cell areas (j, i), m2: the corner polygon on the sphere, locally projected."""
        lat, lon = self.vertices()
        centre = np.deg2rad(lat.mean(axis=-1, keepdims=True))
        px = EARTH_RADIUS * np.deg2rad(lon) * np.cos(centre)
        py = EARTH_RADIUS * np.deg2rad(lat)
        shoelace = px * np.roll(py, -1, axis=-1) - np.roll(px, -1, axis=-1) * py
        return 0.5 * np.abs(shoelace.sum(axis=-1))


def ocean_grid(resolution: float) -> CurvilinearGrid:
    """A curvilinear ocean grid of spacing ``resolution`` degrees covering the domain."""
    ny = round((LAT_RANGE[1] - LAT_RANGE[0]) / resolution) + 1
    nx = round((LON_RANGE[1] - LON_RANGE[0]) / resolution) + 1
    return CurvilinearGrid(LAT_RANGE[0], LON_RANGE[0], resolution, ny, nx)
