#!/usr/bin/env bash
# The data engine's real run (issue 19, benchmarks/dataengine.md): accept the shared label maps
# (all but the CT lesions) as corrected masks, fine-tune LiteMedSAM from the folder, promote or
# refuse with the evidence. Outputs under $R (default /work/notes/promote_real).
#   OMP_NUM_THREADS=1 nohup bash benchmarks/dataengine_real.sh > $R.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/.."
R=${R:-/work/notes/promote_real}
PY=${PY:-/work/main/.venv/bin/python}
S=../shared/data
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} PYTHONPATH=$PWD
mkdir -p "$R"
lscpu | grep -i -E "model name|^cpu\(s\)|flags" > "$R/lscpu.txt"
date -u +"start %FT%TZ"
[ -d "$R/accepted" ] || $PY benchmarks/accept_labels.py --to "$R/accepted" \
    $S/totalseg/example_ct_sm.nii.gz $S/totalseg/example_seg.nii.gz \
    $S/totalseg/example_mr_sm.nii.gz $S/totalseg/example_seg_mr.nii.gz \
    $S/mr_brain/brain1_image.nrrd $S/mr_brain/brain1_label.nrrd
date -u +"accepted %FT%TZ"
/usr/bin/time -v $PY -m sam_med finetune --from "$R/accepted" --name lite_medsam_site --epochs 3 \
    num_threads=1 "from.val_scans=[$(realpath $S/totalseg/example_mr_sm.nii.gz)]" \
    "from.axes=[2]" from.slices_per_object=3 \
    from.extra_cvpr25=../shared/cvpr25/cases "from.extra_cases=CT_Lesion_*" \
    out_dir="$R/ft" export.models_dir="$R/models" 2> >(tee "$R/time.txt" >&2)
date -u +"done %FT%TZ"
