"""The run report on a real tiny demo run: its numbers are the store's, and a real headless
Chromium shows its figures.

The session's ``run_demo("tiny")`` (tests/conftest.py: world, training, run, report) gives a
real results store and the report its report stage wrote. Every number of the report's HTML
tables and CSV files is held against the store read with plain xarray (and, for the
hindcast, against the model directory's mooring series). The tiny store's spread has no
later period, so a copy of it gets the spread of two periods it covers (``write_spread``:
period changes, robustness, variance partition, trends), and ``cascadia-ensemble report``
writes its report: those tables are checked too, and both reports are opened in Chromium.

Chromium (Debian package, deploy/chromium/install.sh, run by ``make services``) is never
installed by the tests: without it the screenshot test skips on a developer machine that is
not root, and fails when ``CI`` is set or the user is root, so CI cannot go green by
skipping it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml
from PIL import Image

from cascadia.cli import main
from cascadia.mooring.events import EventConfig, event_days
from cascadia.report.tables import count_level_mismatch
from cascadia.run.spread import season_days, write_spread
from cascadia.run.store import open_cube

pytestmark = pytest.mark.slow

DEPTHS = (500.0, 1000.0)
STATS = ("event_days", "event_count", "peak_intensity")
#: Periods of the respun store's spread: both covered by the tiny run's scenarios (joined
#: with their historical runs), long enough for the robustness test (3 winters).
BASE, FUTURE = (2005, 2010), (2011, 2016)


@pytest.fixture(scope="module")
def demo(tiny_demo: dict[str, Any]) -> dict[str, Path]:
    """The session's tiny demo (tests/conftest.py): its report is what these tests read."""
    out = tiny_demo["out"]
    assert tiny_demo["first"].ok
    return {"out": out, "report": out / "report", "results": out / "results.zarr"}


@pytest.fixture(scope="module")
def respun(demo: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A copy of the store with the spread of two periods it covers (so it has period
    changes, robustness categories and a variance partition); its report written by
    ``cascadia-ensemble report``."""
    root = tmp_path_factory.mktemp("respun")
    store = root / "results.zarr"
    shutil.copytree(demo["results"], store)
    write_spread(str(store), periods=[BASE, FUTURE])
    out = root / "report"
    code = main(
        [
            "report",
            "--results",
            str(store),
            "--model",
            str(demo["out"] / "model"),
            "--out",
            str(out),
            "--future",
            *(str(y) for y in FUTURE),
        ]
    )
    assert code == 0
    return {"store": store, "report": out, "future": f"{FUTURE[0]}-{FUTURE[1]}"}


# ---------------------------------------------------------------- reading the page


class _Tables(HTMLParser):
    """Every ``<table id=...>`` of a page: its header and rows of cell texts; image sources."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, dict[str, list]] = {}
        self.images: list[str] = []
        self._table: str | None = None
        self._cell: list[str] | None = None
        self._row: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        if tag == "table":
            self._table = str(attr["id"])
            self.tables[self._table] = {"head": [], "rows": []}
        elif tag == "tr" and self._table:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "img":
            self.images.append(str(attr["src"]))

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell))
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table:
            key = "rows" if self.tables[self._table]["head"] else "head"
            self.tables[self._table][key].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None


def _page(report: Path) -> _Tables:
    parser = _Tables()
    parser.feed((report / "report.html").read_text(encoding="utf-8"))
    return parser


def _table(page: _Tables, name: str) -> pd.DataFrame:
    one = page.tables[f"t-{name}"]
    return pd.DataFrame(one["rows"], columns=one["head"][0])


def _assert_shown(text: str, value: float) -> None:
    """A cell shows ``value`` to its own number of decimals ("n/a" for NaN)."""
    if value is None or not np.isfinite(value):
        assert text == "n/a", (text, value)
        return
    decimals = len(text.split(".")[1]) if "." in text else 0
    assert abs(float(text) - value) <= 0.5 * 10.0**-decimals + 1e-6 * abs(value), (text, value)


