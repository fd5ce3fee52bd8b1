"""The scheduled-reprocessing examples in deploy/ are valid as written.

systemd's own ``systemd-analyze verify`` checks the unit files; the cron line and the
SLURM crontab's schedule are checked field by field against crontab(5) (ranges, lists,
steps, names), their commands by ``sh -n`` and, like the systemd ``ExecStart`` after
systemd's variable expansion, by the real ``cascadia-ensemble`` argument parser: each
example runs ``reprocess`` under ``flock`` with catalogs and a results store.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from cascadia.cli import build_parser

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
SYSTEMD = DEPLOY / "systemd"

#: crontab(5) fields: (lowest, highest, names).
FIELDS = (
    (0, 59, ()),
    (0, 23, ()),
    (1, 31, ()),
    (1, 12, ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]),
    (0, 7, ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]),
)
SPECIAL = {
    "@reboot",
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
}


def cron_field_errors(field: str, index: int) -> list[str]:
    """Why ``field`` is not a valid crontab(5) time field number ``index`` (empty: valid)."""
    low, high, names = FIELDS[index]
    errors = []
    for item in field.split(","):
        base, _, step = item.partition("/")
        if step and (not step.isdigit() or int(step) == 0):
            errors.append(f"bad step {item!r}")
        if base == "*":
            continue
        bounds = base.split("-")
        if len(bounds) > 2 or (step and len(bounds) == 1):
            errors.append(f"bad range {item!r}")
            continue
        values = []
        for bound in bounds:
            if bound.isdigit():
                values.append(int(bound))
            elif len(bounds) == 1 and bound.lower() in names:
                values.append(low + names.index(bound.lower()))
            else:
                errors.append(f"{bound!r} is not a number{' or a name' if names else ''}")
        if any(not low <= v <= high for v in values):
            errors.append(f"{item!r} outside {low}-{high}")
        elif len(values) == 2 and values[0] > values[1]:
            errors.append(f"reversed range {item!r}")
    return errors


def parse_cron_line(line: str, with_user: bool) -> tuple[str, str]:
    """``(user, command)`` of a crontab line; raises ValueError naming what is wrong."""
    parts = line.split(None, 1 if line.startswith("@") else 5)
    if line.startswith("@"):
        if parts[0] not in SPECIAL or len(parts) < 2:
            raise ValueError(f"bad special schedule in {line!r}")
        rest = parts[1]
    else:
        if len(parts) < 6:
            raise ValueError(f"fewer than five time fields and a command: {line!r}")
        errors = [e for i in range(5) for e in cron_field_errors(parts[i], i)]
        if errors:
            raise ValueError("; ".join(errors))
        rest = parts[5]
    user, command = rest.split(None, 1) if with_user else ("", rest)
    if re.search(r"(?<!\\)%", command):
        raise ValueError("unescaped % (cron turns it into a newline)")
    if not command.strip():
        raise ValueError("no command")
    return user, command


def _entries(path: Path) -> tuple[dict[str, str], list[str]]:
    """Variables and schedule lines of a crontab-like file (comments and blanks skipped)."""
    variables, lines = {}, []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)", line)
        if match:
            variables[match.group(1)] = match.group(2)
        else:
            lines.append(line)
    return variables, lines


def _check_command(argv: list[str]) -> None:
    """A flock-guarded ``cascadia-ensemble reprocess`` that the real parser accepts."""
    assert Path(argv[0]).name == "flock" and {"-n", "--nonblock"} & set(argv), argv
    lock = next(i for i, word in enumerate(argv) if word.endswith(".lock"))
    binary, *args = argv[lock + 1 :]
    assert Path(binary).name == "cascadia-ensemble", binary
    if ">>" in args:  # the cron line's redirection is the shell's
        args = args[: args.index(">>")]
    parsed = build_parser().parse_args(args)
    assert parsed.handler.__name__ == "_reprocess"
    assert parsed.catalog and all(c.endswith(".yaml") for c in parsed.catalog)
    assert parsed.results.endswith(".zarr")


def test_the_cron_validator_rejects_what_cron_rejects() -> None:
    for bad in ("60 3 * * * x", "0 24 * * * x", "0 3 0 * * x", "0 3 * 13 * x", "0 3 * * 8 x",
                "0 3 * * x", "0 3-1 * * * x", "*/0 * * * * x", "0 3 * * mon-fri x",
                "0 3 * * * date +%F"):  # fmt: skip
        with pytest.raises(ValueError):
            parse_cron_line(bad, with_user=False)
    assert parse_cron_line("*/15 1-5,23 1 jan,dec sun x y", with_user=False) == ("", "x y")


def test_the_cron_line_is_valid() -> None:
    variables, lines = _entries(DEPLOY / "cron" / "cascadia-reprocess.cron")
    assert variables["SHELL"] == "/bin/sh" and "/usr/bin" in variables["PATH"]
    (line,) = lines
    user, command = parse_cron_line(line, with_user=True)  # the /etc/cron.d format
    assert user == "cascadia"
    subprocess.run(["sh", "-n", "-c", command], check=True)
    _check_command(shlex.split(command))


def test_the_slurm_crontab_is_valid(tmp_path: Path) -> None:
    path = DEPLOY / "slurm" / "reprocess.scrontab"
    options = [
        line.split(None, 1)[1]
        for line in path.read_text().splitlines()
        if line.startswith("#SCRON")
    ]
    _, lines = _entries(path)
    (line,) = lines
    _, command = parse_cron_line(line, with_user=False)
    subprocess.run(["sh", "-n", "-c", command], check=True)
    _check_command(shlex.split(command))
    names = [o.split("=", 1)[0] for o in options]
    assert "--job-name" in names and "--time" in names
    sbatch = shutil.which("sbatch")
    if sbatch is None:
        pytest.skip("sbatch not installed: the #SCRON option names were not checked by SLURM")
    # sbatch reads a configuration even for --help (else it looks for one in DNS)
    conf = tmp_path / "slurm.conf"
    conf.write_text(
        "ClusterName=check\nSlurmctldHost=localhost\nNodeName=localhost CPUs=1\n"
        "PartitionName=check Nodes=localhost\n"
    )
    usage = subprocess.run(
        [sbatch, "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "SLURM_CONF": str(conf)},
    ).stdout
    known = set(re.findall(r"(--[a-z][a-z-]*)", usage))
    assert len(known) > 50 and set(names) <= known, set(names) - known


def _environment_file(path: Path) -> dict[str, str]:
    values = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value
    return values


def _systemd_expand(command: str, env: dict[str, str]) -> list[str]:
    """``ExecStart`` as systemd.service(5) expands it: ``${VAR}`` one word, ``$VAR`` split."""
    words = []
    for word in shlex.split(command):
        whole = re.fullmatch(r"\$\{(\w+)\}", word)
        split = re.fullmatch(r"\$(\w+)", word)
        if whole:
            words.append(env[whole.group(1)])
        elif split:
            words += env[split.group(1)].split()
        else:
            words.append(re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], word))
    return words


def test_the_systemd_service_runs_reprocess_under_flock() -> None:
    service = (SYSTEMD / "cascadia-reprocess.service").read_text()
    (exec_start,) = re.findall(r"^ExecStart=(.*)$", service, flags=re.M)
    assert "EnvironmentFile=/etc/cascadia/reprocess.env" in service
    env = _environment_file(SYSTEMD / "reprocess.env")
    _check_command(_systemd_expand(exec_start, env))
    assert "Type=oneshot" in service and "SuccessExitStatus=75" in service


def test_systemd_analyze_verifies_the_units(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed")
    units = [SYSTEMD / "cascadia-reprocess.service", SYSTEMD / "cascadia-reprocess.timer"]
    for unit in units:
        shutil.copy(unit, tmp_path / unit.name)
    done = subprocess.run(
        [analyze, "verify", *(str(tmp_path / u.name) for u in units)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr
