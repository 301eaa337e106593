# anomaly branch: events -> a sideband flow per SR and SIGMA's model once -> one job per
# (SR, method) -> summary.json and the report plots. The signal-injection scan
# (target anomaly_scan_nsig) repeats this per (N_sig, seed) under nsig/.
from twinflow.anomaly.settings import (
    METHODS,
    check_config as check_anomaly_config,
    gather_settings,
    method_inputs,
    method_settings,
    model_arguments,
    nsig_gather_settings,
    nsig_results,
    nsig_section,
    region_index,
    sideband_flow_settings,
    sigma_settings,
)

check_anomaly_config(config["anomaly"])

ANOMALY = f"{RESULTS}/anomaly"
ANOMALY_REGIONS = [f"sr{i}" for i in range(len(config["anomaly"]["scan"]["centres"]))]
ANOMALY_NSIG = f"{ANOMALY}/nsig/n{{nsig}}/seed{{seed}}"


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
        # update(): a forced rerun keeps the previous model until the new one is written
        update(f"{ANOMALY}/{{region}}/sideband_flow.pt"),
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
        update(f"{ANOMALY}/sigma/model.pt"),
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


rule anomaly_train_sigma_cr:
    """Per SR: SIGMA's model trained on the sidebands only (v_CR, the slow reference)."""
    input:
        events=f"{ANOMALY}/events.h5",
    output:
        update(f"{ANOMALY}/{{region}}/sigma_cr.pt"),
    log:
        f"{RESULTS}/logs/anomaly/{{region}}/sigma_cr.log",
    benchmark:
        f"{RESULTS}/benchmarks/anomaly/{{region}}/sigma_cr.tsv"
    wildcard_constraints:
        region="sr[0-9]+",
    conda:
        "../../envs/anomaly.yaml"
    threads: 1
    resources:
        mem_mb=6000,
        runtime=120,
    params:
        settings=lambda wc: as_json(
            sigma_settings(config["anomaly"], region_index(wc.region))
        ),
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
        w_grid=report(
            f"{ANOMALY}/ranode_w_grid.png",
            caption="../report/anomaly_w_grid.rst",
            category="Anomaly",
        ),
        signal_samples=report(
            f"{ANOMALY}/ranode_signal_samples.png",
            caption="../report/anomaly_signal_samples.rst",
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
        "--significance-plot {output.significance:q} --w-grid-plot {output.w_grid:q} "
        "--signal-samples-plot {output.signal_samples:q} > {log:q} 2>&1"


rule anomaly:
    """Target: the anomaly scan's summary and plots."""
    input:
        rules.anomaly_gather.output,


# ---- the signal-injection scan: every stage above again per (N_sig, seed), under nsig/ ----


rule anomaly_nsig_events:
    """One scan point's events: N_sig injected, the seed's background and test samples."""
    output:
        f"{ANOMALY_NSIG}/events.h5",
    log:
        f"{RESULTS}/logs/anomaly/nsig/n{{nsig}}/seed{{seed}}/events.log",
    benchmark:
        f"{RESULTS}/benchmarks/anomaly/nsig/n{{nsig}}/seed{{seed}}/events.tsv"
    wildcard_constraints:
        nsig="[0-9]+",
        seed="[0-9]+",
    conda:
        "../../envs/anomaly.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        settings=lambda wc: as_json(
            {
                "seed": int(wc.seed),
                "data": nsig_section(config["anomaly"], wc.nsig, wc.seed)["data"],
            }
        ),
    shell:
        "twinflow anomaly events --settings {params.settings:q} --out {output:q} > {log:q} 2>&1"


rule anomaly_nsig_sideband_flow:
    """One scan point, one SR: the sideband flow."""
    input:
        events=f"{ANOMALY_NSIG}/events.h5",
    output:
        update(f"{ANOMALY_NSIG}/{{region}}/sideband_flow.pt"),
    log:
        f"{RESULTS}/logs/anomaly/nsig/n{{nsig}}/seed{{seed}}/{{region}}/sideband_flow.log",
    benchmark:
        f"{RESULTS}/benchmarks/anomaly/nsig/n{{nsig}}/seed{{seed}}/{{region}}/sideband_flow.tsv"
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
            sideband_flow_settings(
                nsig_section(config["anomaly"], wc.nsig, wc.seed),
                region_index(wc.region),
            )
        ),
    shell:
        "OMP_NUM_THREADS={threads} twinflow anomaly sideband-flow --settings {params.settings:q} "
        "--events {input.events:q} --out {output:q} > {log:q} 2>&1"


