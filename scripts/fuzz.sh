#!/usr/bin/env bash
# Builds the cargo-fuzz targets (fuzz/) with the nightly toolchain and runs
# each for a budget, one after the other:
#
#   scripts/fuzz.sh --seconds 20            the CI budget, per target
#   scripts/fuzz.sh --runs 10000000         a fixed number of executions
#   scripts/fuzz.sh --seconds 60 config     only the targets named
#   scripts/fuzz.sh --fork 2 --runs N T      N executions over 2 processes
#
# Each target starts from its committed seeds (fuzz/seeds/TARGET) and its
# own corpus (fuzz/corpus/TARGET, kept between runs, not committed). Fails
# on any crash, printing the reproducer's path; prints each target's
# executions, time and rate in a summary. Installs cargo-fuzz if missing.
# Builds without a sanitizer: the project forbids unsafe code, so what the
# targets look for are panics, overflows (checked: debug assertions are
# on) and wrong answers, and a plain build runs several times faster.
# Runs at the lowest priority (nice 19) unless DOMICILE_FUZZ_NICE says
# otherwise: a long run on a machine of its own is given 0.
set -euo pipefail

script=$(realpath "$0")
cd "$(dirname "$script")/../fuzz"
budget=(-max_total_time=20)
parallel=(-jobs=1 -workers=1)
targets=()
niceness=${DOMICILE_FUZZ_NICE:-19}
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) budget=(-max_total_time="$2"); shift 2 ;;
        --runs) budget=(-runs="$2"); shift 2 ;;
        # libFuzzer's fork mode: the budget is shared by the processes, and
        # each is replaced after a while (a fresh deployment for the
        # request targets).
        --fork) parallel=(-fork="$2"); shift 2 ;;
        -h|--help) sed -n '2,18p' "$script"; exit 0 ;;
        -*) echo "unknown option $1 (use --seconds N, --runs N or --fork N)" >&2; exit 2 ;;
        *) targets+=("$1"); shift ;;
    esac
done

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "installing the nightly toolchain" >&2
    rustup toolchain install nightly --profile minimal
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz" >&2
    cargo +nightly install cargo-fuzz --locked
fi
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

# cargo fuzz builds one target or all of them.
if [ ${#targets[@]} -eq "$(cargo +nightly fuzz list | wc -l)" ]; then
    nice -n "$niceness" cargo +nightly fuzz build -s none
else
    for t in "${targets[@]}"; do nice -n "$niceness" cargo +nightly fuzz build -s none "$t"; done
fi

summary=()
failed=0
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    log="artifacts/$t/last-run.log"
    echo "== $t" >&2
    start=$(date +%s.%N)
    status=0
    nice -n "$niceness" cargo +nightly fuzz run -s none "$t" "corpus/$t" "seeds/$t" -- \
        "${budget[@]}" "${parallel[@]}" -timeout=60 -rss_limit_mb=4096 \
        -print_final_stats=1 >"$log" 2>&1 || status=$?
    end=$(date +%s.%N)
    # With -jobs, the fuzzing runs in a worker that logs to fuzz-0.log.
    if [ -f fuzz-0.log ]; then
        cat fuzz-0.log >>"$log"
        rm -f fuzz-0.log
    fi
    if grep -qE "^==[0-9]+== ERROR|panicked at|deadly signal|Test unit written to" "$log"; then
        [ "$status" -ne 0 ] || status=1
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    runs=${runs:-$(grep -oE '^#[0-9]+' "$log" | tail -n 1 | tr -d '#')}
    secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
    rate=$(awk -v r="${runs:-0}" -v s="$secs" 'BEGIN { printf "%d", (s > 0 ? r / s : 0) }')
    if [ "$status" -ne 0 ]; then
        failed=1
        crash=$(grep -oE "Test unit written to [^ ]+" "$log" | tail -n 1 | sed 's/Test unit written to //')
        tail -n 40 "$log" >&2
        summary+=("$(printf '%-20s FAILED  runs %-10s %8.0f s  %6s exec/s  reproducer: fuzz/%s' "$t" "${runs:-?}" "$secs" "$rate" "${crash:-see $log}")")
    else
        summary+=("$(printf '%-20s ok      runs %-10s %8.0f s  %6s exec/s' "$t" "${runs:-?}" "$secs" "$rate")")
    fi
done

echo
echo "fuzz summary"
printf '%s\n' "${summary[@]}"
if [ "$failed" -ne 0 ]; then
    echo "a target crashed: reproduce with cargo +nightly fuzz run -s none TARGET fuzz/artifacts/TARGET/FILE" >&2
    exit 1
fi
