"""`snakemake -n gw_peer gw_pp` on config/test.yaml plans the peer check and the P-P test (and
neither is part of the default target); a bad peer setting stops the workflow at parse time."""

from __future__ import annotations

import pytest
import yaml
from tests.conftest import planned_rules

pytestmark = pytest.mark.workflow


def test_peer_and_pp_targets_plan_their_jobs(tmp_path, run_snakemake, repo):
    config = yaml.safe_load((repo / "config" / "test.yaml").read_text())["gw"]
    dry = run_snakemake(tmp_path, "-n", "gw_peer", "gw_pp")
    rules = planned_rules(dry)
    assert {
        "gw_peer_event",
        "gw_peer_compare",
        "gw_peer_collect",
        "gw_peer",
        "gw_pp_event",
        "gw_pp_collect",
        "gw_pp",
        "gw_train",
    } <= rules
    for line in dry.stdout.splitlines():
        parts = line.split()
        if parts[:1] in (["gw_peer_event"], ["gw_peer_compare"]) and len(parts) == 2:
            assert int(parts[1]) == len(config["peer"]["events"])
        if parts[:1] == ["gw_pp_event"] and len(parts) == 2:
            assert int(parts[1]) == config["pp"]["n-injections"]
        if parts[:1] == ["gw_inference_event"] and len(parts) == 2:
            # only the peer events' own inference, not every injection
            assert int(parts[1]) == len(config["peer"]["events"])
    for event in config["peer"]["events"]:
        assert f"results/gw/peer/events/{event}/dynesty_result.json" in dry.stdout
    assert "results/gw/pp/events/injection-5/summary.json" in dry.stdout


def test_bad_peer_event_stops_at_parse_time(tmp_path, run_snakemake, repo):
    override = tmp_path / "override.yaml"
    override.write_text(yaml.safe_dump({"gw": {"peer": {"events": ["injection-0", "GW0"]}}}))
    result = run_snakemake(
        tmp_path,
        "-n",
        "gw_peer",
        configfiles=[repo / "config" / "test.yaml", override],
        check=False,
    )
    assert result.returncode != 0
    assert "peer.events = 'GW0'" in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()
