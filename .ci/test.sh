#!/usr/bin/env bash
# The test command from README.md: every test of the workspace.
# Multi-process tests fork, so they run under cargo-nextest (one process per
# test); doctests run with cargo test, which nextest does not cover.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo-nextest >/dev/null 2>&1; then
    echo "installing cargo-nextest"
    cargo install cargo-nextest --locked
fi
cargo nextest run --workspace --no-fail-fast
cargo test --workspace --doc
