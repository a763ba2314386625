# Sourced by the benchmarks (from the repository root).

# Removes the benchmark's folder $1, unless something is still mounted below it (a VM that was
# not deleted): then it says so and leaves it for `azlin cleanup`.
remove_work() {
  if grep -q " $1/" /proc/self/mounts; then
    echo "bench: VMs are still mounted under $1; not removing it (run azlin cleanup)" >&2
    return 0
  fi
  rm -rf "$1"
}
