# Shared by the experiment scripts (sourced, from the repository root).
#   OUT (default results): the results directory; runs go under
#     $OUT/runs/<name>, the pages are $OUT/<table>.md.
#   NSED_BIN: the nsed binary to use (default: target/release/nsed, built if
#     missing). THREADS (default 2): kernel threads; two runs side by side with
#     THREADS=1 each use a 2-core machine best. SLICE (e.g. 40m): stop each
#     bench run after that long; the items in flight keep their finished
#     calls (calls.jsonl) and continue on resume.
#   NSED_DATA_DIR: the data sets (default: the repository's datasets/).
#   PARALLEL (default 4): items run at once by each bench (their model calls
#     share forward passes; records are the same as one at a time).
OUT="${OUT:-results}"
if [ -n "${NSED_BIN:-}" ]; then
  nsed=$NSED_BIN
else
  nsed=target/release/nsed
  [ -x "$nsed" ] || cargo build --release
fi

# run NAME BENCH-ARGS...: start or resume $OUT/runs/NAME, with the caller's
# `common` arguments appended.
run() {
  local name=$1; shift
  local out="$OUT/runs/$name"
  local limit=()
  [ -n "${SLICE:-}" ] && limit=(timeout --signal=INT --kill-after=30s "$SLICE")
  local rc=0
  "${limit[@]}" "$nsed" --threads "${THREADS:-2}" bench "$@" "${common[@]}" --out "$out" \
    --parallel "${PARALLEL:-4}" \
    $( [ -f "$out/meta.json" ] && echo --resume ) || rc=$?
  # 124: the slice ran out; the run resumes next time.
  case $rc in 0|124) ;; *) exit "$rc" ;; esac
}

# page TABLE: rebuild $OUT/TABLE.md and $OUT/TABLE.csv from the data (and,
# for the repository's own results/, the findings block of README.md).
page() {
  local findings=()
  [ "$OUT" = results ] && findings=(--findings-into README.md)
  "$nsed" report tables --results "$OUT" --only "$1" "${findings[@]}"
}
