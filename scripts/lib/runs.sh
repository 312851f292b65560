# Shared by scripts/bench-deliberation.sh and scripts/bench-code.sh (sourced,
# from the repository root): resumable `nsed bench` runs under
# results/runs/<name>, and the results page assembled from their summaries.
#   THREADS (default 2): kernel threads; two runs side by side with THREADS=1
#   each use a 2-core machine best. SLICE (e.g. 40m): stop each run after
#   that long; the item in flight is redone on resume.
export NSED_DATA_DIR="${NSED_DATA_DIR:-../shared/datasets}"
nsed=target/release/nsed
[ -x "$nsed" ] || cargo build --release

# run NAME BENCH-ARGS...: start or resume results/runs/NAME, with the
# caller's `common` arguments appended.
run() {
  local name=$1; shift
  local out="results/runs/$name"
  local limit=()
  [ -n "${SLICE:-}" ] && limit=(timeout --signal=INT --kill-after=30s "$SLICE")
  local rc=0
  "${limit[@]}" "$nsed" --threads "${THREADS:-2}" bench "$@" "${common[@]}" --out "$out" \
    $( [ -f "$out/meta.json" ] && echo --resume ) || rc=$?
  # 124: the slice ran out; the run resumes next time.
  case $rc in 0|124) ;; *) exit "$rc" ;; esac
}

# write_page INTRO PAGE RUN...: INTRO, then the summary of every run present
# (partial runs included: each table gives its n), into PAGE.
write_page() {
  local intro=$1 page=$2; shift 2
  {
    cat "$intro"
    for r in "$@"; do
      [ -f "results/runs/$r/meta.json" ] || continue
      echo
      "$nsed" report bench "results/runs/$r" | sed 's/^# /## /'
    done
  } > "$page"
  echo "wrote $page"
}
