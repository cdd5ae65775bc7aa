#!/usr/bin/env bash
# Domain fine-tuning on real data through the data engine (issue 27): OpenKBP head-and-neck CT
# organs. The first N_TRAIN train scans and the first N_VAL validation scans of the shared splits
# are accepted as corrected masks (benchmarks/accept_labels.py --dataset), then
# `sam-med finetune --from` trains the decoder on the train scans only, validates (epoch choice) on
# the validation scans only (from.val_scans: OpenKBP's own split, not a draw) and promotes or
# refuses with the evidence (base vs fine-tuned, box protocol and CVPR25 protocol, per organ).
#   R=DIR OMP_NUM_THREADS=2 nohup bash benchmarks/dataengine_openkbp.sh > DIR.log 2>&1 &
# Extra KEY=VALUE arguments go to sam-med finetune (e.g. data.embedding_cache_dir=DIR to share an
# evaluation's cache). The write-up is benchmarks/dataengine_openkbp.md.
set -euo pipefail
cd "$(dirname "$0")/.."
R=${R:-${TMPDIR:-/tmp}/sam-med-openkbp}
PY=${PY:-.venv/bin/python}
N_TRAIN=${N_TRAIN:-80} N_VAL=${N_VAL:-12} EPOCHS=${EPOCHS:-3}
S=../shared/data/openkbp
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} PYTHONPATH=$PWD
mkdir -p "$R"
lscpu | grep -i -E "model name|^cpu\(s\)|flags" > "$R/lscpu.txt"
date -u +"start %FT%TZ"
if [ ! -d "$R/accepted" ]; then
    $PY benchmarks/accept_labels.py --to "$R/accepted" --dataset $S/validation_organs.csv --limit "$N_VAL"
    $PY benchmarks/accept_labels.py --to "$R/accepted" --dataset $S/train_organs.csv --limit "$N_TRAIN"
fi
# the validation scans, as paths (from.val_scans)
val=$($PY - "$S/validation_organs.csv" "$N_VAL" <<'PYEOF'
import sys
from sam_med.evaluation.datasets import open_dataset
print(",".join(c.image for c in open_dataset(sys.argv[1], limit=int(sys.argv[2])).cases))
PYEOF
)
date -u +"accepted %FT%TZ"
/usr/bin/time -v $PY -m sam_med finetune --from "$R/accepted" --name lite_medsam_openkbp --epochs "$EPOCHS" \
    num_threads=${OMP_NUM_THREADS} "from.val_scans=[$val]" "from.axes=[2]" \
    from.slices_per_object=${SLICES:-2} out_dir="$R/ft" export.models_dir="$R/models" "$@" \
    2> >(tee "$R/time.txt" >&2)
date -u +"done %FT%TZ"
