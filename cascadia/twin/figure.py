"""A figure of a few winters of the twin's history: forcing, shelf density, deep temperature."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from cascadia.twin.ocean import DEPTHS
from cascadia.twin.presets import Preset
from cascadia.twin.realizations import Realization
from cascadia.twin.stores import StoreContext


def choose_winters(history: Realization, preset: Preset, count: int = 4) -> tuple[int, int]:
    """The last ``count`` observed winters ending with the strongest cascade among them."""
    ocean = history.ocean
    assert ocean is not None
    winters = history.axis.winter_of_day()
    first_obs = preset.observations.start + 1
    candidates = range(first_obs + count - 1, preset.observations.end + 1)
    drops = {w: float(ocean.cascading_flux[0, winters == w].sum()) for w in candidates}
    strongest = max(drops, key=drops.get) if drops else preset.observations.end
    return strongest - count + 1, strongest


def figure_png(history: Realization, preset: Preset) -> bytes:
    """Render the figure to PNG bytes (deterministic: no timestamps in the metadata)."""
    ocean = history.ocean
    assert ocean is not None
    first, last = choose_winters(history, preset)
    time = pd.DatetimeIndex(history.axis.time)
    keep = (time >= pd.Timestamp(f"{first - 1}-10-01")) & (time < pd.Timestamp(f"{last}-06-01"))
    t = time[keep]
    weather = history.weather
    fig, axes = plt.subplots(4, 1, figsize=(11, 10), sharex=True, constrained_layout=True)

    ax = axes[0]
    ax.plot(t, weather.tas[keep] - 273.15, color="tab:red", lw=0.7, label="air temperature")
    ax.set_ylabel("air temperature (°C)")
    twin = ax.twinx()
    twin.fill_between(
        t,
        0,
        weather.sfcWind[keep],
        where=weather.northerly[keep],
        color="tab:blue",
        alpha=0.35,
        label="Tramontane/Mistral days",
    )
    twin.set_ylabel("wind speed (m s$^{-1}$)")
    ax.set_title("Forcing: shelf-mean air temperature and northerly wind episodes")

    ax = axes[1]
    ax.plot(t, ocean.heat_flux[keep], color="k", lw=0.6)
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_ylabel("net heat flux (W m$^{-2}$)")
    ax.set_title("Air-sea heat flux into the shelf (bulk formulas)")

    ax = axes[2]
    for d, colour in zip(range(2), ("tab:orange", "tab:purple"), strict=True):
        ax.plot(
            t,
            ocean.density_excess[d, keep],
            color=colour,
            lw=0.8,
            label=f"shelf − ambient at {DEPTHS[d]:.0f} m",
        )
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_ylim(-0.6, max(0.15, float(ocean.density_excess[:, keep].max()) + 0.03))
    ax.set_ylabel("density excess (kg m$^{-3}$)")
    ax.legend(loc="lower left", fontsize=8)
    ax.set_title("TEOS-10 in-situ density: shelf minus ambient water at depth (cascading > 0)")

    ax = axes[3]
    for d, colour in zip(range(2), ("tab:orange", "tab:purple"), strict=True):
        ax.plot(t, ocean.temperature[d, keep], color=colour, lw=0.8, label=f"{DEPTHS[d]:.0f} m")
        ax.plot(t, ocean.background_temp[d, keep], color=colour, lw=0.6, ls="--")
    ax.set_ylabel("temperature (°C)")
    ax.legend(loc="lower left", fontsize=8)
    ax.set_title("True daily temperature in the canyon (dashed: deep background)")
    fig.suptitle(f"cascadia twin world, winters {first}–{last}")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def plot_winters(ctx: StoreContext, history: Realization, preset: Preset) -> None:
    """Write ``figures/winters.png`` under the world root."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(ctx.url("figures", "winters.png"), **ctx.storage_options)
    fs.makedirs(fs._parent(path), exist_ok=True)
    fs.pipe(path, figure_png(history, preset))
