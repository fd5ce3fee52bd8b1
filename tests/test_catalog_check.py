"""``cascadia-ensemble catalog check``: placeholders refused, ``--open`` finds layout failures.

``--open`` opens one combination per source and standardises its first time steps:
on a tiny twin world every source passes; on real broken stores (a copy of the
twin's ERA5 Zarr store without its time array, or without one variable's array)
the plain check passes and ``--open`` names the failure in one line. The shipped
templates (``*.example.json``, assets under ``file:///path/to/``) are refused with
what to edit, and a collection that is not JSON (the first published EURO-CORDEX
collection) is named with the line and column of the error.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from helpers import two_year_preset

from cascadia.cli import main
from cascadia.twin.world import build_world

CATALOGS = Path(__file__).resolve().parents[1] / "catalogs"
TEMPLATES = ["20cr.yaml", "era20c.yaml", "era5-cds.yaml"]  # every source a template


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("check") / "world"
    build_world(str(root), two_year_preset("check"), seed=0)
    return root


def _check(capsys, *catalogs: Path, open_: bool = False) -> tuple[int, str]:
    argv = ["catalog", "check", *(["--open"] if open_ else [])]
    for catalog in catalogs:
        argv += ["--catalog", str(catalog)]
    code = main(argv)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    return code, captured.out


def _marked(out: str, mark: str) -> dict[str, str]:
    """Source name -> its ``✓``/``✗`` line."""
    lines = [line.strip() for line in out.splitlines() if line.strip().startswith(mark)]
    return {line.split()[1].rstrip(":"): line for line in lines}


def test_open_passes_every_source_of_the_twin(world: Path, capsys) -> None:
    catalogs = [world / "catalogs/reanalysis.yaml", world / "catalogs/cmip6.yaml"]
    code, out = _check(capsys, *catalogs, open_=True)
    assert code == 0, out
    passed = _marked(out, "✓")
    assert set(passed) == {"era5", "20cr", "era20c", "cmip6"}
    opens = "ERA5/reanalysis/r1 opens: hurs, pr, psl, rsds, sfcWind, tas, tos, uas, vas"
    assert opens in passed["era5"]
    assert "over 3 region(s) from 2013-01-01" in passed["era5"]
    assert not _marked(out, "✗")


def _broken_era5(world: Path, folder: Path, drop: str) -> Path:
    """A run catalog of the twin's ERA5 read from a copy of its store without ``drop``."""
    original = world / "reanalysis/era5/era5-hourly-single-levels.zarr"
    store = folder / f"era5-without-{drop}.zarr"
    shutil.copytree(original, store)
    shutil.rmtree(store / drop)
    meta = json.loads((store / "zarr.json").read_text())
    del meta["consolidated_metadata"]["metadata"][drop]
    (store / "zarr.json").write_text(json.dumps(meta))
    table = (world / "collections/era5.csv").read_text()
    (folder / "era5.csv").write_text(table.replace(original.as_uri(), store.as_uri()))
    spec = json.loads((world / "collections/era5.json").read_text())
    (folder / "era5.json").write_text(json.dumps({**spec, "catalog_file": "era5.csv"}))
    catalog = yaml.safe_load((world / "catalogs/reanalysis.yaml").read_text())
    era5 = next(s for s in catalog["sources"] if s["name"] == "era5")
    catalog["sources"] = [{**era5, "collection": str(folder / "era5.json")}]
    path = folder / "era5.yaml"
    path.write_text(yaml.safe_dump(catalog))
    return path


@pytest.mark.parametrize(
    ("drop", "named"),
    [
        ("time", "no 'time' coordinate (a 'time' dimension without values"),
        ("mean_sea_level_pressure", "variables ['mean_sea_level_pressure'] are listed in the "),
    ],
)
def test_open_names_a_broken_store_in_one_line(
    world: Path, tmp_path: Path, capsys, drop: str, named: str
) -> None:
    catalog = _broken_era5(world, tmp_path, drop)
    code, out = _check(capsys, catalog)
    assert code == 0  # the collection lists every variable: only opening finds it
    code, out = _check(capsys, catalog, open_=True)
    assert code == 1
    line = _marked(out, "✗")["era5"]
    assert "[era5] ERA5/reanalysis/r1: " in line and named in line
    assert not _marked(out, "✓")


@pytest.mark.parametrize("name", TEMPLATES)
def test_placeholder_collections_are_refused_with_what_to_edit(name: str, capsys) -> None:
    code, out = _check(capsys, CATALOGS / name)
    assert code == 1
    (line,) = _marked(out, "✗").values()
    assert (
        ".example.json is a template whose assets are placeholders (e.g. file:///path/to/" in line
    )
    assert "replace the paths with the absolute file:// URIs" in line
    assert "point 'collection' of source" in line and name in line


def test_a_renamed_template_is_still_refused(tmp_path: Path, capsys) -> None:
    """The placeholder paths, not the file name, make a template."""
    for suffix in ("csv", "json"):
        text = (CATALOGS / f"collections/20cr.example.{suffix}").read_text()
        (tmp_path / f"mine.{suffix}").write_text(text.replace("20cr.example.csv", "mine.csv"))
    catalog = yaml.safe_load((CATALOGS / "20cr.yaml").read_text())
    catalog["sources"][0]["collection"] = str(tmp_path / "mine.json")
    (tmp_path / "20cr.yaml").write_text(yaml.safe_dump(catalog))
    code, out = _check(capsys, tmp_path / "20cr.yaml")
    assert code == 1
    assert "mine.json is a template whose assets are placeholders" in _marked(out, "✗")["20cr"]


def test_the_first_published_euro_cordex_json_is_named_with_its_error(
    tmp_path: Path, capsys
) -> None:
    """The shipped copy with the two defects of the first published version put back."""
    text = (CATALOGS / "collections/euro-cordex.json").read_text()
    broken = text.replace('"institute_id",\n      "vocabulary": ""', '"institute_id",')
    broken = broken.replace(
        '"rcm_version_id",\n      "frequency"', '"rcm_version_id"\n      "frequency"'
    )
    assert broken.count("\n") == text.count("\n") - 1 and broken != text
    (tmp_path / "CORDEX-CMIP5.json").write_text(broken)
    catalog = yaml.safe_load((CATALOGS / "cordex.yaml").read_text())
    catalog["sources"] = [
        {**catalog["sources"][0], "collection": str(tmp_path / "CORDEX-CMIP5.json")}
    ]
    (tmp_path / "cordex.yaml").write_text(yaml.safe_dump(catalog))
    code, out = _check(capsys, tmp_path / "cordex.yaml")
    assert code == 1
    line = _marked(out, "✗")["euro-cordex"]
    assert "CORDEX-CMIP5.json is not valid JSON (line" in line
    assert "point 'collection' at a corrected copy" in line


@pytest.mark.parametrize("name", ["../escaped", "/abs", ".hidden", "a/b", "x y", ""])
def test_a_source_name_that_could_leave_the_cache_is_refused(
    name: str, tmp_path: Path, capsys
) -> None:
    """Issue 17 item 5: a source's name is its folder in the predictor cache."""
    catalog = yaml.safe_load((CATALOGS / "20cr.yaml").read_text())
    catalog["sources"][0]["name"] = name
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(catalog))
    code = main(["catalog", "check", "--catalog", str(tmp_path / "bad.yaml")])
    captured = capsys.readouterr()
    assert code == 2
    assert "Traceback" not in captured.out + captured.err
    assert f"source name {name!r} must start with a letter or digit" in captured.err
    assert not (tmp_path / "escaped").exists()
