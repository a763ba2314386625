#!/bin/sh
# Benchmark: the azure provider's `list` with 50 VMs in the ARM test double (loopback), printing
# the HTTP requests per list and wall times, next to the az-CLI baseline (see the output's labels:
# only the process-spawn cost of a stub `az` can be measured here; Azure is not reachable).
#
#   bench/azure_list.sh            # release build
#   PROFILE=dev bench/azure_list.sh
set -eu
cd "$(dirname "$0")/.."
profile="${PROFILE:-release}"
exec cargo test --profile "$profile" -p azlin-providers --test azure_list_bench -- \
    --ignored --nocapture --test-threads=1
