#!/usr/bin/env bash
# Optional (never part of `make test`): train a real Rasa 3.6 server on nlu/data, serve it on
# 127.0.0.1:$RASA_PORT and benchmark it next to the embedded parser. Run by `make compare-rasa`.
# Needs a Rasa virtualenv: bash ../shared/rasa/recipe_py311.sh ../rasa-venv (nlu/rasa/README.md).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

RASA_VENV=${RASA_VENV:-../rasa-venv}
RASA_PORT=${RASA_PORT:-5005}
RASA_URL="http://127.0.0.1:${RASA_PORT}"
PYTHON=${PYTHON:-.venv/bin/python}
rasa="$(cd "$(dirname "$RASA_VENV")" && pwd)/$(basename "$RASA_VENV")/bin/rasa"

rasa_up() { "$PYTHON" -c "import sys, urllib.request as u; u.urlopen(sys.argv[1] + '/status', timeout=2)" "$RASA_URL" 2>/dev/null; }

if [ ! -x "$rasa" ]; then
    echo "compare-rasa: $RASA_VENV/bin/rasa not found." >&2
    echo "  Build it (about 3 GB, 2 minutes): bash ../shared/rasa/recipe_py311.sh $RASA_VENV" >&2
    echo "  or name an existing Rasa 3.6 virtualenv: make compare-rasa RASA_VENV=PATH" >&2
    exit 1
fi
if rasa_up; then
    echo "compare-rasa: something already answers on $RASA_URL; stop it or set RASA_PORT." >&2
    exit 1
fi

work=$(mktemp -d)
pid=""
trap 'if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi; rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

mkdir -p "$work/data"
cp nlu/rasa/config.yml "$work/"
"$PYTHON" -m nlu.intents >"$work/domain.yml"  # the intents and entities of the NLU contract
cp nlu/data/intents/*.yml "$work/data/"
cp nlu/data/entities.yml "$work/data/entities.yml"
cp config/nlu/hospitals.yml "$work/data/hospitals.yml"
export RASA_TELEMETRY_ENABLED=false

echo "compare-rasa: training Rasa on nlu/data in $work"
(cd "$work" && "$rasa" train nlu --fixed-model-name nlu --out models)
echo "compare-rasa: starting Rasa on $RASA_URL"
(cd "$work" && exec "$rasa" run --enable-api -m models/nlu.tar.gz -i 127.0.0.1 -p "$RASA_PORT") \
    >"$work/rasa.log" 2>&1 &
pid=$!
waited=0
until rasa_up; do
    if ! kill -0 "$pid" 2>/dev/null || [ "$waited" -ge 180 ]; then
        echo "compare-rasa: Rasa did not come up; the end of its log:" >&2
        tail -n 30 "$work/rasa.log" >&2
        exit 1
    fi
    sleep 1
    waited=$((waited + 1))
done
echo "compare-rasa: Rasa up after ${waited} s"
"$PYTHON" benchmarks/nlu_bench.py --rasa-url "$RASA_URL"
