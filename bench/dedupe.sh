#!/usr/bin/env bash
# Duplicate detection: its quality on generated registries (precision and recall at each
# threshold, pairs compared), then `rapport dedupe` over a workspace of imported customers
# on a fresh SQLite database (the import benchmark's file: every row another person, a
# hundred of them per postcode and house number, the largest blocks compared).
# Usage: bench/dedupe.sh [path/to/rapport] [rows]
set -euo pipefail
bin=${1:-target/release/rapport}
rows=${2:-100000}
TIMEFORMAT='%R s wall, %U s user, %S s system'
for people in 20000 100000; do
  echo "## --evaluate $people"
  time "$bin" dedupe --evaluate "$people"
done
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
awk -v rows="$rows" 'BEGIN {
  print "external_id,given_name,family_name,email,phone,street,locality,postal_code,country,birth_date,organization,tags,lifecycle_stage,plan"
  for (n = 0; n < rows; n++) {
    printf "ext-%06d,Given%d,Family%d,person%d@example.com,+34 6%08d,Calle Mayor %d,Madrid,28%03d,Spain,19%02d-%02d-%02d,Org %d,t%d;all,customer,team\n",
      n, n, n, n, n, n % 500, n % 1000, 50 + n % 50, 1 + n % 12, 1 + n % 28, n % 50, n % 10
  }
}' > "$dir/customers.csv"
export RAPPORT_DATA_DIR="$dir/data" RUST_LOG=warn
unset RAPPORT_DATABASE_URL RAPPORT_CONFIG RAPPORT_MEILI_URL
"$bin" migrate
echo "## import of $rows rows (each checked against the workspace as it lands)"
time "$bin" import customers "$dir/customers.csv" </dev/null
echo "## rapport dedupe over the workspace"
time "$bin" dedupe </dev/null
echo "## rapport dedupe again (nothing new)"
time "$bin" dedupe </dev/null
