# gw embedding comparison (target gw_compare, not in the default all): Dingo's SVD + residual-MLP
# baseline against the transformer of gw_train, on the same shards, flow, steps and wall-clock
# budget, evaluated on gw_inference's injections with the same refinement; the settings sweep
# with the baseline retrained per setting. Runs and paths: twinflow.gw.training.compare.
import json
import os

from twinflow.gw.settings import inference_settings_for, inference_sweep_settings_for
from twinflow.gw.training.compare import (
    compare_manifest,
    compare_runs,
    compare_train_settings_for,
    evaluated_runs,
    manifest_files,
    sweep_entry,
)

GW_COMPARE = f"{RESULTS}/gw/compare"
GW_COMPARE_MANIFEST = compare_manifest(config["gw"], RESULTS)


rule gw_compare_train:
    """One comparison model: svd-mlp (or the transformer under a time budget) on the shards."""
    input:
        index=f"{RESULTS}/gw/dataset/index.json",
        psd=expand(
            f"{RESULTS}/gw/psd/{{detector}}.h5", detector=config["gw"]["detectors"]
        ),
        # the equal-time runs take the transformer's training time as their budget
        budget=f"{RESULTS}/gw/train/summary.json",
    output:
        model=f"{GW_COMPARE}/models/{{run}}/model.pt",
        metrics=f"{GW_COMPARE}/models/{{run}}/metrics.csv",
        summary=f"{GW_COMPARE}/models/{{run}}/summary.json",
        plot=f"{GW_COMPARE}/models/{{run}}/loss.png",
    log:
        f"{RESULTS}/logs/gw/compare/train-{{run}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/gw/compare/train-{{run}}.tsv"
    wildcard_constraints:
        run="|".join(compare_runs(config["gw"])),
    conda:
        "../../envs/gw.yaml"
    threads: 2
    resources:
        mem_mb=6000,
        runtime=90,
        gpu=0,
    params:
        settings=lambda wc: as_json(compare_train_settings_for(config["gw"], wc.run)),
        state=lambda wc: f"{GW_COMPARE}/models/{wc.run}/training-state.pt",
        # only the equal-time runs take their budget from the transformer's training time
        budget_from=lambda wc, input: input.budget if wc.run.endswith("-time") else "",
    shell:
        "export OMP_WAIT_POLICY=${{OMP_WAIT_POLICY:-PASSIVE}}; "
        "twinflow gw train --settings {params.settings:q} --index {input.index:q} "
        "--psd {input.psd:q} --state {params.state:q} --model {output.model:q} "
        "--metrics {output.metrics:q} --summary {output.summary:q} --plot {output.plot:q} "
        "--time-budget-from={params.budget_from:q} > {log:q} 2>&1"


rule gw_compare_injection:
    """One injection of gw_inference analysed with a comparison model (same refinement settings)."""
    input:
        model=f"{GW_COMPARE}/models/{{run}}/model.pt",
        psd=expand(
            f"{RESULTS}/gw/psd/{{detector}}.h5", detector=config["gw"]["detectors"]
        ),
    output:
        summary=f"{GW_COMPARE}/inference/{{run}}/events/{{event}}/summary.json",
        posterior=f"{GW_COMPARE}/inference/{{run}}/events/{{event}}/posterior.h5",
        result=f"{GW_COMPARE}/inference/{{run}}/events/{{event}}/result.json",
    log:
        f"{RESULTS}/logs/gw/compare/inference-{{run}}-{{event}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/gw/compare/inference-{{run}}-{{event}}.tsv"
    wildcard_constraints:
        run="|".join(evaluated_runs(config["gw"])[1:]),
        event=r"injection-[0-9]+",
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
        "> {log:q} 2>&1"


rule gw_compare_sweep_zero_filled:
    """The sweep event under every setting with the svd-mlp model trained on all (zero-filled)."""
    input:
        model=f"{GW_COMPARE}/models/svd-mlp-steps/model.pt",
        psd=expand(
            f"{RESULTS}/gw/psd/{{detector}}.h5", detector=config["gw"]["detectors"]
        ),
    output:
        summary=f"{GW_COMPARE}/sweep/svd-mlp-zero-filled/summary.json",
    log:
        f"{RESULTS}/logs/gw/compare/sweep-zero-filled.log",
    benchmark:
        f"{RESULTS}/benchmarks/gw/compare/sweep-zero-filled.tsv"
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
        "> {log:q} 2>&1"


rule gw_compare_sweep_retrained:
    """The sweep event under one setting with the svd-mlp model trained for that setting."""
    input:
        model=f"{GW_COMPARE}/models/svd-mlp-setting-{{label}}/model.pt",
        psd=expand(
            f"{RESULTS}/gw/psd/{{detector}}.h5", detector=config["gw"]["detectors"]
        ),
    output:
        summary=f"{GW_COMPARE}/sweep/svd-mlp-retrained/{{label}}/summary.json",
    log:
        f"{RESULTS}/logs/gw/compare/sweep-retrained-{{label}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/gw/compare/sweep-retrained-{{label}}.tsv"
    wildcard_constraints:
        label=r"[A-Za-z0-9_.+-]+",
    conda:
        "../../envs/gw.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        settings=lambda wc: as_json(
            {
                **inference_sweep_settings_for(config["gw"]),
                "sweep": [sweep_entry(config["gw"], wc.label)],
            }
        ),
        psd=lambda wc, input: [
            f"{d}={p}" for d, p in zip(config["gw"]["detectors"], input.psd)
        ],
        out_dir=lambda wc, output: os.path.dirname(output.summary),
    shell:
        "twinflow gw inference-sweep --settings {params.settings:q} --model {input.model:q} "
        "--psd {params.psd:q} --out-dir {params.out_dir:q} --processes {threads} "
        "> {log:q} 2>&1"


rule gw_compare_table:
    """The comparison tables: training cost and injection results per run, and the sweep."""
    input:
        manifest_files(GW_COMPARE_MANIFEST),
    output:
        table=f"{GW_COMPARE}/table.json",
        markdown=f"{GW_COMPARE}/table.md",
        tsv=report(
            f"{GW_COMPARE}/table.tsv",
            caption="../report/gw_compare.rst",
            category="GW embedding comparison",
        ),
    log:
        f"{RESULTS}/logs/gw/compare/table.log",
    conda:
        "../../envs/gw.yaml"
    params:
        manifest=json.dumps(GW_COMPARE_MANIFEST),
    shell:
        "twinflow gw compare-table --manifest {params.manifest:q} --out {output.table:q} "
        "--markdown {output.markdown:q} --tsv {output.tsv:q} > {log:q} 2>&1"


rule gw_compare:
    """Target: the embedding comparison (not in the default all)."""
    input:
        f"{GW_COMPARE}/table.json",
        f"{GW_COMPARE}/table.md",
        f"{GW_COMPARE}/table.tsv",
