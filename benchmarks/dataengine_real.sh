#!/usr/bin/env bash
# The data engine's real run (issue 19, benchmarks/dataengine.md): accept the shared label maps
# (all but the CT lesions) as corrected masks, fine-tune LiteMedSAM from the folder, promote or
# refuse with the evidence. Outputs under $R.
#   OMP_NUM_THREADS=1 nohup bash benchmarks/dataengine_real.sh > $R.log 2>&1 &
#   MODE=prompt bash benchmarks/dataengine_real.sh [KEY=VALUE ...]   # prompt tuning ("Prompt tuning"):
#       the same folder, split, slices, clicks and rule; reuses the decoder run's embedding cache
#       ($R/ft/embeddings: the same base encoder, so the same namespace), so only decoding runs
# (the runs in benchmarks/dataengine.md used R=$R)
set -euo pipefail
cd "$(dirname "$0")/.."
R=${R:-${TMPDIR:-/tmp}/sam-med-dataengine}
PY=${PY:-.venv/bin/python}
MODE=${MODE:-decoder}
S=../shared/data
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} PYTHONPATH=$PWD
mkdir -p "$R"
if [ "$MODE" = decoder ]; then tag=""; extra=(); else
    tag="_$MODE"; extra=(--mode "$MODE" data.embedding_cache_dir="$R/ft/embeddings" progress=false)
    [ -d "$R/ft/embeddings" ] || { echo "run the decoder mode first ($R/ft/embeddings missing)"; exit 2; }
fi
lscpu | grep -i -E "model name|^cpu\(s\)|flags" > "$R/lscpu$tag.txt"
date -u +"start %FT%TZ"
[ -d "$R/accepted" ] || $PY benchmarks/accept_labels.py --to "$R/accepted" \
    $S/totalseg/example_ct_sm.nii.gz $S/totalseg/example_seg.nii.gz \
    $S/totalseg/example_mr_sm.nii.gz $S/totalseg/example_seg_mr.nii.gz \
    $S/mr_brain/brain1_image.nrrd $S/mr_brain/brain1_label.nrrd
date -u +"accepted %FT%TZ"
/usr/bin/time -v $PY -m sam_med finetune --from "$R/accepted" --name "lite_medsam_site$tag" --epochs 3 \
    num_threads=1 "from.val_scans=[$(realpath $S/totalseg/example_mr_sm.nii.gz)]" \
    "from.axes=[2]" from.slices_per_object=3 \
    from.extra_cvpr25=../shared/cvpr25/cases "from.extra_cases=CT_Lesion_*" "${extra[@]}" \
    out_dir="$R/ft$tag" export.models_dir="$R/models$tag" "$@" 2> >(tee "$R/time$tag.txt" >&2)
date -u +"done %FT%TZ"
