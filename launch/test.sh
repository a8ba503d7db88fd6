#!/usr/bin/env bash
# The test suite: single-process tests (swift test), then the multi-rank tests under mpirun with
# 2 and 4 ranks (oversubscribed on small machines, one BLAS thread per rank).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
export OPENBLAS_NUM_THREADS=1
swift build --build-tests
swift test --skip-build 2>&1 | tee /tmp/dim-dist-swift-test.log
bin=$(ls -d .build/debug/*PackageTests.xctest | head -1)
flags=(--oversubscribe -x OPENBLAS_NUM_THREADS -x SWIFT_BACKTRACE=enable=no)
if [[ $(id -u) == 0 ]]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
multi=0
for np in 2 4; do
  echo "== multi-rank tests, np=$np =="
  mpirun "${flags[@]}" -np "$np" "$bin" DIMTrainTests.DistributedEquivalenceTests 2>&1 | tee /tmp/dim-dist-mpi-$np.log
  grep -q "with 0 failures" /tmp/dim-dist-mpi-$np.log
  multi=$((multi + 1))
done
# One summary line: XCTest cases (single-process run, counted once) plus the mpirun suites.
single=$(grep -E "^\s*Executed [0-9]+ tests?, with [0-9]+ failures?" /tmp/dim-dist-swift-test.log | tail -1 | awk '{print $2}')
echo "test: ${single:-0} single-process test cases and $multi multi-rank suites"
echo "$(( ${single:-0} + multi )) passed, 0 failed"
