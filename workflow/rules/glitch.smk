# glitch branch (Glitch Flow): dataset shards -> Q-transform images -> aux->strain translation
# -> subtraction and metrics; VAE glitch detector trained on clean Q-plots -> ROC.
from twinflow.glitch.settings import check_config as check_glitch_config
from twinflow.glitch.settings import data_input_files, stage_settings

GLITCH = f"{RESULTS}/glitch"
# Detector data (source: files) is one shard of windows; the simulator writes n-shards.
GLITCH_FROM_FILES = config["glitch"]["data"]["source"] == "files"
GLITCH_SHARDS = range(1 if GLITCH_FROM_FILES else config["glitch"]["data"]["n-shards"])

# A bad glitch setting stops the workflow here, before any job runs.
check_glitch_config(config["glitch"])


if GLITCH_FROM_FILES:

    rule glitch_load:
        """Strain and auxiliary channels read from GWF/HDF5 files, cut into windows (on the
        trigger list or a grid) and whitened with an off-source PSD: one shard."""
        input:
            data_input_files(config["glitch"]),
        output:
            f"{GLITCH}/data/shard-0.h5",
        log:
            f"{RESULTS}/logs/glitch/data/load.log",
        benchmark:
            f"{RESULTS}/benchmarks/glitch/data/load.tsv"
        conda:
            "../../envs/glitch.yaml"
        resources:
            mem_mb=4000,
            runtime=20,
        params:
            settings=as_json(stage_settings(config["glitch"], "load")),
        shell:
            "twinflow glitch load --settings {params.settings:q} --out {output:q} > {log:q} 2>&1"

else:

    rule glitch_simulate:
        """One shard of the synthetic strain + auxiliary-channel dataset."""
        input:
            data_input_files(config["glitch"]),
        output:
            f"{GLITCH}/data/shard-{{shard}}.h5",
        log:
            f"{RESULTS}/logs/glitch/data/shard-{{shard}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/glitch/data/shard-{{shard}}.tsv"
        wildcard_constraints:
            shard="[0-9]+",
        conda:
            "../../envs/glitch.yaml"
        resources:
            mem_mb=2000,
            runtime=20,
        params:
            settings=as_json(stage_settings(config["glitch"], "simulate")),
        shell:
            "twinflow glitch simulate --settings {params.settings:q} --shard {wildcards.shard} "
            "--out {output:q} > {log:q} 2>&1"


rule glitch_images:
    """Whitened Q-transform images of every sample, the seeded split and the
    training-split normalisation."""
    input:
        expand(f"{GLITCH}/data/shard-{{shard}}.h5", shard=GLITCH_SHARDS),
    output:
        f"{GLITCH}/images.h5",
    log:
        f"{RESULTS}/logs/glitch/images.log",
    benchmark:
        f"{RESULTS}/benchmarks/glitch/images.tsv"
    conda:
        "../../envs/glitch.yaml"
    resources:
        mem_mb=6000,
        runtime=60,
    params:
        settings=as_json(stage_settings(config["glitch"], "images")),
    shell:
        "twinflow glitch images --settings {params.settings:q} --shards {input:q} "
        "--out {output:q} > {log:q} 2>&1"


rule glitch_train_translation:
    """Train the aux -> strain translation model (resumable; GPU when there is one).
    One thread: on a 2-core workstation the two training rules then run side by side, which
    beats two threads each (profiles/slurm gives them more)."""
    input:
        f"{GLITCH}/images.h5",
    output:
        # update(): a forced rerun keeps the previous model until the new one is written
        model=update(f"{GLITCH}/translation/model.pt"),
        metrics=f"{GLITCH}/translation/metrics.csv",
        plot=report(
            f"{GLITCH}/translation/loss.png",
            caption="../report/glitch_loss.rst",
            category="Glitch",
            subcategory="Translation",
        ),
    log:
        f"{RESULTS}/logs/glitch/train_translation.log",
    benchmark:
        f"{RESULTS}/benchmarks/glitch/train_translation.tsv"
    conda:
        "../../envs/glitch.yaml"
    threads: 1
    resources:
        mem_mb=6000,
        runtime=120,
    params:
        settings=as_json(stage_settings(config["glitch"], "train-translation")),
        state=f"{GLITCH}/translation/training-state.pt",
    shell:
        "twinflow glitch train-translation --settings {params.settings:q} --images {input:q} "
        "--out {output.model:q} --metrics {output.metrics:q} --plot {output.plot:q} "
        "--state {params.state:q} > {log:q} 2>&1"