def _pick(var: xr.DataArray, frame: pd.DataFrame, dims: tuple[str, ...]) -> np.ndarray:
    """``var`` at every row of ``frame`` (pointwise selection by the rows' labels)."""
    where = {d: xr.DataArray(frame[d].to_numpy(), dims="row") for d in dims}
    return np.asarray(var.sel(where).values, dtype=np.float64)


# ---------------------------------------------------------------- files


def test_the_demo_writes_the_html_report_its_figures_and_tables(demo) -> None:
    report = demo["report"]
    page = _page(report)
    html = (report / "report.html").read_text(encoding="utf-8")
    assert "<script" not in html and "http://" not in html  # self-contained, offline
    assert len(page.images) >= 5
    for png in page.images:
        assert (report / png).stat().st_size > 10_000, png
        assert (report / png).with_suffix(".pdf").read_bytes().startswith(b"%PDF"), png
    for name in re.findall(r'href="([^"]+\.csv)"', html):
        assert (report / name).stat().st_size > 0, name
    for section in (
        "Hindcast since 1993",
        "Reconstruction through every reanalysis",
        "Projections per scenario",
        "Against the twin's truth",
        "anomaly-only",
        "Out-of-distribution inputs",
    ):
        assert section in html, section
    # a store without a variance partition with a value says so
    with open_cube(str(demo["results"])) as ds:
        partition = bool(np.isfinite(ds["event_days_partition_total"]).any())
    assert ("Not in this store" in html) == (not partition)
    # the extreme winters are cited, and said to be the real world's on the twin
    assert "Canals et al. 2006" in html and "real-world winters" in html
    # the truth comparison validate.py reads is still written, with its keys
    comparison = json.loads((report / "truth_comparison.json").read_text())
    assert {"scenarios", "hindcast", "base_period", "future_period"} <= set(comparison)
    assert {"run", "truth", "truth_physical"} <= set(comparison["scenarios"]["ssp585"])


def test_per_winter_csv_equals_the_store(demo) -> None:
    frame = pd.read_csv(demo["report"] / "winter_event_statistics.csv")
    combo = ("experiment", "source_id", "member_id")
    with open_cube(str(demo["results"])) as ds:
        done = (ds["status"] == "done").load()
        days = ds["winter_days"].where(done).load()
        # one row per done combination and winter it covers, and only those
        wanted = days.where(days > 0).to_series().dropna()
        assert len(frame) == len(wanted) > 100
        assert set(frame.set_index([*combo, "winter"]).index) == set(wanted.index)
        np.testing.assert_array_equal(frame["winter_days"], _pick(days, frame, (*combo, "winter")))
        for stat in STATS:
            suffix = "_degC" if stat == "peak_intensity" else ""
            members = ds[f"member_{stat}"].load()
            for depth in DEPTHS:
                where = (*combo, "winter")
                stored = _pick(ds[stat].sel(depth=depth), frame, where)
                column = f"{stat}_{depth:g}m"
                np.testing.assert_allclose(frame[column + suffix], stored, rtol=1e-6)
                each = members.sel(depth=depth)
                for name, reduce in (("min", np.fmin.reduce), ("max", np.fmax.reduce)):
                    expected = reduce(_pick(each, frame, where), axis=1)
                    np.testing.assert_allclose(
                        frame[f"{column}_member_{name}{suffix}"], expected, rtol=1e-6
                    )
        for name in ("ood_fraction", "ood_max_z"):
            np.testing.assert_allclose(
                frame[name], _pick(ds[name], frame, (*combo, "winter")), rtol=1e-6
            )
    # real numbers: winters of several lengths, member counts that differ from the mean
    assert frame["winter_days"].nunique() > 2
    assert (frame["event_days_500m_member_max"] > frame["event_days_500m"]).any()


