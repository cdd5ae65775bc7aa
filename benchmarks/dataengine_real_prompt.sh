#!/usr/bin/env bash
# The data engine's real run in prompt-tuning mode (issue 19, benchmarks/dataengine.md, "Prompt
# tuning"): the same accepted folder, split, slices, clicks and promotion rule as
# benchmarks/dataengine_real.sh, with --mode prompt (8 learnable prompt tokens, the rest frozen).
# Reuses the decoder run's on-disk embedding cache ($R/ft/embeddings: the same base encoder, so the
# same namespace), so only decoding runs. Outputs under $R/ft_prompt.
#   OMP_NUM_THREADS=1 nohup bash benchmarks/dataengine_real_prompt.sh > $R/prompt.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/.."
R=${R:-/work/notes/promote_real}
PY=${PY:-/work/main/.venv/bin/python}
S=../shared/data
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} PYTHONPATH=$PWD
[ -d "$R/accepted" ] || { echo "run benchmarks/dataengine_real.sh first ($R/accepted missing)"; exit 2; }
lscpu | grep -i -E "model name|^cpu\(s\)|flags" > "$R/lscpu_prompt.txt"
date -u +"start %FT%TZ"
/usr/bin/time -v $PY -m sam_med finetune --from "$R/accepted" --name lite_medsam_site_prompt --mode prompt \
    --epochs 3 num_threads=1 "from.val_scans=[$(realpath $S/totalseg/example_mr_sm.nii.gz)]" \
    "from.axes=[2]" from.slices_per_object=3 \
    from.extra_cvpr25=../shared/cvpr25/cases "from.extra_cases=CT_Lesion_*" \
    data.embedding_cache_dir="$R/ft/embeddings" progress=false \
    out_dir="$R/ft_prompt" export.models_dir="$R/models_prompt" "$@" 2> >(tee "$R/time_prompt.txt" >&2)
date -u +"done %FT%TZ"
