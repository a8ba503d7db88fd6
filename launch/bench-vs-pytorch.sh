#!/usr/bin/env bash
# dim-dist against PyTorch on this CPU, in one run: the full basic32x32 model, batch 64, local
# DIM with JSD, Adam. Alternates the two programs (so a busy period hits both) and prints median
# images/s and the ratio for 1 process x 1 thread and for 2 ranks (dim-dist) vs 2 threads
# (PyTorch), in fp32 and, where the CPU has AVX512_BF16, dim-dist's --precision bf16.
#
#   bash launch/bench-vs-pytorch.sh            # 3 rounds, the paper's 2048-unit MI heads
#   ROUNDS=5 STEPS=8 bash launch/bench-vs-pytorch.sh
#   MI_UNITS=1024 bash launch/bench-vs-pytorch.sh   # the CIFAR recipe's width (also 512)
#
# PyTorch comes from PyPI into .venv-bench/ (about 540 MB the first time; TORCH_PYTHON=/path/to/python
# uses an existing one). The PyTorch model is launch/pytorch/dim_step.py, written from docs/design.md.
# When the environment sets OPENBLAS_CORETYPE (some machines preset it), dim-dist is measured both
# with that setting and without it (the kernels dim-dist picks by itself); PyTorch ignores it.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
rounds="${ROUNDS:-3}" steps="${STEPS:-5}" units="${MI_UNITS:-2048}"
python="${TORCH_PYTHON:-$here/.venv-bench/bin/python}"
if ! "$python" -c "import torch" 2>/dev/null; then
  echo "bench-vs-pytorch: installing PyTorch into .venv-bench (from PyPI)"
  python3 -m venv .venv-bench
  .venv-bench/bin/pip install -q torch numpy
  python=.venv-bench/bin/python
fi
[[ -x .build/release/dim-dist ]] || swift build -c release
bin=.build/release/dim-dist
root_flags=()
[[ $(id -u) == 0 ]] && root_flags=(--allow-run-as-root)

lscpu | grep -m1 "Model name" || true
echo "MI heads: $units units, batch 64, JSD, $steps timed steps per measurement"
"$python" -c "import torch; print('pytorch', torch.__version__, '| oneDNN', torch.backends.mkldnn.is_available())"
variants=("as-is")
[[ -n "${OPENBLAS_CORETYPE:-}" ]] && variants+=("unset-coretype")
precisions=(fp32)
grep -qw avx512_bf16 /proc/cpuinfo && precisions+=(bf16)

results=$(mktemp)
dim_rate() {  # $1 variant, $2 ranks, $3 precision
  local envs=(OPENBLAS_NUM_THREADS=1)
  [[ $1 == unset-coretype ]] && envs=(-u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "${envs[@]}")
  local cmd=("$bin" bench --steps "$steps" --rounds 1 --precision "$3" --mi-units "$units")
  (( $2 > 1 )) && cmd=(mpirun "${root_flags[@]}" -np "$2" -x OPENBLAS_NUM_THREADS "${cmd[@]}")
  env "${envs[@]}" "${cmd[@]}" 2>/dev/null | grep -m1 -E "^  [0-9.]+ images/s" | awk '{print $1}'
}
torch_rate() {  # $1 threads
  "$python" launch/pytorch/dim_step.py --threads "$1" --steps "$steps" --mi-units "$units" | "$python" -c "import json,sys; print(json.load(sys.stdin)['images_per_second'])"
}
for r in $(seq "$rounds"); do
  for t in 1 2; do
    for v in "${variants[@]}"; do
      for p in "${precisions[@]}"; do
        echo "dim-dist $v $p $t $(dim_rate "$v" "$t" "$p")" | tee -a "$results"
      done
    done
    echo "pytorch - fp32 $t $(torch_rate "$t")" | tee -a "$results"
  done
done
"$python" - "$results" "$rounds" <<'EOF'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if len(l.split()) == 5]
med = {}
for prog, var, prec, t, rate in rows:
    med.setdefault((prog, var, prec, t), []).append(float(rate))
med = {k: statistics.median(v) for k, v in med.items()}
print("\nmedian images/s over %s round(s); ratio = dim-dist / PyTorch fp32 at the same parallelism" % sys.argv[2])
print("%-40s %16s %16s" % ("", "1 thread", "2 ranks/threads"))
for key in sorted({k[:3] for k in med if k[0] == "dim-dist"}):
    cells = []
    for t in ("1", "2"):
        d, p = med.get(key[:3] + (t,)), med.get(("pytorch", "-", "fp32", t))
        cells.append("%6.1f (%4.2fx)" % (d, d / p) if d and p else "-")
    print("%-40s %16s %16s" % ("dim-dist %s, %s" % (key[2], "OPENBLAS_CORETYPE as set" if key[1] == "as-is" else "OPENBLAS_CORETYPE unset"), *cells))
print("%-40s %16s %16s" % ("pytorch fp32", *["%6.1f" % med.get(("pytorch", "-", "fp32", t), 0) for t in ("1", "2")]))
EOF
rm -f "$results"