rule glitch_subtract:
    """Generate strain Q-plots of the test split, subtract them, and score the residuals."""
    input:
        images=f"{GLITCH}/images.h5",
        model=f"{GLITCH}/translation/model.pt",
    output:
        metrics=f"{GLITCH}/metrics.json",
        gallery=report(
            f"{GLITCH}/gallery.png",
            caption="../report/glitch_gallery.rst",
            category="Glitch",
            subcategory="Subtraction",
        ),
    log:
        f"{RESULTS}/logs/glitch/subtract.log",
    conda:
        "../../envs/glitch.yaml"
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        settings=as_json(stage_settings(config["glitch"], "subtract")),
    shell:
        "twinflow glitch subtract --settings {params.settings:q} --images {input.images:q} "
        "--model {input.model:q} --metrics {output.metrics:q} --gallery {output.gallery:q} "
        "> {log:q} 2>&1"


rule glitch_train_vae:
    """Train the convolutional VAE on clean strain Q-plots (resumable; GPU when there is one)."""
    input:
        f"{GLITCH}/images.h5",
    output:
        # update(): a forced rerun keeps the previous model until the new one is written
        model=update(f"{GLITCH}/vae/model.pt"),
        metrics=f"{GLITCH}/vae/metrics.csv",
        plot=report(
            f"{GLITCH}/vae/loss.png",
            caption="../report/glitch_vae_loss.rst",
            category="Glitch",
            subcategory="VAE detector",
        ),
    log:
        f"{RESULTS}/logs/glitch/train_vae.log",
    benchmark:
        f"{RESULTS}/benchmarks/glitch/train_vae.tsv"
    conda:
        "../../envs/glitch.yaml"
    threads: 1
    resources:
        mem_mb=6000,
        runtime=120,
    params:
        settings=as_json(stage_settings(config["glitch"], "train-vae")),
        state=f"{GLITCH}/vae/training-state.pt",
    shell:
        "twinflow glitch train-vae --settings {params.settings:q} --images {input:q} "
        "--out {output.model:q} --metrics {output.metrics:q} --plot {output.plot:q} "
        "--state {params.state:q} > {log:q} 2>&1"


rule glitch_score_vae:
    """Score glitchy against clean test images with the VAE: ROC, reconstructions, latent space."""
    input:
        images=f"{GLITCH}/images.h5",
        model=f"{GLITCH}/vae/model.pt",
    output:
        metrics=f"{GLITCH}/vae/scores.json",
        roc=report(
            f"{GLITCH}/vae/roc.png",
            caption="../report/glitch_roc.rst",
            category="Glitch",
            subcategory="VAE detector",
        ),
        reconstructions=report(
            f"{GLITCH}/vae/reconstructions.png",
            caption="../report/glitch_reconstructions.rst",
            category="Glitch",
            subcategory="VAE detector",
        ),
        latent=report(
            f"{GLITCH}/vae/latent.png",
            caption="../report/glitch_latent.rst",
            category="Glitch",
            subcategory="VAE detector",
        ),
    log:
        f"{RESULTS}/logs/glitch/score_vae.log",
    conda:
        "../../envs/glitch.yaml"
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        settings=as_json(stage_settings(config["glitch"], "score-vae")),
    shell:
        "twinflow glitch score-vae --settings {params.settings:q} --images {input.images:q} "
        "--model {input.model:q} --metrics {output.metrics:q} --roc {output.roc:q} "
        "--reconstructions {output.reconstructions:q} --latent {output.latent:q} > {log:q} 2>&1"


rule glitch:
    """Target: the whole glitch branch (metrics.json, gallery, VAE scores and plots)."""
    input:
        f"{GLITCH}/metrics.json",
        f"{GLITCH}/gallery.png",
        f"{GLITCH}/vae/scores.json",
        f"{GLITCH}/vae/roc.png",
        f"{GLITCH}/vae/reconstructions.png",
        f"{GLITCH}/vae/latent.png",
