# gw training: the transformer + normalizing-flow posterior model, on the GPU when there is one.
# With more than one GPU granted (resources gpu > 1, e.g. in profiles/slurm), the job runs
# data-parallel: torchrun starts one process per GPU.
from twinflow.gw.settings import train_settings_for

GW_TRAIN = f"{RESULTS}/gw/train"


rule gw_train:
    """Target: train the posterior model on the waveform dataset and the PSD banks."""
    input:
        index=f"{RESULTS}/gw/dataset/index.json",
        psd=expand(
            f"{RESULTS}/gw/psd/{{detector}}.h5", detector=config["gw"]["detectors"]
        ),
    output:
        # update(): Snakemake keeps the previous model while the job runs (it would otherwise
        # delete it first) and restores it if the job fails; the stage replaces it atomically.
        model=update(f"{GW_TRAIN}/model.pt"),
        metrics=f"{GW_TRAIN}/metrics.csv",
        summary=f"{GW_TRAIN}/summary.json",
        plot=report(
            f"{GW_TRAIN}/loss.png",
            caption="../report/gw_train.rst",
            category="Training",
        ),
    log:
        f"{RESULTS}/logs/gw/train.log",
    benchmark:
        f"{RESULTS}/benchmarks/gw/train.tsv"
    conda:
        "../../envs/gw.yaml"
    threads: 2
    resources:
        mem_mb=6000,
        runtime=60,
        gpu=0,
    params:
        settings=lambda wc: as_json(train_settings_for(config["gw"])),
        # The per-epoch training state: not an output, so an interrupted job resumes from it.
        state=f"{GW_TRAIN}/training-state.pt",
    shell:
        # Idle OpenMP threads sleep instead of spinning: on a busy CPU, spinning threads made
        # training several times slower than one thread.
        "export OMP_WAIT_POLICY=${{OMP_WAIT_POLICY:-PASSIVE}}; "
        "if [ {resources.gpu} -gt 1 ]; then "
        "launch='torchrun --standalone --nproc_per_node={resources.gpu} --no-python'; "
        "else launch=''; fi; "
        "$launch twinflow gw train --settings {params.settings:q} --index {input.index:q} "
        "--psd {input.psd:q} --state {params.state:q} --model {output.model:q} "
        "--metrics {output.metrics:q} --summary {output.summary:q} --plot {output.plot:q} "
        "> {log:q} 2>&1"
