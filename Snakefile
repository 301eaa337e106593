# twinflow: deep-generative physics analyses as one Snakemake workflow.
# This file is the table of contents; the rules live in workflow/rules/.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


wildcard_constraints:
    detector="[A-Z][0-9]",


include: "workflow/rules/common.smk"
include: "workflow/rules/gw.smk"
include: "workflow/rules/gw_dataset.smk"
include: "workflow/rules/gw_train.smk"
include: "workflow/rules/gw_inference.smk"
include: "workflow/rules/gw_peer.smk"
include: "workflow/rules/gw_compare.smk"
include: "workflow/rules/glitch.smk"
include: "workflow/rules/anomaly.smk"


rule all:
    default_target: True
    input:
        rules.gw_psd.input,
        rules.gw_dataset.input,
        rules.gw_train.output,
        rules.gw_inference.input,
        rules.glitch.input,
        rules.anomaly.input,
