#!/usr/bin/env bash
# Run examples/ the way a user runs their own tests against Godwit: Godwit
# installed (not editable) into a fresh virtualenv from a clean copy of this
# source tree, and pytest started inside examples/test_kit_example, where only
# the installed package - its public test kit - can be imported; then the
# example controller (examples/controller.py, tools/run-controller-example.sh).
#
# Usage: tools/run-examples.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
python=${PYTHON:-python3}

work=$(mktemp -d /tmp/godwit-examples.XXXXXX)
trap 'rm -rf "$work"' EXIT

# A clean copy of the tree (tracked and new files, not .venv, build/ or
# *.egg-info): stale build output in the checkout never reaches the wheel.
mkdir "$work/src"
git ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
    tar --null -T - -cf - | tar -xf - -C "$work/src"

"$python" -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --upgrade pip
"$work/venv/bin/pip" install --quiet "$work/src" pytest

cd "$repo/examples/test_kit_example"
# The examples must see the installed Godwit, never this checkout.
"$work/venv/bin/python" - "$repo" <<'PY'
import sys

import godwit.testkit

assert not godwit.testkit.__file__.startswith(sys.argv[1] + "/"), godwit.testkit.__file__
print(f"godwit.testkit {godwit.testkit.KIT_VERSION} from {godwit.testkit.__file__}")
PY
# Not exec: the trap removes the virtualenv once pytest is done.
"$work/venv/bin/pytest" -q -p no:cacheprovider "$@" .

# The example controller, against godwit-all on the real RabbitMQ.
cd "$repo"
tools/run-controller-example.sh "$work/venv"
