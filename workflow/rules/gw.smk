# gw branch: PSD banks -> dataset -> training -> per-event inference.
from twinflow.gw.settings import psd_settings_for
from twinflow.gw.validation import check_config as check_gw_config

# A bad gw setting stops the workflow here, before any job runs.
check_gw_config(config["gw"])


rule gw_psd_bank:
    """Welch PSD bank for one detector, from simulated O3-like noise or real strain files."""
    output:
        bank=f"{RESULTS}/gw/psd/{{detector}}.h5",
        plot=report(
            f"{RESULTS}/gw/psd/{{detector}}.png",
            caption="../report/gw_psd.rst",
            category="PSD",
            labels={"detector": "{detector}"},
        ),
    log:
        f"{RESULTS}/logs/gw/psd/{{detector}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/gw/psd/{{detector}}.tsv"
    conda:
        "../../envs/gw.yaml"
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        settings=lambda wc: as_json(psd_settings_for(config["gw"], wc.detector)),
    shell:
        "twinflow gw psd --settings {params.settings:q} --out {output.bank:q} "
        "--plot {output.plot:q} > {log:q} 2>&1"


rule gw_psd:
    """Target: the PSD banks of every configured detector."""
    input:
        expand(f"{RESULTS}/gw/psd/{{detector}}.h5", detector=config["gw"]["detectors"]),