def test_scenario_spread_csv_equals_the_store(demo) -> None:
    frame = pd.read_csv(demo["report"] / "scenario_spread.csv")
    with open_cube(str(demo["results"])) as ds:
        for quantity in ("event_days", "peak_intensity"):
            rows = frame[frame["quantity"] == quantity]
            count = ds[f"{quantity}_multimodel_count"].load()
            assert len(rows) == int((count > 0).sum())
            where = ("experiment", "depth", "winter")
            for stat in ("mean", "std"):
                stored = _pick(ds[f"{quantity}_multimodel_{stat}"], rows, where)
                np.testing.assert_allclose(rows[f"multimodel_{stat}"], stored, rtol=1e-9)
            for p in (10, 50, 90):
                stored = _pick(
                    ds[f"{quantity}_multimodel_percentile"].sel(percentile=p), rows, where
                )
                np.testing.assert_allclose(rows[f"p{p}"], stored, rtol=1e-9)
            np.testing.assert_array_equal(rows["n_models"], _pick(count, rows, where))
    assert set(frame["experiment"]) >= {"ssp126", "ssp245", "ssp585"}


def test_html_tables_equal_the_store_and_the_mooring(demo) -> None:
    page = _page(demo["report"])
    html = (demo["report"] / "report.html").read_text(encoding="utf-8")
    with open_cube(str(demo["results"])) as ds:
        status = ds["status"].load()
        done = status == "done"
        combos = _table(page, "combinations").set_index("experiment")
        for experiment in ds["experiment"].values:
            row = combos.loc[str(experiment)]
            one = done.sel(experiment=experiment)
            assert int(row["combinations done"]) == int(one.sum())
            assert int(row["models (source_id) done"]) == int(one.any("member_id").sum())
        # OOD: members of a model averaged, then winters of the period, then models
        ood = _table(page, "ood_by_period").set_index("experiment")
        per_model = ds["ood_fraction"].where(done).mean("member_id").load()
        for label in ood.columns:
            first, last = (int(x) for x in label.split("-"))
            inside = per_model.sel(winter=slice(first, last))
            for experiment in ood.index:
                one = inside.sel(experiment=experiment).values  # (source_id, winter)
                models = [np.nanmean(m) for m in one if np.isfinite(m).any()]
                value = float(np.mean(models)) if models else np.nan
                _assert_shown(ood.loc[experiment, label], value)
        # the hindcast against the mooring: ERA5 (the model's training source) since 1993
        shown = _table(page, "hindcast_vs_mooring").set_index("depth (m)")
        observed = pd.read_csv(demo["out"] / "model/background.csv", parse_dates=["time"])
        observed = observed.set_index("time")
        era5 = ds.sel(experiment="reanalysis", source_id="ERA5", member_id="r1")
        for depth in DEPTHS:
            row = shown.loc[f"{depth:g}"]
            run = era5["temperature_mean"].sel(depth=depth).to_series()
            q = era5["temperature_quantile"].sel(depth=depth)
            low = q.sel(quantile=0.05).to_series()
            high = q.sel(quantile=0.95).to_series()
            obs = observed[f"observed_{depth:g}"].reindex(run.index)
            ok = run.notna() & obs.notna() & (run.index >= "1993-01-01")
            error = run[ok] - obs[ok]
            assert int(row["days"]) == int(ok.sum()) > 2000  # mooring 2008-2014, gaps
            _assert_shown(row["bias (°C)"], error.mean())
            _assert_shown(row["RMSE (°C)"], np.sqrt((error**2).mean()))
            _assert_shown(row["r daily T"], np.corrcoef(run[ok], obs[ok])[0, 1])
            inside = (obs[ok] >= low[ok]) & (obs[ok] <= high[ok])
            _assert_shown(row["coverage of the 90 % interval"], inside.mean())
            # event days: the store's over the winters covered for 90 % of the season
            counts = era5["event_days"].sel(depth=depth).to_series()
            full = np.array([season_days(int(w)) for w in counts.index])
            counts = counts[era5["winter_days"].to_series().to_numpy() >= 0.9 * full]
            seen = _mooring_event_days(observed, depth, demo["out"] / "model/job.yaml")
            both = pd.concat([counts, seen], axis=1, keys=["run", "obs"]).dropna()
            both = both[both.index >= 1993]
            assert int(row["winters"]) == len(both) >= 4  # whole seasons of 2009-2014
            _assert_shown(row["event days hindcast"], both["run"].mean())
            _assert_shown(row["event days mooring"], both["obs"].mean())
            # a count level a quarter or more off the mooring's is said, at that depth only
            ratio = both["run"].mean() / both["obs"].mean()
            said = f"at {depth:g} m the ERA5 hindcast counts" in html
            assert said == (not 0.8 <= ratio <= 1.25), (depth, ratio)


