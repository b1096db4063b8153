#!/usr/bin/env bash
# The Pool over MPI against a bare rsmpi loop, the local Pool and
# mpi4py.futures, in one run: np 2 and 3, over shared memory (vader) and
# TCP on loopback. Needs OpenMPI (see .ci/mpi.sh); mpi4py is optional
# (`pip install mpi4py`). Usage: benches/mpi/run.sh [np...]
set -uo pipefail
cd "$(dirname "$0")/../.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
cargo build --release -p multiproc-benches --features mpi --bin mpi_pool >&2 || exit 1
BIN=target/release/mpi_pool
NPS=${*:-2 3}
echo "# local Pool ($(nproc) cores)"
"$BIN" local
for btl in vader tcp; do
    if [ "$btl" = tcp ]; then
        T=(--mca btl self,tcp --mca btl_tcp_if_include lo)
    else
        T=(--mca btl self,vader)
    fi
    for np in $NPS; do
        M=(mpirun --allow-run-as-root --oversubscribe --bind-to none -np "$np"
           --mca oob_tcp_if_include lo "${T[@]}")
        echo "# np=$np btl=$btl: ${M[*]} ..."
        for mode in bare pool pool-inline; do
            timeout 300 "${M[@]}" "$BIN" "$mode" | sed "s/^/np=$np $btl /"
        done
        if python3 -c 'import mpi4py' 2>/dev/null; then
            timeout 300 "${M[@]}" python3 -m mpi4py.futures benches/mpi/mpi4py_bench.py \
                | sed "s/^/np=$np $btl /"
        else
            echo "np=$np $btl mpi4py not installed (pip install mpi4py)"
        fi
    done
done
