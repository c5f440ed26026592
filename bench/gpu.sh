#!/usr/bin/env bash
# Run the benchmarks on whatever accelerator JAX finds and print their tables:
#   bash bench/gpu.sh [--quick]
# Needs the project installed with a JAX that sees the accelerator (for an NVIDIA GPU:
# pip install -e ".[test]" "jax[cuda12]"). --quick shortens every benchmark (about
# 8 minutes on one GPU) for a device lent for a short while.
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0
[[ "${1:-}" == "--quick" ]] && quick=1
python - <<'PY'
import jax
print(f"jax {jax.__version__}: backend {jax.default_backend()}, devices {jax.devices()}")
if jax.default_backend() == "cpu":
    print("no accelerator found: these are CPU figures")
PY
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv
out=bench/results-$(python -c "import jax; print(jax.default_backend())")
mkdir -p "$out"
if [[ $quick == 1 ]]; then
  python bench/throughput.py --user-only --repeats 1 | tee "$out/throughput.txt"
  python bench/scale.py --steps 1000 | tee "$out/scale.txt"
  python bench/zoo.py --steps 1000 --particles 4 --models eight_schools_noncentered \
    logistic_regression stochastic_volatility funnel | tee "$out/zoo.txt"
  python bench/funnel.py --warmup 500 --samples 500 --skip nutpie | tee "$out/funnel.txt"
else
  python bench/throughput.py | tee "$out/throughput.txt"
  python bench/scale.py | tee "$out/scale.txt"
  python bench/zoo.py --steps 2000 --particles 4 | tee "$out/zoo.txt"
  python bench/funnel.py | tee "$out/funnel.txt"
fi
echo "tables in $out/"
