#!/usr/bin/env bash
# Set up everything zoo needs, idempotently: a virtualenv in .venv with torch,
# torchvision and the other dependencies, and Fashion-MNIST from Debian's
# dataset-fashion-mnist package. Safe to run again: finished steps are skipped.
# `setup.sh --test` also installs Debian's chromium, which the report tests drive headless.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
TORCH_PINS=(torch==2.14.1 torchvision==0.29.1)
stamp=.venv/.zoo-setup
want=$(cat pyproject.toml setup.sh | sha256sum | cut -d' ' -f1)

if [ ! -x .venv/bin/python ]; then
    echo "setup: creating virtualenv .venv"
    "$PYTHON" -m venv .venv
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "setup: installing ${TORCH_PINS[*]} and zoo's dependencies (first time: a few minutes)"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check "${TORCH_PINS[@]}" setuptools
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
    # the autoattack plugin's (zoo[robust]) library, without its requests~=2.25 pin, which
    # no resolver can satisfy beside mlflow's requests>=2.28 (it works with the newer one)
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps "torchattacks>=3.5"
    echo "$want" > "$stamp"
fi

apt_install() {  # Debian packages, as root or through sudo
    command -v apt-get >/dev/null || return 1
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -q && $SUDO apt-get install -y -q "$@"
}

if ! .venv/bin/python -c "from zoo.core.data import find_data_dir; find_data_dir()" 2>/dev/null; then
    echo "setup: Fashion-MNIST not found; installing Debian's dataset-fashion-mnist"
    apt_install dataset-fashion-mnist || echo "setup: warning: apt could not install it"
    .venv/bin/python -c "
import sys
from zoo.core.data import find_data_dir
from zoo.core.errors import ZooError
try:
    print('setup: data in', find_data_dir())
except ZooError as error:
    sys.exit(f'setup: {error}')"
fi
if [ "${1:-}" = "--test" ] && ! command -v chromium >/dev/null; then
    echo "setup: installing Debian's chromium for the browser tests of zoo report"
    apt_install chromium >/dev/null || true
    if ! command -v chromium >/dev/null; then
        if [ "${ZOO_REQUIRE_BROWSER:-}" = 1 ]; then
            echo "setup: error: chromium could not be installed (apt-get install chromium), and ZOO_REQUIRE_BROWSER=1 needs the browser tests to run" >&2
            exit 1
        fi
        echo "setup: warning: chromium could not be installed; browser tests will be skipped"
    fi
fi
echo "setup: ready"
