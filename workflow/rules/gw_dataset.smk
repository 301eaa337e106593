# gw dataset: the multibanded domain -> waveform shards (one job each) -> index; example plots.
from twinflow.gw.settings import (
    batch_settings_for,
    dataset_domain_settings_for,
    dataset_shard_settings_for,
)

GW_DATASET = f"{RESULTS}/gw/dataset"


rule gw_dataset_domain:
    """The multibanded frequency domain: configured nodes, or nodes proposed from waveforms."""
    output:
        f"{GW_DATASET}/domain.json",
    log:
        f"{RESULTS}/logs/gw/dataset/domain.log",
    conda:
        "../../envs/gw.yaml"
    params:
        settings=lambda wc: as_json(dataset_domain_settings_for(config["gw"])),
    shell:
        "twinflow gw dataset-domain --settings {params.settings:q} --out {output:q} > {log:q} 2>&1"


rule gw_dataset_shard:
    """One shard of intrinsic prior draws and their polarisations on the multibanded domain."""
    input:
        domain=f"{GW_DATASET}/domain.json",
    output:
        f"{GW_DATASET}/shard-{{shard}}.h5",
    log:
        f"{RESULTS}/logs/gw/dataset/shard-{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/gw/dataset/shard-{{shard}}.tsv"
    wildcard_constraints:
        shard=r"\d+",
    conda:
        "../../envs/gw.yaml"
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        settings=lambda wc: as_json(dataset_shard_settings_for(config["gw"])),
    shell:
        "twinflow gw dataset-shard --settings {params.settings:q} --domain {input.domain:q} "
        "--shard {wildcards.shard} --out {output:q} > {log:q} 2>&1"


rule gw_dataset_index:
    """Index of the shards (paths, counts, domain, settings): what training reads."""
    input:
        expand(
            f"{GW_DATASET}/shard-{{shard}}.h5",
            shard=range(config["gw"]["dataset"]["n-shards"]),
        ),
    output:
        f"{GW_DATASET}/index.json",
    log:
        f"{RESULTS}/logs/gw/dataset/index.log",
    conda:
        "../../envs/gw.yaml"
    shell:
        "twinflow gw dataset-index --out {output:q} {input:q} > {log:q} 2>&1"


rule gw_dataset_plots:
    """Whitened strain of an example (token edges marked) and a few training masks."""
    input:
        index=f"{GW_DATASET}/index.json",
        psd=expand(
            f"{RESULTS}/gw/psd/{{detector}}.h5", detector=config["gw"]["detectors"]
        ),
    output:
        strain=report(
            f"{GW_DATASET}/example-strain.png",
            caption="../report/gw_dataset_strain.rst",
            category="Dataset",
        ),
        masks=report(
            f"{GW_DATASET}/example-masks.png",
            caption="../report/gw_dataset_masks.rst",
            category="Dataset",
        ),
    log:
        f"{RESULTS}/logs/gw/dataset/plots.log",
    conda:
        "../../envs/gw.yaml"
    params:
        settings=lambda wc: as_json(batch_settings_for(config["gw"])),
        psd=lambda wc, input: [
            f"{d}={p}" for d, p in zip(config["gw"]["detectors"], input.psd)
        ],
    shell:
        "twinflow gw dataset-plots --settings {params.settings:q} --index {input.index:q} "
        "--psd {params.psd:q} --strain-plot {output.strain:q} --mask-plot {output.masks:q} > {log:q} 2>&1"


rule gw_dataset:
    """Target: the waveform dataset (domain, shards, index) and its plots."""
    input:
        f"{GW_DATASET}/index.json",
        f"{GW_DATASET}/example-strain.png",
        f"{GW_DATASET}/example-masks.png",
