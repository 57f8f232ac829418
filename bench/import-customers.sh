#!/usr/bin/env bash
# The bulk import benchmark: 100,000 customers from CSV into a fresh SQLite database, then
# the same file again (every row unchanged). Each row has names, an e-mail, a phone, a full
# postal address, a birth date, an organization (one of 50), two tags and a custom column.
# Usage: bench/import-customers.sh [path/to/rapport] [rows]
set -euo pipefail
bin=${1:-target/release/rapport}
rows=${2:-100000}
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
# Wall time, and the CPU time the process used (a fairer figure on a busy machine).
TIMEFORMAT='%R s wall, %U s user, %S s system'
for run in first again; do
  echo "$run import of $rows rows:"
  time "$bin" import customers "$dir/customers.csv" </dev/null
done
