#!/usr/bin/env bash
# The test suite: single-process tests (swift test), then the multi-rank tests under mpirun with
# 2 and 4 ranks (oversubscribed on small machines, one BLAS thread per rank).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
bash launch/setup.sh --deps-only
export OPENBLAS_NUM_THREADS=1
swift build --build-tests
swift test --skip-build 2>&1 | tee /tmp/dim-dist-swift-test.log
# The C kernels on the other instruction sets this CPU can run (each variant must give the same
# Adam step and finiteness answer bit for bit, the estimators their finite-difference gradients,
# and the narrow GEMMs OpenBLAS's products with column-invariant bits).
for isa in avx2 baseline; do
  DIM_KERNELS=$isa swift test --skip-build --filter "AdamKernelTests|FiniteCheckTests|EstimatorGradientTests|NarrowGEMMTests|HostShardedUpdateTests" \
    2>&1 | tee /tmp/dim-dist-kernels-$isa.log | grep -E "Executed .* tests" | tail -1
  grep -q "with 0 failures" /tmp/dim-dist-kernels-$isa.log
done
bin=$(ls -d .build/debug/*PackageTests.xctest | head -1)
flags=(--oversubscribe -x OPENBLAS_NUM_THREADS -x SWIFT_BACKTRACE=enable=no)
if [[ $(id -u) == 0 ]]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
for np in 2 4; do
  echo "== multi-rank tests, np=$np =="
  mpirun "${flags[@]}" -np "$np" "$bin" DIMTrainTests.DistributedEquivalenceTests,DIMTrainTests.DistributedCheckpointTests,DIMTrainTests.DistributedImportTests,DIMTrainTests.DistributedBenchTests 2>&1 | tee /tmp/dim-dist-mpi-$np.log
  grep -q "with 0 failures" /tmp/dim-dist-mpi-$np.log
done
# np = 1, 2, 4 through `dim-dist train` under mpirun and `dim-dist checkpoint diff` (every tensor
# group and state attribute): the promise "distributed means equivalent" as a user checks it. JSD
# and infoNCE (worst 2e-6 and 4e-6 on 2026-12-06); DV's margin there was 2x (1.5e-5), so it is
# left to the in-process tests (docs/results.md).
echo "== equivalence through the CLI (launch/equivalence.sh)"
bash launch/equivalence.sh 3e-5 --estimator jsd --alpha 0.5 --gamma 0.1
bash launch/equivalence.sh 3e-5 --estimator nce --alpha 0.5 --gamma 0.1
# The fc weights' gradients from gathered factors (the default between hosts; forced here on one).
bash launch/equivalence.sh 3e-5 --estimator jsd --alpha 0.5 --gamma 0.1 --fc-grad-reduce factors \
  | tee /tmp/dim-dist-fc-factors.log
grep -q "fc weights from factors gathered over ranks" /tmp/dim-dist-fc-factors.log \
  || { echo "test: --fc-grad-reduce factors was not used" >&2; exit 1; }
# ... and it can fail: gradients summed in bf16 (--grad-reduce bf16) are not equivalent at 3e-5,
# and a step that misses the tolerance passes only as a near-tie np=1 itself shows.
echo "== the CLI equivalence check refuses ranks that are not equivalent (--grad-reduce bf16)"
if STEPS=1 bash launch/equivalence.sh 3e-5 --estimator nce --grad-reduce bf16 > /tmp/dim-dist-not-equivalent.log 2>&1; then
  cat /tmp/dim-dist-not-equivalent.log; echo "test: equivalence.sh passed runs that are not equivalent" >&2; exit 1
fi
grep -q "NOT EQUIVALENT: np=2 step 1" /tmp/dim-dist-not-equivalent.log \
  || { cat /tmp/dim-dist-not-equivalent.log; echo "test: equivalence.sh failed for another reason" >&2; exit 1; }
echo "equivalence.sh refused --grad-reduce bf16 at 3e-5, as it should"
echo "== eval utility under mpirun -np 2 against one process (launch/utility-check.sh)"
bash launch/utility-check.sh .build/debug/dim-dist
# The README's "Taking the encoder to PyTorch", kept true: a small checkpoint, its features from
# `dim-dist encode`, and the same features computed in Python from the checkpoint's state_dict
# keys (the README's own snippet under PyTorch where importable, a numpy forward otherwise).
echo "== export check (launch/pytorch/check_export.py)"
py=""
for candidate in python3 /usr/bin/python3; do
  if "$candidate" -c "import h5py, numpy" 2>/dev/null; then py=$candidate; break; fi
done
[[ -n $py ]] || { echo "test: no Python with h5py and numpy (python3-h5py)" >&2; exit 1; }
export_dir=$(mktemp -d)
.build/debug/dim-dist train --steps 6 --conv-channels 8,16 --fc-units 32 --global-dim 8 --mi-units 16 \
  --out "$export_dir/run" > "$export_dir/train.log" 2>&1 || { cat "$export_dir/train.log"; exit 1; }
.build/debug/dim-dist encode --checkpoint "$export_dir/run" --data data/mnist --split test --out "$export_dir/features.h5"
"$py" launch/pytorch/check_export.py "$(ls "$export_dir"/run/checkpoints/*.h5 | tail -1)" data/mnist "$export_dir/features.h5" --images 64
rm -rf "$export_dir"
# The supervisor against a launcher that reports the job aborted but never exits (mpirun's hang
# when a rank dies during start-up): killed, logged, restarted with --resume auto.
echo "== supervisor check (launch/elastic-check.sh)"
bash launch/elastic-check.sh
# Multi-node: the emulated cluster needs root (network namespaces).
cluster_cases=0
if [[ $(id -u) == 0 ]] && ip netns list >/dev/null 2>&1; then
  bash cluster/test.sh
  # + 2: the fault test and the fault suite (cluster/test.sh stops at the first failure).
  cluster_cases=$(( $(grep -cE "^Test Case '.*' passed" /tmp/dim-dist-cluster.log || true) / 4 + 2 ))
else
  echo "== multi-node tests skipped: the emulated cluster needs root and network namespaces"
fi
# The Slurm template under a real one-node Slurm (installs slurm-wlm and munge; root only).
slurm_cases=0
if [[ $(id -u) == 0 ]]; then
  bash cluster/slurm-test.sh
  slurm_cases=3  # streaming, a user's cancel, preemption -> requeue -> exact resume
else
  echo "== Slurm test skipped: it starts slurmctld, slurmd and munged (root)"
fi
# One summary line. Each rank prints its own XCTest report, so an mpirun case counts once per np:
# the distinct names that passed (ranks writing at once can glue a report line to another's).
passed=$(grep -cE "^Test Case '.*' passed" /tmp/dim-dist-swift-test.log || true)
skipped=$(grep -cE "^Test Case '.*' skipped" /tmp/dim-dist-swift-test.log || true)
for np in 2 4; do
  n=$( { grep -oE "Test Case '[^']*' passed" /tmp/dim-dist-mpi-$np.log || true; } | sort -u | wc -l)
  passed=$((passed + n))
done
passed=$((passed + cluster_cases + slurm_cases + 5))  # + the export, CLI equivalence (and its refusal), utility and supervisor checks
echo "test: single-process XCTest cases; the multi-rank tests under mpirun -np 2, -np 4 and on 2 emulated hosts x 2 ranks; the cluster fault test and fault suite; the Slurm template under Slurm; the CLI equivalence, eval utility and supervisor checks; the export check"
echo "$passed passed, 0 failed, $skipped skipped"