rule anomaly_nsig_train_sigma:
    """One scan point: SIGMA's model on all data."""
    input:
        events=f"{ANOMALY_NSIG}/events.h5",
    output:
        update(f"{ANOMALY_NSIG}/sigma/model.pt"),
    log:
        f"{RESULTS}/logs/anomaly/nsig/n{{nsig}}/seed{{seed}}/sigma/train.log",
    benchmark:
        f"{RESULTS}/benchmarks/anomaly/nsig/n{{nsig}}/seed{{seed}}/sigma/train.tsv"
    conda:
        "../../envs/anomaly.yaml"
    threads: 1
    resources:
        mem_mb=6000,
        runtime=120,
    params:
        settings=lambda wc: as_json(
            sigma_settings(nsig_section(config["anomaly"], wc.nsig, wc.seed))
        ),
    shell:
        "OMP_NUM_THREADS={threads} twinflow anomaly train-sigma --settings {params.settings:q} "
        "--events {input.events:q} --out {output:q} > {log:q} 2>&1"


rule anomaly_nsig_train_sigma_cr:
    """One scan point, one SR: SIGMA's model on the sidebands only (v_CR)."""
    input:
        events=f"{ANOMALY_NSIG}/events.h5",
    output:
        update(f"{ANOMALY_NSIG}/{{region}}/sigma_cr.pt"),
    log:
        f"{RESULTS}/logs/anomaly/nsig/n{{nsig}}/seed{{seed}}/{{region}}/sigma_cr.log",
    benchmark:
        f"{RESULTS}/benchmarks/anomaly/nsig/n{{nsig}}/seed{{seed}}/{{region}}/sigma_cr.tsv"
    wildcard_constraints:
        region="sr[0-9]+",
    conda:
        "../../envs/anomaly.yaml"
    threads: 1
    resources:
        mem_mb=6000,
        runtime=120,
    params:
        settings=lambda wc: as_json(
            sigma_settings(
                nsig_section(config["anomaly"], wc.nsig, wc.seed),
                region_index(wc.region),
            )
        ),
    shell:
        "OMP_NUM_THREADS={threads} twinflow anomaly train-sigma --settings {params.settings:q} "
        "--events {input.events:q} --out {output:q} > {log:q} 2>&1"


rule anomaly_nsig_method:
    """One job per (N_sig, seed, SR, method)."""
    input:
        unpack(
            lambda wc: method_inputs(
                f"{ANOMALY}/nsig/n{wc.nsig}/seed{wc.seed}", wc.region, wc.method
            )
        ),
    output:
        f"{ANOMALY_NSIG}/{{region}}/{{method}}.h5",
    log:
        f"{RESULTS}/logs/anomaly/nsig/n{{nsig}}/seed{{seed}}/{{region}}/{{method}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/anomaly/nsig/n{{nsig}}/seed{{seed}}/{{region}}/{{method}}.tsv"
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
            method_settings(
                nsig_section(config["anomaly"], wc.nsig, wc.seed),
                region_index(wc.region),
                wc.method,
            )
        ),
        models=lambda wc, input: model_arguments(input),
    shell:
        "OMP_NUM_THREADS={threads} twinflow anomaly method --settings {params.settings:q} "
        "--events {input.events:q} {params.models} --out {output:q} > {log:q} 2>&1"


rule anomaly_nsig_gather:
    """The scan's table (one row per job), its summary and plots against N_sig."""
    input:
        results=nsig_results(ANOMALY, config["anomaly"]),
    output:
        summary=f"{ANOMALY}/nsig/summary.json",
        table=f"{ANOMALY}/nsig/table.csv",
        sic=report(
            f"{ANOMALY}/nsig/max_sic.png",
            caption="../report/anomaly_nsig_sic.rst",
            category="Anomaly: signal injection",
        ),
        significance=report(
            f"{ANOMALY}/nsig/significance.png",
            caption="../report/anomaly_nsig_significance.rst",
            category="Anomaly: signal injection",
        ),
        w=report(
            f"{ANOMALY}/nsig/learned_w.png",
            caption="../report/anomaly_nsig_w.rst",
            category="Anomaly: signal injection",
        ),
        false_positives=report(
            f"{ANOMALY}/nsig/false_positives.png",
            caption="../report/anomaly_nsig_false_positives.rst",
            category="Anomaly: signal injection",
        ),
    log:
        f"{RESULTS}/logs/anomaly/nsig/gather.log",
    conda:
        "../../envs/anomaly.yaml"
    params:
        settings=as_json(nsig_gather_settings(config["anomaly"])),
    shell:
        "twinflow anomaly gather-nsig --settings {params.settings:q} "
        "--results {input.results:q} --out {output.summary:q} --table {output.table:q} "
        "--sic-plot {output.sic:q} --significance-plot {output.significance:q} "
        "--w-plot {output.w:q} --false-positives-plot {output.false_positives:q} "
        "> {log:q} 2>&1"


rule anomaly_scan_nsig:
    """Target (not in all): the signal-injection scan over N_sig x seeds x SRs x methods."""
    input:
        rules.anomaly_nsig_gather.output,
