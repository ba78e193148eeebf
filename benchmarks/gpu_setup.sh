# Sourced by the device-machine scripts (gpu_check.sh, gan_study_gpu.sh): zoo on a machine
# that already has torch and no network. `install_zoo PY WORK` installs it without
# dependencies, or, where no build backend is there, puts the source on PYTHONPATH.
install_zoo() {
    local py=$1 work=$2
    "$py" -m pip install -q --no-deps --no-build-isolation --no-index -e . >"$work/install.log" 2>&1 \
        && return
    echo "pip install failed (see install.log); using PYTHONPATH"
    mkdir -p "$work/src" && ln -sfn "$PWD/zoo" "$work/src/zoo" \
        && ln -sfn "$PWD/registry.toml" "$work/src/registry.toml" \
        && ln -sfn "$PWD/plugins" "$work/src/zoo_plugins"
    export PYTHONPATH=$work/src
}
