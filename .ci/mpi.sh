#!/usr/bin/env bash
# The Pool over MPI (feature `mpi`): installs OpenMPI when missing, checks
# the feature's lints and unit tests, then runs tests/mpi, whose harness
# launches every scenario under `mpirun --allow-run-as-root --oversubscribe
# -np 2` and `-np 3` on loopback (`--mca btl self,vader --mca
# oob_tcp_if_include lo`, and once `--mca btl self,tcp --mca
# btl_tcp_if_include lo`), each under a watchdog.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
if ! command -v mpirun >/dev/null 2>&1 || ! command -v mpicc >/dev/null 2>&1 \
    || ! command -v clang >/dev/null 2>&1; then
    echo "--- installing OpenMPI (libopenmpi-dev openmpi-bin libclang-dev clang)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y libopenmpi-dev openmpi-bin libclang-dev clang
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
echo "--- clippy and unit tests, --features mpi"
cargo clippy -p multiproc --features mpi --all-targets -- -D warnings
cargo test -p multiproc --features mpi --lib mpi::
echo "--- tests/mpi under mpirun"
# Its own package (outside the workspace, which builds without MPI),
# built into the workspace's target directory to share the artifacts.
(cd tests/mpi && cargo fmt --check && CARGO_TARGET_DIR=../../target cargo clippy --all-targets -- -D warnings)
CARGO_TARGET_DIR=target cargo build --manifest-path tests/mpi/Cargo.toml
target/debug/multiproc-mpi-tests run
