# gw peer check and P-P test, opt-in targets (not in the default `all`):
#   gw_peer: bilby's dynesty on events of gw.inference, compared with our posteriors;
#   gw_pp:   inference with the gw.inference settings over gw.pp.n-injections injections.
import os

from twinflow.gw.settings import (
    peer_event_names,
    peer_settings_for,
    pp_event_names,
    pp_settings_for,
)

GW_PEER = f"{RESULTS}/gw/peer"
GW_PEER_EVENTS = peer_event_names(config["gw"])
GW_PP = f"{RESULTS}/gw/pp"
GW_PP_EVENTS = pp_event_names(config["gw"])


rule gw_peer_event:
    """dynesty (bilby) on one event: the same strain, PSD, prior and likelihood as our inference."""
    input:
        psd=expand(
            f"{RESULTS}/gw/psd/{{detector}}.h5", detector=config["gw"]["detectors"]
        ),
        strain=lambda wc: [
            *config["gw"]["inference"]["events"]
            .get(wc.event, {})
            .get("data-dict", {})
            .values(),
            *config["gw"]["inference"]["events"]
            .get(wc.event, {})
            .get("psd-dict", {})
            .values(),
        ],
    output:
        result=f"{GW_PEER}/events/{{event}}/dynesty_result.json",
    log:
        f"{RESULTS}/logs/gw/peer/{{event}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/gw/peer/{{event}}.tsv"
    wildcard_constraints:
        event=r"[A-Za-z0-9_.+-]+",
    conda:
        "../../envs/gw.yaml"
    threads: config["gw"]["peer"]["npool"]
    resources:
        mem_mb=4000,
        runtime=600,
    params:
        settings=lambda wc: as_json(peer_settings_for(config["gw"], wc.event)),
        psd=lambda wc, input: [
            f"{d}={p}" for d, p in zip(config["gw"]["detectors"], input.psd)
        ],
    shell:
        "twinflow gw peer --settings {params.settings:q} --psd {params.psd:q} "
        "--npool {threads} --out {output.result:q} > {log:q} 2>&1"


rule gw_peer_compare:
    """Our posterior against dynesty's for one event: JSD per parameter, ln Z, wall times."""
    input:
        ours=f"{GW_INFERENCE}/events/{{event}}/result.json",
        summary=f"{GW_INFERENCE}/events/{{event}}/summary.json",
        dynesty=f"{GW_PEER}/events/{{event}}/dynesty_result.json",
    output:
        comparison=f"{GW_PEER}/events/{{event}}/comparison.json",
        corner=report(
            f"{GW_PEER}/events/{{event}}/corner.png",
            caption="../report/gw_peer_corner.rst",
            category="GW peer check",
            subcategory="Corner plots",
            labels={"event": "{event}", "figure": "ours vs dynesty"},
        ),
    log:
        f"{RESULTS}/logs/gw/peer/{{event}}-compare.log",
    wildcard_constraints:
        event=r"[A-Za-z0-9_.+-]+",
    conda:
        "../../envs/gw.yaml"
    shell:
        "twinflow gw peer-compare --ours {input.ours:q} --ours-summary {input.summary:q} "
        "--dynesty {input.dynesty:q} --out {output.comparison:q} "
        "--corner-plot {output.corner:q} > {log:q} 2>&1"


rule gw_peer_collect:
    """The peer check's table: every compared event, and whether the goals are met."""
    input:
        expand(f"{GW_PEER}/events/{{event}}/comparison.json", event=GW_PEER_EVENTS),
    output:
        summary=f"{GW_PEER}/peer.json",
        csv=f"{GW_PEER}/peer.csv",
        markdown=report(
            f"{GW_PEER}/peer.md",
            caption="../report/gw_peer_table.rst",
            category="GW peer check",
            subcategory="Table",
        ),
    log:
        f"{RESULTS}/logs/gw/peer/collect.log",
    conda:
        "../../envs/gw.yaml"
    shell:
        "twinflow gw peer-collect --out {output.summary:q} --csv {output.csv:q} "
        "--markdown {output.markdown:q} {input:q} > {log:q} 2>&1"


rule gw_peer:
    """Target: the peer check (dynesty against our posteriors) for gw.peer.events."""
    input:
        f"{GW_PEER}/peer.json",
        f"{GW_PEER}/peer.md",
        expand(f"{GW_PEER}/events/{{event}}/corner.png", event=GW_PEER_EVENTS),


rule gw_pp_event:
    """One P-P injection: the inference of gw_inference_event, with gw.pp's injection seed."""
    input:
        model=f"{RESULTS}/gw/train/model.pt",
        psd=expand(
            f"{RESULTS}/gw/psd/{{detector}}.h5", detector=config["gw"]["detectors"]
        ),
    output:
        posterior=f"{GW_PP}/events/{{event}}/posterior.h5",
        result=f"{GW_PP}/events/{{event}}/result.json",
        summary=f"{GW_PP}/events/{{event}}/summary.json",
        corner=f"{GW_PP}/events/{{event}}/corner.png",
        asd=f"{GW_PP}/events/{{event}}/asd.png",
    log:
        f"{RESULTS}/logs/gw/pp/{{event}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/gw/pp/{{event}}.tsv"
    wildcard_constraints:
        event=r"injection-[0-9]+",
    conda:
        "../../envs/gw.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        settings=lambda wc: as_json(pp_settings_for(config["gw"], wc.event)),
        psd=lambda wc, input: [
            f"{d}={p}" for d, p in zip(config["gw"]["detectors"], input.psd)
        ],
        out_dir=lambda wc, output: os.path.dirname(output.summary),
    shell:
        "twinflow gw inference --settings {params.settings:q} --model {input.model:q} "
        "--psd {params.psd:q} --out-dir {params.out_dir:q} --processes {threads} "
        "--corner-plot {output.corner:q} --asd-plot {output.asd:q} > {log:q} 2>&1"


rule gw_pp_collect:
    """The P-P injections' summaries in one file: per-parameter and combined p-values, the P-P plot."""
    input:
        expand(f"{GW_PP}/events/{{event}}/summary.json", event=GW_PP_EVENTS),
    output:
        summary=f"{GW_PP}/summary.json",
        pp=report(
            f"{GW_PP}/pp.png",
            caption="../report/gw_pp.rst",
            category="GW P-P test",
        ),
        efficiency=report(
            f"{GW_PP}/efficiency.png",
            caption="../report/gw_pp_efficiency.rst",
            category="GW P-P test",
        ),
    log:
        f"{RESULTS}/logs/gw/pp/collect.log",
    conda:
        "../../envs/gw.yaml"
    shell:
        "twinflow gw inference-collect --out {output.summary:q} --pp-plot {output.pp:q} "
        "--efficiency-plot {output.efficiency:q} {input:q} > {log:q} 2>&1"


rule gw_pp:
    """Target: the P-P test over gw.pp.n-injections injections."""
    input:
        f"{GW_PP}/summary.json",
        f"{GW_PP}/pp.png",
        f"{GW_PP}/efficiency.png",
