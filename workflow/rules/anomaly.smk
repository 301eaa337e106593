# anomaly branch: events -> a sideband flow per SR and SIGMA's model once -> one job per
# (SR, method) -> summary.json and the report plots.
from twinflow.anomaly.methods import METHODS
from twinflow.anomaly.scan import (
    gather_settings,
    method_inputs,
    method_settings,
    model_arguments,
    region_index,
    sideband_flow_settings,
    sigma_settings,
)

ANOMALY = f"{RESULTS}/anomaly"
ANOMALY_REGIONS = [f"sr{i}" for i in range(len(config["anomaly"]["scan"]["centres"]))]


rule anomaly_events:
    """The event samples: data with injected signal, extra background, signal and test sets."""
    output:
        f"{ANOMALY}/events.h5",
    log:
        f"{RESULTS}/logs/anomaly/events.log",
    benchmark:
        f"{RESULTS}/benchmarks/anomaly/events.tsv"
    conda:
        "../../envs/anomaly.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        settings=as_json(
            {"seed": config["anomaly"]["seed"], "data": config["anomaly"]["data"]}
        ),
    shell:
        "twinflow anomaly events --settings {params.settings:q} --out {output:q} > {log:q} 2>&1"


rule anomaly_sideband_flow:
    """Per SR: the conditional background flow p(x|m) trained on the sidebands."""
    input:
        events=f"{ANOMALY}/events.h5",
    output:
        f"{ANOMALY}/{{region}}/sideband_flow.pt",
    log:
        f"{RESULTS}/logs/anomaly/{{region}}/sideband_flow.log",
    benchmark:
        f"{RESULTS}/benchmarks/anomaly/{{region}}/sideband_flow.tsv"
    wildcard_constraints:
        region="sr[0-9]+",
    conda:
        "../../envs/anomaly.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
    params:
        settings=lambda wc: as_json(
            sideband_flow_settings(config["anomaly"], region_index(wc.region))
        ),
    shell:
        "OMP_NUM_THREADS={threads} twinflow anomaly sideband-flow --settings {params.settings:q} "
        "--events {input.events:q} --out {output:q} > {log:q} 2>&1"


rule anomaly_train_sigma:
    """SIGMA's conditional flow-matching model, trained once on all data for every SR."""
    input:
        events=f"{ANOMALY}/events.h5",
    output:
        f"{ANOMALY}/sigma/model.pt",
    log:
        f"{RESULTS}/logs/anomaly/sigma/train.log",
    benchmark:
        f"{RESULTS}/benchmarks/anomaly/sigma/train.tsv"
    conda:
        "../../envs/anomaly.yaml"
    threads: 1
    resources:
        mem_mb=6000,
        runtime=120,
    params:
        settings=as_json(sigma_settings(config["anomaly"])),
    shell:
        "OMP_NUM_THREADS={threads} twinflow anomaly train-sigma --settings {params.settings:q} "
        "--events {input.events:q} --out {output:q} > {log:q} 2>&1"


rule anomaly_method:
    """Per (SR, method): fit the detector, score the labelled test events in the SR."""
    input:
        unpack(lambda wc: method_inputs(ANOMALY, wc.region, wc.method)),
    output:
        f"{ANOMALY}/{{region}}/{{method}}.h5",
    log:
        f"{RESULTS}/logs/anomaly/{{region}}/{{method}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/anomaly/{{region}}/{{method}}.tsv"
    wildcard_constraints:
        region="sr[0-9]+",
        method="|".join(METHODS),
    conda:
        "../../envs/anomaly.yaml"
    threads: 1
    resources:
        mem_mb=6000,
        runtime=120,
    params:
        settings=lambda wc: as_json(
            method_settings(config["anomaly"], region_index(wc.region), wc.method)
        ),
        models=lambda wc, input: model_arguments(input),
    shell:
        "OMP_NUM_THREADS={threads} twinflow anomaly method --settings {params.settings:q} "
        "--events {input.events:q} {params.models} --out {output:q} > {log:q} 2>&1"


rule anomaly_gather:
    """summary.json (per SR and method) and the report plots of the scan."""
    input:
        results=expand(
            f"{ANOMALY}/{{region}}/{{method}}.h5",
            region=ANOMALY_REGIONS,
            method=config["anomaly"]["methods"],
        ),
        sigma_model=(
            [f"{ANOMALY}/sigma/model.pt"]
            if "sigma" in config["anomaly"]["methods"]
            else []
        ),
    output:
        summary=f"{ANOMALY}/summary.json",
        sic=report(
            f"{ANOMALY}/sic.png",
            caption="../report/anomaly_sic.rst",
            category="Anomaly",
        ),
        roc=report(
            f"{ANOMALY}/roc.png",
            caption="../report/anomaly_roc.rst",
            category="Anomaly",
        ),
        w=report(
            f"{ANOMALY}/w.png", caption="../report/anomaly_w.rst", category="Anomaly"
        ),
        timing=report(
            f"{ANOMALY}/timing.png",
            caption="../report/anomaly_timing.rst",
            category="Anomaly",
        ),
        significance=report(
            f"{ANOMALY}/significance.png",
            caption="../report/anomaly_significance.rst",
            category="Anomaly",
        ),
    log:
        f"{RESULTS}/logs/anomaly/gather.log",
    conda:
        "../../envs/anomaly.yaml"
    params:
        settings=as_json(gather_settings(config["anomaly"])),
        models=lambda wc, input: model_arguments(input),
    shell:
        "twinflow anomaly gather --settings {params.settings:q} --results {input.results:q} "
        "{params.models} --out {output.summary:q} --sic-plot {output.sic:q} "
        "--roc-plot {output.roc:q} --w-plot {output.w:q} --timing-plot {output.timing:q} "
        "--significance-plot {output.significance:q} > {log:q} 2>&1"


rule anomaly:
    """Target: the anomaly scan's summary and plots."""
    input:
        rules.anomaly_gather.output,