def test_a_count_level_off_the_moorings_is_picked_out() -> None:
    frame = pd.DataFrame(
        {
            "depth": [500.0, 1000.0, 700.0, 900.0],
            "event_days_run": [14.2, 10.4, 3.0, 2.0],
            "event_days_observed": [6.8, 10.0, 4.0, 0.0],
        }
    )
    off = count_level_mismatch(frame)
    assert off["depth"].tolist() == [500.0, 700.0]  # 2.09 and 0.75; 1.04 inside; 0 observed
    np.testing.assert_allclose(off["ratio"], [14.2 / 6.8, 0.75])


def _mooring_event_days(observed: pd.DataFrame, depth: float, job: Path) -> pd.Series:
    """The mooring's event days per November-April season: the model's event rule
    (job.yaml) on the observed anomaly against its training background, counted here."""
    rule = EventConfig.model_validate(yaml.safe_load(job.read_text())["events"])
    anomaly = observed[f"observed_{depth:g}"] - observed[f"background_{depth:g}"]
    flags = event_days(
        xr.DataArray(
            anomaly.to_numpy(), dims="time", coords={"time": anomaly.index, "depth": depth}
        ),
        config=rule,
    ).values
    time = anomaly.index
    winter = time.year + (time.month >= 11)
    season = np.isin(time.month, [11, 12, 1, 2, 3, 4])
    out = {}
    for w in np.unique(winter):
        full = season_days(int(w))
        have = (season & anomaly.notna().to_numpy())[winter == w].sum()
        n = (season & flags)[winter == w].sum()
        out[int(w)] = n * full / have if have >= 0.9 * full else np.nan
    return pd.Series(out)


def test_the_change_table_equals_the_store(respun) -> None:
    page = _page(respun["report"])
    shown = _table(page, "period_changes")
    csv = pd.read_csv(respun["report"] / "period_changes.csv")
    per_model = pd.read_csv(respun["report"] / "period_model_changes.csv")
    period = respun["future"]
    with open_cube(str(respun["store"])) as ds:
        for base in ("event_days", "winter_temperature_anomaly"):
            where = {"period": period}
            change = ds[f"{base}_period_multimodel_change"].sel(where).load()
            agree = ds[f"{base}_period_model_agreement"].sel(where).load()
            model = ds[f"{base}_period_model_change"].sel(where).load()
            rows = csv[(csv["quantity"] == base) & (csv["period"] == period)]
            assert set(rows["experiment"]) == {"ssp126", "ssp245", "ssp585"}
            for _, row in rows.iterrows():
                at = {"experiment": row["experiment"], "depth": row["depth"]}
                assert row["change"] == pytest.approx(float(change.sel(at)), rel=1e-12)
                assert row["agreement"] == pytest.approx(float(agree.sel(at)), rel=1e-12)
                models = model.sel(at).dropna("source_id")
                assert row["n_models"] == models.size
                assert row["model_min"] == pytest.approx(float(models.min()), rel=1e-12)
                assert row["model_max"] == pytest.approx(float(models.max()), rel=1e-12)
                mine = per_model[
                    (per_model["quantity"] == base)
                    & (per_model["experiment"] == row["experiment"])
                    & (per_model["depth"] == row["depth"])
                ].set_index("source_id")["change"]
                np.testing.assert_allclose(
                    mine.sort_index(), models.to_series().sort_index(), rtol=1e-12
                )
                html = shown[
                    (shown["quantity"] == base)
                    & (shown["scenario"] == row["experiment"])
                    & (shown["depth (m)"] == f"{row['depth']:g}")
                ].iloc[0]
                _assert_shown(html["change"], float(change.sel(at)))
                _assert_shown(html["sign agreement (fraction of models)"], float(agree.sel(at)))
                _assert_shown(html["lowest model change"], float(models.min()))
                significant = ds[f"{base}_period_significant_fraction"].sel(where | at)
                _assert_shown(html["significant change (fraction of models)"], float(significant))
                # the store's categories, decoded from their CF flags
                for stat, heading in (
                    ("robustness", "robustness (IPCC AR6)"),
                    ("likelihood", "likelihood of the sign"),
                ):
                    assert html[heading] == _flag(ds[f"{base}_period_{stat}"], where | at)
    # real numbers: the temperature anomaly changes everywhere, in all three categories
    assert (csv.loc[csv["quantity"] == "winter_temperature_anomaly", "change"].abs() > 0).all()
    assert (shown["robustness (IPCC AR6)"] != "n/a").any()
    assert (respun["report"] / "change.pdf").read_bytes().startswith(b"%PDF")


