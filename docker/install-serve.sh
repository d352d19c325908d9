#!/bin/sh
# The slim serving install: a virtual environment with requirements/serve.txt at the versions
# of requirements/lock.txt, then medclf itself without its dependencies (no torch, timm or
# Lightning). docker/serve.Dockerfile runs this script, and tests/test_docker.py runs the
# same script to prove that environment serves an ONNX file with torch absent.
#   usage: docker/install-serve.sh VENV [SOURCE]   (SOURCE: the medclf checkout, default .)
set -eu
venv=$1
src=${2:-.}
"${PYTHON:-python3}" -m venv "$venv"
pip="$venv/bin/python -m pip install --disable-pip-version-check --quiet"
$pip -r "$src/requirements/serve.txt" -c "$src/requirements/lock.txt"
$pip --no-deps "$src"
