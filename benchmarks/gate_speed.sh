#!/bin/sh
# Accuracy gate of the speed options (issue #16): sam-med evaluate with each variant on
# the CT lesions (tight 3D box), the TotalSegmentator CT and MR organs (tight 3D box,
# spleen, kidneys, liver) and the CVPR25 six cases (cvpr25 protocol: key-slice box +
# 5 clicks). Usage: sh benchmarks/gate_speed.sh OUTDIR [VARIANT ...]; a variant is
# "default" or comma-separated KEY=VALUE options, e.g. slice_step=1,whole_res_alt=none.
# Summaries: OUTDIR/<set>_<variant>/summary.json.
set -u
out=$1; shift
py=${PYTHON:-python}
data=$(dirname "$0")/../../shared
for v in "$@"; do
  opts=""
  [ "$v" = default ] || for kv in $(echo "$v" | tr , ' '); do opts="$opts --option $kv"; done
  tag=$(echo "$v" | tr ',=' '_-')
  $py -m sam_med evaluate configs/eval/mixed_ct_mr.csv --protocol box --labels 1,2,3,5 --limit 1 \
      --no-progress --out "$out/ct_organs_$tag" $opts
  $py -m sam_med evaluate configs/finetune/clicks_heldout_mr.csv --protocol box --labels 1,2,3,5 \
      --no-progress --out "$out/mr_organs_$tag" $opts
  $py -m sam_med evaluate "$data/data/ct_lesion" --protocol box --no-progress --out "$out/lesions_$tag" $opts
  $py -m sam_med evaluate "$data/cvpr25/cases" --protocol cvpr25 --no-progress --out "$out/cvpr25_$tag" $opts
done