def _flag(var: xr.DataArray, where: dict[str, Any]) -> str:
    """The CF flag meaning of ``var`` at ``where`` ("n/a" where it has no value)."""
    value = float(var.sel(where))
    if not np.isfinite(value):
        return "n/a"
    meanings = dict(zip(var.attrs["flag_values"], var.attrs["flag_meanings"].split(), strict=True))
    return meanings[int(value)].replace("_", " ")


def test_the_partition_and_trend_tables_equal_the_store(respun) -> None:
    partition = pd.read_csv(respun["report"] / "variance_partition.csv")
    trends = _table(_page(respun["report"]), "trends")
    with open_cube(str(respun["store"])) as ds:
        for base in ("event_days", "winter_temperature_anomaly"):
            rows = partition[partition["quantity"] == base]
            total = ds[f"{base}_partition_total"].load()
            assert len(rows) == int(np.isfinite(total).sum()) > 10
            for part in ("scenario", "model", "internal", "emulator", "total"):
                stored = _pick(ds[f"{base}_partition_{part}"], rows, ("depth", "winter"))
                np.testing.assert_allclose(rows[part], stored, rtol=1e-12)
                if part != "total":
                    with np.errstate(invalid="ignore"):  # 0 / 0 where nothing varies
                        share = stored / _pick(total, rows, ("depth", "winter"))
                    np.testing.assert_allclose(rows[f"{part}_fraction"], share, rtol=1e-12)
            # the parts add up to the total (the store's partition, as the report shows it)
            parts = rows[["scenario", "model", "internal", "emulator"]].sum(axis=1)
            np.testing.assert_allclose(parts, rows["total"], rtol=1e-9)
            shown = trends[trends["quantity"] == base]
            assert len(shown) == 6  # 3 scenarios x 2 depths
            for _, row in shown.iterrows():
                at = {"experiment": row["scenario"], "depth": float(row["depth (m)"])}
                slope = float(ds[f"{base}_multimodel_trend_slope"].sel(at))
                _assert_shown(row["Sen slope per winter"], slope)
                _assert_shown(row["p-value"], float(ds[f"{base}_multimodel_trend_pvalue"].sel(at)))
                emerged = float(ds[f"{base}_emergence_winter"].sel(at))
                _assert_shown(row["time of emergence (winter)"], emerged)
    html = (respun["report"] / "report.html").read_text(encoding="utf-8")
    assert "Not in this store" not in html
    assert (respun["report"] / "variance-partition.png").stat().st_size > 10_000


