#!/usr/bin/env bash
# The README's first command: set up, then run the whole pipeline on a synthetic
# IEMOCAP-layout corpus: manifest, extraction of all three modalities with the
# offline encoders, cross-validation and the modality ablation.
# Everything lands in ./demo (DEMO_DIR overrides it). Running it again reuses what
# is complete: the corpus, the manifest and every finished feature store.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"

DEMO=${DEMO_DIR:-demo}
UTTERANCES=${DEMO_UTTERANCES:-400}
mkdir -p "$DEMO"
step() { printf '\n== %s\n' "$*"; }

step "1/5 synthetic corpus in the IEMOCAP layout ($UTTERANCES utterances; a demo, never a benchmark)"
if [ -f "$DEMO/corpus/README.txt" ]; then
    echo "reusing $DEMO/corpus"
else
    manifests demo "$DEMO/corpus" --utterances "$UTTERANCES" --seed 0
fi

step "2/5 manifest (the real IEMOCAP parser, on the demo corpus)"
manifests iemocap "$DEMO/corpus" --out "$DEMO/manifest.jsonl" --classes six

step "3/5 features: one store per modality, offline encoders (openSMILE eGeMAPS, MiniLM, HOG faces)"
for modality in audio text video; do
    extract run --modality "$modality" --manifest "$DEMO/manifest.jsonl" --store "$DEMO/features/$modality.h5"
done
stores=(--store "$DEMO/features/audio.h5" --store "$DEMO/features/text.h5" --store "$DEMO/features/video.h5")

step "4/5 leave-one-session-out cross-validation, A+V+T"
train cv --manifest "$DEMO/manifest.jsonl" "${stores[@]}" --preset fast --modalities a,t,v --out "$DEMO/runs/cv"

step "5/5 ablation over modalities (the shape of the paper's Table 1)"
train ablate --manifest "$DEMO/manifest.jsonl" "${stores[@]}" --preset fast --lambdas 1 --out "$DEMO/runs/ablate"
