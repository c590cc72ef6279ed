#!/usr/bin/env bash
# Reproduce models/echoposed_k5.onnx: every training stage of the shipped ensemble, in order, then
# the export (models/MODEL_CARD.md explains each stage). About 12 hours on a 2-core machine.
#
#   scripts/train_shipped_model.sh [OUT_DIR]       # default out/shipped; the model lands in OUT_DIR
#   ECHOPOSED_PRINT_CONFIGS=1 scripts/train_shipped_model.sh   # only print each stage's config (JSON)
#   ECHOPOSED_TRAIN_ARGS='--device cuda' scripts/train_shipped_model.sh   # every stage on the GPU
#
# ECHOPOSED_TRAIN_ARGS: extra `echoposed train` arguments (split on spaces) appended to every stage's,
# so they override the stage's flags: --device, --workers, --threads, --quiet; `--set FIELD=JSON`
# adds to the stage's fields (a recipe field set there changes the model this makes).
#
# Each stage warm-starts from the one before (weights and adapters; fresh optimiser and
# schedule; --no-inherit: each stage's config is the defaults and the flags below, as it was run,
# not the previous stage's). A stage that was cut short or stretched when the model was made is
# reproduced with stop_at_step and a resume with more steps. Re-running the script resumes where it stopped.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dry="${ECHOPOSED_PRINT_CONFIGS:-}"
[[ -n "$dry" ]] || "$root/scripts/setup.sh"
cd "$root"
out="${1:-out/shipped}"
read -r -a extra <<< "${ECHOPOSED_TRAIN_ARGS:-}"
train() { .venv/bin/echoposed train --no-inherit --seeds 0-39 "$@" ${extra[@]+"${extra[@]}"} ${dry:+--print-config}; }
cache='phantom_cache_dir="out/cache/phantoms"'
warm=(z_ramp_steps=0 muon_lr=0.01 adamw_lr=0.001 "$cache" ckpt_every_s=300)
finer=(z_ramp_steps=0 muon_lr=0.006 adamw_lr=0.0006 "$cache" ckpt_every_s=300)

# 1. run1: phantom generator version 1, z range opened from +-30 to +-180 deg over 3500 steps;
#    a 12000-step schedule, then resumed and stretched to 20000 steps.
train --out "$out/run1" --steps 12000 --set z_ramp_steps=3500 ckpt_every_s=300 phantom_version=1
train --out "$out/run1" --steps 20000 --set z_ramp_steps=3500 ckpt_every_s=300 phantom_version=1
# 2. ab/geo: 3000 steps on today's generator (version 4), full z range.
train --out "$out/ab_geo" --steps 3000 --set init_from="\"$out/run1/last.pt\"" "${warm[@]}"
# 3. run2/a: a 24000-step schedule stopped at 18350, then stretched to 28000 steps.
train --out "$out/run2_a" --steps 24000 --set init_from="\"$out/ab_geo/last.pt\"" "${warm[@]}" stop_at_step=18350
train --out "$out/run2_a" --steps 28000 --set init_from="\"$out/ab_geo/last.pt\"" "${warm[@]}"
# 4. run3/a: a 16000-step schedule at a lower peak learning rate, stopped at step 4940.
train --out "$out/run3_a" --steps 16000 --set init_from="\"$out/run2_a/last.pt\"" "${finer[@]}" stop_at_step=4940
# 5. run3/b: 26000 steps, half the batches cut at 64-128 px, 8-bit, and mapped onto the 64 px
#    input as the pose node maps a frame (aug_resample).
train --out "$out/run3_b" --steps 26000 --set init_from="\"$out/run3_a/last.pt\"" "${finer[@]}" aug_resample=0.5
# 6. run4/c20: the same once more, 32000 steps (the control of the tilt-range ablation,
#    docs/training.md; it guided better than tilts of +-30 deg and met z).
train --out "$out/run4_c20" --steps 32000 --set init_from="\"$out/run3_b/last.pt\"" "${finer[@]}" aug_resample=0.5
# 7. run7b: exported (an earlier shipped model), then continued from that .onnx
#    at half the stage-6 peak, one thread, bf16; an 18000-step schedule stopped at step 502,
#    resumed as 16000 steps and stopped at 2217, resumed as 14000 steps.
stage6="$out/run4_c20/echoposed_k5_stage6.onnx"
[[ -n "$dry" || -f "$stage6" ]] || .venv/bin/echoposed export "$out/run4_c20/last.pt" --out "$stage6" --name echoposed_k5
late=(z_ramp_steps=0 "$cache" ckpt_every_s=300 aug_resample=0.5 tilt_deg=20 threads=1 precision='"bf16"')
half=("${late[@]}" muon_lr=0.003 adamw_lr=0.0003)
train --out "$out/run7b" --steps 18000 --set init_from="\"$stage6\"" "${half[@]}" stop_at_step=502
train --out "$out/run7b" --steps 16000 --set init_from="\"$stage6\"" "${half[@]}" stop_at_step=2217
train --out "$out/run7b" --steps 14000 --set init_from="\"$stage6\"" "${half[@]}"
# 8. run8b: 8000 steps at a quarter of the stage-6 peak with the Cauchy loss at c = 15 deg.
cauchy=("${late[@]}" loss='"cauchy"' loss_scale_deg=15)
train --out "$out/run8b" --steps 8000 --set init_from="\"$out/run7b/last.pt\"" "${cauchy[@]}" \
    muon_lr=0.0015 adamw_lr=0.00015
# 9. run9c: 8000 steps at Muon 0.001 with the 16 poses' turns about the beam drawn in 4 clusters
#    of +-10 deg (more pairs a few degrees apart about z).
clustered=("${cauchy[@]}" turn_clusters=4 cluster_deg=10)
train --out "$out/run9c" --steps 8000 --set init_from="\"$out/run8b/last.pt\"" "${clustered[@]}" \
    muon_lr=0.001 adamw_lr=0.0001
# 10. run10a: the same for 16000 steps at Muon 0.0015 (stage 8's peak).
train --out "$out/run10a" --steps 16000 --set init_from="\"$out/run9c/last.pt\"" "${clustered[@]}" \
    muon_lr=0.0015 adamw_lr=0.00015
# 11. run12a: the same for 16000 more steps at Muon 0.001 (stage 9's peak).
train --out "$out/run12a" --steps 16000 --set init_from="\"$out/run10a/last.pt\"" "${clustered[@]}" \
    muon_lr=0.001 adamw_lr=0.0001

[[ -z "$dry" ]] || exit 0
.venv/bin/echoposed export "$out/run12a/last.pt" --out "$out/echoposed_k5.onnx" --name echoposed_k5
echo "wrote $out/echoposed_k5.onnx; evaluate it with: .venv/bin/echoposed eval calibration --seeds 1000-1019 --model $out/echoposed_k5.onnx --json $out/cal.json"