def test_report_command_errors_are_one_line(tmp_path: Path, demo, capsys) -> None:
    missing = tmp_path / "nope.zarr"
    assert main(["report", "--results", str(missing), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert str(missing) in err and "\n" not in err and "Traceback" not in err
    truth = str(demo["out"] / "world/truth/index.csv")
    args = ["report", "--results", str(demo["results"]), "--truth", truth, "--out", str(tmp_path)]
    assert main(args) == 2
    assert "--model" in capsys.readouterr().err


# ---------------------------------------------------------------- in a real browser


def _chromium() -> str:
    """The Chromium executable; skip on a developer machine without it, fail in CI / as root."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe:
        return exe
    why = "Chromium is not installed"
    if os.environ.get("CI") or os.geteuid() == 0:
        pytest.fail(
            f"{why}: run `bash deploy/chromium/install.sh` (make services) before pytest "
            "(the report's browser test must run in CI, not skip)"
        )
    pytest.skip(f"{why}; run `bash deploy/chromium/install.sh` as root to enable")


def _screenshot(page: Path, shot: Path, profile: Path) -> np.ndarray:
    """A headless Chromium screenshot of the whole page (tall window, device pixels = CSS)."""
    done = subprocess.run(
        [
            _chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            f"--user-data-dir={profile}",
            f"--screenshot={shot}",
            "--window-size=1280,12000",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    return np.asarray(Image.open(shot).convert("RGB"))


def _find(shot: np.ndarray, figure: np.ndarray) -> np.ndarray | None:
    """The area of ``shot`` that shows ``figure`` pixel for pixel, or ``None``."""
    h, w, _ = figure.shape
    drawn = (figure < 245).any(axis=2).sum(axis=1)
    y = int(np.argmax(drawn))  # the figure's busiest row: not a blank one
    key = figure[y].tobytes()
    for r in range(y, shot.shape[0] - h + y + 1):
        line = shot[r].tobytes()
        x = line.find(key)
        while x >= 0 and x % 3:
            x = line.find(key, x + 1)
        if x < 0:
            continue
        area = shot[r - y : r - y + h, x // 3 : x // 3 + w]
        if area.shape == figure.shape and np.array_equal(area, figure):
            return area
    return None


def _drawn(area: np.ndarray) -> tuple[float, int, int]:
    """Share of non-white pixels, coloured (saturated) pixels, and colour classes among them."""
    pixels = area.reshape(-1, 3).astype(int)
    nonwhite = float((pixels < 245).any(axis=1).mean())
    coloured = pixels[pixels.max(axis=1) - pixels.min(axis=1) > 60]
    classes = len({tuple(c) for c in (coloured // 64).tolist()})
    return nonwhite, len(coloured), classes


@pytest.mark.parametrize("which", ["demo", "respun"])
def test_chromium_shows_the_figures(which, demo, respun, tmp_path: Path) -> None:
    report = demo["report"] if which == "demo" else respun["report"]
    images = _page(report).images
    shot = _screenshot(report / "report.html", tmp_path / "shot.png", tmp_path / "profile")
    for src in images:
        figure = np.asarray(Image.open(report / src).convert("RGB"))
        area = _find(shot, figure)
        assert area is not None, f"{src} is not shown in the screenshot"
        nonwhite, coloured, classes = _drawn(area)
        # axes, lines, bands and text: drawn, in several Okabe-Ito colours
        assert nonwhite > 0.05, (src, nonwhite)
        assert coloured > 100 and classes >= 2, (src, coloured, classes)
    # the check can fail: the same page without its PNG files shows no figure
    bare = tmp_path / "bare"
    shutil.copytree(report, bare, ignore=shutil.ignore_patterns("*.png"))
    blank = _screenshot(bare / "report.html", tmp_path / "blank.png", tmp_path / "profile2")
    for src in images:
        assert _find(blank, np.asarray(Image.open(report / src).convert("RGB"))) is None, src
    assert _drawn(blank)[1] < 0.2 * _drawn(shot)[1]


def test_a_scenario_panel_without_any_event_draws_quietly() -> None:
    """A first scenario with no event in any model (its peak-intensity panel empty) gets the
    panel's note and no legend: nothing reaches the user's terminal as a warning."""
    import warnings

    from cascadia.report.figures import scenario_chart

    winters = np.arange(2015, 2101)
    rows = []
    for scenario, peak in (("ssp126", np.nan), ("ssp585", 0.4)):
        for quantity, units, value in (
            ("event_days", "days", 3.0),
            ("peak_intensity", "degree_Celsius", peak),
        ):
            for w in winters:
                rows.append(
                    {
                        "experiment": scenario,
                        "winter": w,
                        "quantity": quantity,
                        "depth": 500.0,
                        "units": units,
                        "multimodel_mean": value,
                        "p10": value - 1,
                        "p90": value + 1,
                    }
                )
    spread = pd.DataFrame(rows)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        chart = scenario_chart(spread, ["ssp126", "ssp585"], "results.zarr", "equal")
    assert chart is not None
    axes = chart.figure.axes
    first_event_days, first_peak = axes[0], axes[2]
    assert first_event_days.get_legend() is not None
    assert first_peak.get_legend() is None
    assert any("no event in any model" in t.get_text() for t in first_peak.texts)
