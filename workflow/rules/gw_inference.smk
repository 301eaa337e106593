# gw inference: per event (injections and real strain) sampling with the posterior model and
# importance reweighting with the exact likelihood; the analysis-settings sweep; report figures.
import os
import re

from twinflow.gw.settings import (
    inference_event_names,
    inference_settings_for,
    inference_sweep_settings_for,
    real_event_names,
    refused_events,
)

GW_INFERENCE = f"{RESULTS}/gw/inference"
GW_INFERENCE_EVENTS = inference_event_names(config["gw"])
GW_REAL_EVENTS = real_event_names(config["gw"])
# Events the trained prior cannot hold are not analysed: said here, before any job, and
# listed under "refused" in the collected summary.
GW_REFUSED_EVENTS = refused_events(config["gw"])
for _reason in GW_REFUSED_EVENTS.values():
    print(_reason, file=sys.stderr)


rule gw_inference_event:
    """One event: samples from the model, importance weights, bilby Result, summary, plots."""
    input:
        model=f"{RESULTS}/gw/train/model.pt",
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
        posterior=f"{GW_INFERENCE}/events/{{event}}/posterior.h5",
        result=f"{GW_INFERENCE}/events/{{event}}/result.json",
        summary=f"{GW_INFERENCE}/events/{{event}}/summary.json",
        corner=report(
            f"{GW_INFERENCE}/events/{{event}}/corner.png",
            caption="../report/gw_inference_corner.rst",
            category="GW inference",
            subcategory="Corner plots",
            labels={"event": "{event}", "figure": "corner"},
        ),
        asd=report(
            f"{GW_INFERENCE}/events/{{event}}/asd.png",
            caption="../report/gw_inference_asd.rst",
            category="GW inference",
            subcategory="ASDs and token masks",
            labels={"event": "{event}", "figure": "ASD"},
        ),
    log:
        f"{RESULTS}/logs/gw/inference/{{event}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/gw/inference/{{event}}.tsv"
    wildcard_constraints:
        event=r"[A-Za-z0-9_.+-]+",
    conda:
        "../../envs/gw.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        settings=lambda wc: as_json(inference_settings_for(config["gw"], wc.event)),
        psd=lambda wc, input: [
            f"{d}={p}" for d, p in zip(config["gw"]["detectors"], input.psd)
        ],
        out_dir=lambda wc, output: os.path.dirname(output.summary),
    shell:
        "twinflow gw inference --settings {params.settings:q} --model {input.model:q} "
        "--psd {params.psd:q} --out-dir {params.out_dir:q} --processes {threads} "
        "--corner-plot {output.corner:q} --asd-plot {output.asd:q} > {log:q} 2>&1"


rule gw_inference_collect:
    """All events' summaries in one file; P-P plot and sampling-efficiency histogram of the injections."""
    input:
        expand(
            f"{GW_INFERENCE}/events/{{event}}/summary.json", event=GW_INFERENCE_EVENTS
        ),
    output:
        summary=f"{GW_INFERENCE}/summary.json",
        pp=report(
            f"{GW_INFERENCE}/pp.png",
            caption="../report/gw_inference_pp.rst",
            category="GW inference",
            subcategory="Injections",
        ),
        efficiency=report(
            f"{GW_INFERENCE}/efficiency.png",
            caption="../report/gw_inference_efficiency.rst",
            category="GW inference",
            subcategory="Injections",
        ),
    log:
        f"{RESULTS}/logs/gw/inference/collect.log",
    conda:
        "../../envs/gw.yaml"
    params:
        refused=as_json(GW_REFUSED_EVENTS),
    shell:
        "twinflow gw inference-collect --out {output.summary:q} --pp-plot {output.pp:q} "
        "--efficiency-plot {output.efficiency:q} --refused {params.refused:q} {input:q} "
        "> {log:q} 2>&1"


rule gw_inference_event_report:
    """A real event's figures: whitened strain with the maximum-likelihood signal, sky map, ESS."""
    input:
        posterior=f"{GW_INFERENCE}/events/{{event}}/posterior.h5",
        summary=f"{GW_INFERENCE}/events/{{event}}/summary.json",
    output:
        strain=report(
            f"{GW_INFERENCE}/events/{{event}}/strain.png",
            caption="../report/gw_inference_strain.rst",
            category="GW inference",
            subcategory="Real events",
            labels={"event": "{event}", "figure": "whitened strain"},
        ),
        skymap=report(
            f"{GW_INFERENCE}/events/{{event}}/skymap.png",
            caption="../report/gw_inference_skymap.rst",
            category="GW inference",
            subcategory="Real events",
            labels={"event": "{event}", "figure": "sky map"},
        ),
        ess=report(
            f"{GW_INFERENCE}/events/{{event}}/ess.png",
            caption="../report/gw_inference_ess.rst",
            category="GW inference",
            subcategory="Real events",
            labels={"event": "{event}", "figure": "ESS"},
        ),
    log:
        f"{RESULTS}/logs/gw/inference/{{event}}-report.log",
    wildcard_constraints:
        event="|".join(map(re.escape, GW_REAL_EVENTS)) or "(?!)",
    conda:
        "../../envs/gw.yaml"
    shell:
        "twinflow gw inference-event-report --posterior {input.posterior:q} "
        "--summary {input.summary:q} --strain-plot {output.strain:q} "
        "--skymap-plot {output.skymap:q} --ess-plot {output.ess:q} > {log:q} 2>&1"


rule gw_inference_sweep:
    """One event under several analysis settings (detectors, f_min, f_max), the same model."""
    input:
        model=f"{RESULTS}/gw/train/model.pt",
        psd=expand(
            f"{RESULTS}/gw/psd/{{detector}}.h5", detector=config["gw"]["detectors"]
        ),
        strain=lambda wc: [
            *config["gw"]["inference"]["events"]
            .get(config["gw"]["inference"]["sweep"]["event"], {})
            .get("data-dict", {})
            .values()
        ],
    output:
        summary=f"{GW_INFERENCE}/sweep/summary.json",
        corner=report(
            f"{GW_INFERENCE}/sweep/corner.png",
            caption="../report/gw_inference_sweep.rst",
            category="GW inference",
            subcategory="Settings sweep",
        ),
    log:
        f"{RESULTS}/logs/gw/inference/sweep.log",
    benchmark:
        f"{RESULTS}/benchmarks/gw/inference/sweep.tsv"
    conda:
        "../../envs/gw.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        settings=lambda wc: as_json(inference_sweep_settings_for(config["gw"])),
        psd=lambda wc, input: [
            f"{d}={p}" for d, p in zip(config["gw"]["detectors"], input.psd)
        ],
        out_dir=lambda wc, output: os.path.dirname(output.summary),
    shell:
        "twinflow gw inference-sweep --settings {params.settings:q} --model {input.model:q} "
        "--psd {params.psd:q} --out-dir {params.out_dir:q} --processes {threads} "
        "--plot {output.corner:q} > {log:q} 2>&1"


rule gw_inference:
    """Target: every event's posterior, the collected summary, the sweep and their figures."""
    input:
        f"{GW_INFERENCE}/summary.json",
        f"{GW_INFERENCE}/pp.png",
        f"{GW_INFERENCE}/efficiency.png",
        f"{GW_INFERENCE}/sweep/summary.json",
        f"{GW_INFERENCE}/sweep/corner.png",
        expand(
            f"{GW_INFERENCE}/events/{{event}}/{{figure}}.png",
            event=GW_REAL_EVENTS,
            figure=["strain", "skymap", "ess"],
        ),
