# sdtp-bench: Saliency-driven Dynamic Token Pruning, reproduced and benchmarked. See README.md.
from snakemake.utils import min_version

min_version("9.0")


# The embedded default (the offline demo) only when no --configfile is given: an experiment config is complete on its
# own over the schema's defaults, and nothing of the demo leaks into it.
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


# rules/common.smk puts the interpreter running Snakemake first on PATH, so jobs run `python -m sdtp` with it.
envvars:
    "PATH",


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/model.smk"
include: "rules/verify.smk"
include: "rules/saliency.smk"
include: "rules/pruner.smk"
include: "rules/latency.smk"
include: "rules/peak.smk"
include: "rules/longbench.smk"
include: "rules/lm_eval.smk"
include: "rules/ruler_common.smk"
include: "rules/ruler.smk"
include: "rules/tables.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        final_outputs() + ruler_outputs(),
