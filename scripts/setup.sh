#!/usr/bin/env bash
# Creates .venv (Python 3.11) and installs emocache with everything it needs.
# Idempotent: a second run only reinstalls when pyproject.toml or this script changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] < (3, 11))'; then
    echo "emocache needs Python 3.11 or newer; found $("$PYTHON" --version). Set PYTHON=/path/to/python3.11." >&2
    exit 1
fi

if [ ! -x .venv/bin/python ]; then
    echo "[setup] creating .venv with $("$PYTHON" --version)"
    "$PYTHON" -m venv .venv
fi

stamp=.venv/.emocache-installed
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "[setup] installing dependencies into .venv (the first time takes several minutes)"
    pip_install() {
        # Some machines list local package folders that do not all exist; pip's
        # warnings about each one would bury real errors.
        .venv/bin/python -m pip install --quiet "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
    }
    pip_install --upgrade pip
    # torch and torchvision first, as the pair that is known to work together.
    pip_install "torch==2.14.1" "torchvision==0.29.1"
    pip_install -e ".[test]"
    # The checkout on sys.path too: its packages (features, train...) then win over a folder of the same
    # name where Python runs, e.g. demo/features/, which the editable install's own finder, asked last, loses to.
    .venv/bin/python -c 'import pathlib, sys, sysconfig; pathlib.Path(sysconfig.get_paths()["purelib"], "emocache-checkout.pth").write_text(sys.argv[1] + "\n")' "$(pwd)"
    echo "$want" > "$stamp"
fi
