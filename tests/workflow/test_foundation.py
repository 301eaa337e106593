"""The workflow itself: lint and format gates, config validation, reruns after config edits,
the report, and the SLURM profile against mock SLURM tools."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tests.conftest import REPO, TEST_CONFIG, snakemake

pytestmark = pytest.mark.workflow
BIN = Path(sys.executable).parent


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def jobs_in_dry_run(output: str) -> list[str]:
    """Rule names of the jobs a dry run would execute (from its job-stats table)."""
    table = re.search(r"Job stats:\n(.*?)\n\n", output, re.S)
    if table is None:
        return []
    rows = [line.split() for line in table.group(1).splitlines()[2:]]
    return sorted(name for name, *_ in rows if name != "total")


@pytest.fixture(scope="module")
def psd_run(tmp_path_factory) -> Path:
    """A work directory in which `snakemake gw_psd` has run on config/test.yaml."""
    workdir = tmp_path_factory.mktemp("psd_run")
    snakemake(workdir, "gw_psd", "--cores", "2")
    return workdir


def test_lint_passes(tmp_path):
    result = snakemake(tmp_path, "--lint", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Lints for" not in result.stdout + result.stderr


def test_snakefmt_check_passes():
    files = [REPO / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))]
    result = subprocess.run(
        [str(BIN / "snakefmt"), "--check", *map(str, files)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "override, fragments",
    [
        (
            {"gw": {"psd": {"n-stretches": "many"}}},
            ["n-stretches", "'many' is not of type 'integer'"],
        ),
        ({"gw": {"detectors": ["H1", "X1"]}}, ["detectors", "'X1'"]),
        ({"gw": {"psd": {"window": "hanning"}}}, ["window", "'hanning'"]),
    ],
)
def test_bad_config_is_rejected_before_any_job(tmp_path, override, fragments):
    bad = write_yaml(tmp_path / "bad.yaml", override)
    result = snakemake(
        tmp_path, "gw_psd", "--cores", "1", configfiles=[TEST_CONFIG, bad], check=False
    )
    assert result.returncode != 0
    for fragment in fragments:
        assert fragment in result.stderr + result.stdout
    assert not (tmp_path / "results").exists()


def test_psd_stage_writes_banks_and_nothing_left_to_do(psd_run):
    for detector in yaml.safe_load(TEST_CONFIG.read_text())["gw"]["detectors"]:
        assert (psd_run / "results" / "gw" / "psd" / f"{detector}.h5").is_file()
        assert (psd_run / "results" / "gw" / "psd" / f"{detector}.png").is_file()
        assert (psd_run / "results" / "logs" / "gw" / "psd" / f"{detector}.log").is_file()
    result = snakemake(psd_run, "gw_psd", "-n")
    assert "Nothing to be done" in result.stdout + result.stderr


def dry_run_jobs(workdir: Path, override: Path, target: str = "all") -> list[dict]:
    """The jobs a dry run would execute after merging ``override``: rule, wildcards, reason."""
    out = snakemake(workdir, target, "-n", configfiles=[TEST_CONFIG, override]).stdout
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", out):
        head = re.match(r"(?:local)?rule (\w+):", block)
        if head:
            fields = dict(re.findall(r"^    (\w+): (.*)$", block, re.M))
            jobs.append(
                {
                    "rule": head.group(1),
                    "wildcards": fields.get("wildcards", ""),
                    "reason": fields.get("reason", ""),
                }
            )
    return jobs


def rerun_by_params(jobs: list[dict]) -> list[str]:
    return sorted(
        f"{j['rule']}[{j['wildcards']}]"
        for j in jobs
        if j["reason"].startswith("Params have changed")
    )


def test_editing_a_psd_value_reruns_exactly_the_psd_jobs(psd_run, tmp_path):
    override = write_yaml(tmp_path / "override.yaml", {"gw": {"psd": {"n-stretches": 9}}})
    jobs = dry_run_jobs(psd_run, override)
    assert rerun_by_params(jobs) == ["gw_psd_bank[detector=H1]", "gw_psd_bank[detector=L1]"]
    # everything else that runs either was never run here or depends on the PSD banks
    for job in jobs:
        assert job["reason"].startswith(
            ("Params have changed", "Missing output files", "Input files updated by another job")
        ), job
    dry = snakemake(psd_run, "gw_psd", "-n", configfiles=[TEST_CONFIG, override])
    assert jobs_in_dry_run(dry.stdout) == ["gw_psd", "gw_psd_bank"]
    assert re.search(r"gw_psd_bank\s+2\b", dry.stdout)


def test_editing_one_detectors_curve_reruns_only_that_detector(psd_run, tmp_path):
    curves = {"H1": "aLIGO-O3-low", "L1": "AdV-O3-low", "V1": "AdV-O3-low"}
    override = write_yaml(
        tmp_path / "override.yaml", {"gw": {"psd": {"simulation": {"curves": curves}}}}
    )
    assert rerun_by_params(dry_run_jobs(psd_run, override)) == ["gw_psd_bank[detector=L1]"]


def other_sections() -> list[tuple[str, ...]]:
    """A dotted path to one leaf value in every config section other than the PSD stage's."""
    config = yaml.safe_load(TEST_CONFIG.read_text())
    paths = [("gw", "minimum-frequency")]  # an analysis key the PSD stage does not use
    for top, section in config.items():
        subsections = (
            [(top, k) for k in section if k != "psd" and isinstance(section[k], dict)]
            if top == "gw"
            else [(top,)]
        )
        for path in subsections:
            node = config
            for part in path:
                node = node[part]
            leaf = next(
                (
                    k
                    for k, v in node.items()
                    if isinstance(v, (int, float)) and not isinstance(v, bool)
                ),
                None,
            )
            if leaf is not None:
                paths.append((*path, leaf))
    return paths


