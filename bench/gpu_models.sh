#!/usr/bin/env bash
# More model where a GPU affords it (issue 15, item 2), and a chorale model trained on the GPU, in
# one run of about 8 minutes on a lent device machine:
#
#   1. four chorale trainings of MINUTES GPU minutes each, side by side on the one card (each a
#      process of its own, so all four share the card alike): the GPU defaults (2 x 256 LSTM,
#      batch 256), a wider generator (512 units), longer windows (8 bars) and a stronger critic
#      (256 units). Each is scored by bench/gpu.py as bench/styles.py scores (200 pieces of 16 bars
#      as the app makes them, 4-bar clips against the held-out chorales, 5 splits).
#   2. the best of them that ships (2 x 256 units at most) gets its two harmonisers (a melody's and a bass's), trained on the GPU at
#      the same time, HARMONISER_MINUTES each, and comes back without its training state in
#      $OUT/best (ready for `python -m musicgan generate $OUT/best`).
#
# Here first: `python -m musicgan.datasets bach data/styles/bach`, and the wheel of mido in .whl
# (see the device notes); then on the device, with .whl and data/styles/bach carried:
#   bash bench/gpu_models.sh
# (ONLY="default heldout" trains those two: a tenth of the pieces held out, see musicgan.heldout.
# PRETRAINED=1 scores the shipped model beside them, in the same run. PROFILE=1 first profiles the
# trainer's steps on the card (bench/gpu.py --parts profile, about half a minute, to $OUT/profile.json).
# DEVICE=cpu QUICK=--quick bash bench/gpu_models.sh checks the script here in a minute or two.)
set -u
MINUTES=${MINUTES:-4}
HARMONISER_MINUTES=${HARMONISER_MINUTES:-1.5}
OUT=${OUT:-runs/gpu-models}
DEVICE=${DEVICE:-cuda}
QUICK=${QUICK:-}
WORK=/tmp/gpu-models
rm -rf "$WORK"; mkdir -p "$OUT" "$WORK"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=4
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null

declare -A RUNS=(
    [default]='{"batch_size": 0}'
    [wide]='{"batch_size": 0, "hidden": 512}'
    [long]='{"batch_size": 0, "window_bars": 8}'
    [critic]='{"batch_size": 0, "d_hidden": 256}'
    [heldout]='{"batch_size": 0, "holdout": 0.1}'
)
ONLY=${ONLY:-default wide long critic}
[ "${PROFILE:-}" = 1 ] && python3 bench/gpu.py --device "$DEVICE" $QUICK --parts profile --out "$OUT/profile.json" \
    >"$WORK/profile.log" 2>&1
SHIPPED=--no-pretrained; [ "${PRETRAINED:-}" = 1 ] && SHIPPED=
# (only the first run scores the shipped model, when asked)
for name in "${!RUNS[@]}"; do [[ " $ONLY " == *" $name "* ]] || unset "RUNS[$name]"; done
for name in "${!RUNS[@]}"; do
    python3 bench/gpu.py --device "$DEVICE" $QUICK --parts chorales $SHIPPED --minutes "$MINUTES" \
        --train-batches "${RUNS[$name]}" --out "$WORK/$name.json" >"$WORK/$name.log" 2>&1 &
    SHIPPED=--no-pretrained
done
wait
for name in "${!RUNS[@]}"; do echo "== $name"; grep -v '^ ' "$WORK/$name.log" | tail -n 5; done >"$OUT/train.log"

python3 - "$OUT" "$WORK" <<'PY'
import glob, json, sys
from pathlib import Path
out, work = Path(sys.argv[1]), sys.argv[2]
summary = {}
for f in sorted(glob.glob(f"{work}/*.json")):
    for label, result in json.loads(Path(f).read_text())["chorales"].items():
        if "folder" in result:  # a model trained here
            summary[Path(f).stem] = {"label": label, **result}
        else:  # the shipped model, scored in the same run
            summary["shipped"] = {"label": label, **result}
(out / "summary.json").write_text(json.dumps(summary, indent=2))
# the best of those that ship: a checkpoint of a few MB, and generation on a Space's CPU no slower
# than a 2 x 256 generator's (a 512-unit one takes about 2x as long and is 4x the size)
shippable = [k for k in summary if "training" in summary[k] and summary[k]["training"]["hidden"] <= 256]
best = min(shippable, key=lambda k: summary[k]["two_sample"])
for k, v in summary.items():
    print(f"{k:8s} steps {v.get('training', {}).get('steps', 0):6d}  two-sample {v['two_sample']:.3f}")
print("best:", best)
Path(work, "best.txt").write_text(summary[best]["folder"])
PY
BEST=$(cat "$WORK/best.txt")
python3 -c "import sys; from musicgan import checkpoint as c; c.without_train_state(sys.argv[1], sys.argv[2])" \
    "$BEST" "$OUT/best"
cp -r "$OUT/best" "$WORK/bass"
python3 -m musicgan add-harmoniser "$OUT/best" data/styles/bach/train --minutes "$HARMONISER_MINUTES" \
    --device "$DEVICE" >"$WORK/harmoniser-top.log" 2>&1 &
python3 -m musicgan add-harmoniser "$WORK/bass" data/styles/bach/train --voice bottom \
    --minutes "$HARMONISER_MINUTES" --device "$DEVICE" >"$WORK/harmoniser-bottom.log" 2>&1 &
wait
tail -n 3 "$WORK"/harmoniser-*.log | tee "$OUT/harmonisers.log"
python3 - "$WORK/bass" "$OUT/best" <<'PY'
import sys
from musicgan import checkpoint as c, harmonise
bass = c.load(sys.argv[1])
harmonise.save(sys.argv[2], harmonise.Harmoniser(bass.harmonisers["bottom"], bass.meta["bass_harmoniser"]))
print(sys.argv[2], "has harmonisers for:", sorted(c.load(sys.argv[2]).harmonisers))
PY
ls -la "$OUT" "$OUT/best"
