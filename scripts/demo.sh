#!/usr/bin/env bash
# The README's first command: set up, then run the demo end to end on a synthetic
# IEMOCAP-layout corpus. The steps it runs are the README's "demo-steps" block,
# word for word, so the README cannot drift from what the demo does.
# Everything lands in ./demo (DEMO_DIR overrides it). A second run reuses the
# corpus and every complete feature store.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"

DEMO=${DEMO_DIR:-demo}
mapfile -t steps < <(sed -n '/<!-- demo-steps -->/,/<!-- \/demo-steps -->/p' README.md | grep -E '^(manifests|extract|train|features) ')
if [ "${#steps[@]}" -eq 0 ]; then
    echo "README.md has no demo-steps block" >&2
    exit 1
fi

start=$SECONDS
for i in "${!steps[@]}"; do
    step=${steps[$i]//demo\//$DEMO/}
    printf '\n== [%d/%d] %s\n' "$((i + 1))" "${#steps[@]}" "$step"
    eval "$step"
done

printf '\n== done in %d s. The corpus is SYNTHETIC: these figures show the pipeline works, not how well the method does on IEMOCAP.\n' "$((SECONDS - start))"
echo "plots:"
find "$DEMO/runs" -maxdepth 3 -name '*.png' | sort | sed 's/^/  /'
echo "table: $DEMO/runs/ablate/ablation.md; per setting: $DEMO/runs/ablate/*/folds.md"
echo "reports, one page each (open with xdg-open or a file:// URL; no server needed):"
find "$DEMO/runs" -maxdepth 2 -name report.html | sort | sed 's/^/  /'