@pytest.mark.parametrize("path", other_sections(), ids=".".join)
def test_editing_another_section_reruns_no_psd_job(psd_run, tmp_path, path):
    config = yaml.safe_load(TEST_CONFIG.read_text())
    node = config
    for part in path[:-1]:
        node = node[part]
    override = {}
    target = override
    for part in path[:-1]:
        target = target.setdefault(part, {})
    target[path[-1]] = node[path[-1]] + 1
    override_file = write_yaml(tmp_path / "override.yaml", override)
    assert not [j for j in dry_run_jobs(psd_run, override_file) if j["rule"] == "gw_psd_bank"]
    dry = snakemake(psd_run, "gw_psd", "-n", configfiles=[TEST_CONFIG, override_file])
    assert "Nothing to be done" in dry.stdout + dry.stderr


@pytest.mark.parametrize(
    "caption", sorted((REPO / "workflow" / "report").glob("*.rst")), ids=lambda p: p.name
)
def test_report_captions_are_valid_restructuredtext(caption):
    """A caption with an RST error (e.g. |x| read as a substitution) renders as an error box."""
    import docutils.core
    import docutils.utils

    try:
        docutils.core.publish_string(
            caption.read_text(),
            writer="html",
            settings_overrides={"report_level": 2, "halt_level": 2},
        )
    except docutils.utils.SystemMessage as err:
        pytest.fail(f"{caption.name}: {err}")


def test_report_renders_offline(psd_run):
    report = psd_run / "report.html"
    snakemake(psd_run, "gw_psd", "--report", str(report))
    html = report.read_text(errors="replace")
    assert report.stat().st_size > 10_000
    assert "PSD" in html and "H1.png" in html


def test_slurm_profile_submits_what_the_rules_request(tmp_path):
    """Run gw_psd through profiles/slurm against mock sbatch/sacct/srun and read the sbatch lines."""
    bindir, state, workdir = tmp_path / "bin", tmp_path / "slurm", tmp_path / "work"
    for d in (bindir, state, workdir):
        d.mkdir()
    mock = REPO / "tests" / "workflow" / "mock_slurm" / "mock_slurm.py"
    for name in (
        "sbatch",
        "sacct",
        "squeue",
        "srun",
        "sinfo",
        "sacctmgr",
        "sshare",
        "scontrol",
        "scancel",
    ):
        (bindir / name).symlink_to(mock)
    env = {
        "PATH": f"{bindir}{os.pathsep}{BIN}{os.pathsep}{os.environ['PATH']}",
        "MOCK_SLURM_DIR": str(state),
    }
    snakemake(
        workdir,
        "gw_psd",
        "--profile",
        str(REPO / "profiles" / "slurm"),
        "--slurm-init-seconds-before-status-checks",
        "1",
        "--seconds-between-status-checks",
        "1",
        "--latency-wait",
        "5",
        env=env,
    )

    calls = [json.loads(line) for line in (state / "sbatch_calls.jsonl").read_text().splitlines()]
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    expected = profile["set-resources"]["gw_psd_bank"]
    assert len(calls) == 2  # one job per detector; the target rule gw_psd runs locally
    for call in calls:
        line = " ".join(call)
        assert "--comment rule_gw_psd_bank_wildcards_" in line
        assert f"--mem {expected['mem_mb']}" in line
        assert f"-t {expected['runtime']}" in line
        assert "--cpus-per-task=1" in line  # the rule's threads, not a profile-wide override
        assert "gpu" not in line.replace("--gpus-per", "")  # CPU jobs ask for no GPU
    assert "cpus_per_task" not in profile.get("default-resources", {})
    assert (workdir / "results" / "gw" / "psd" / "H1.h5").is_file()
    # training rules get a GPU through the profile
    for rule in (
        "gw_train",
        "glitch_train_translation",
        "glitch_train_vae",
        "anomaly_train_sigma",
    ):
        assert profile["set-resources"][rule]["gpu"] >= 1
