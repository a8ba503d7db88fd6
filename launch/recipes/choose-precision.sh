# Sourced by the recipes: sets PRECISION to bf16 when this CPU runs the bf16 GEMMs clearly faster
# than fp32, else fp32 (bench prints both rates: ~1.5x on AMD Zen 4/5, 0.5x on an Intel Xeon
# without AMX). A PRECISION already set by the caller is kept. Needs $bin (the dim-dist binary).
if [[ -z ${PRECISION:-} ]]; then
  PRECISION=fp32
  rates=$(OPENBLAS_NUM_THREADS=1 $bin bench --steps 0 --warmup 0 --mi-units 16 2>/dev/null | grep -oE "= [0-9.]+x fp32" || true)
  if [[ $rates =~ =\ ([0-9.]+)x ]] && awk "BEGIN { exit !(${BASH_REMATCH[1]} > 1.2) }"; then PRECISION=bf16; fi
fi
