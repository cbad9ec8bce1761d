# Process bookkeeping shared by ci/cluster and ci/node (sourced, not run). Each started process is one line
# "name pid starttime" in $STATE/pids; the start time (field 22 of /proc/PID/stat) guards against PID reuse, so a
# stop only ever signals a process this script started. Needs: $STATE, $RUN (its log/ folder), log().

proc_start() { awk '{print $22}' "/proc/$1/stat" 2>/dev/null; }
alive() { [ -n "$2" ] && [ "$(proc_start "$1")" = "$2" ]; }

# start NAME CMD...: daemonised (own session; no inherited stdio or lock fd) so `up` can return, callers capturing
# our output (subprocess pipes) are not held open, and the lock is released when `up` exits.
start() {
  local name=$1; shift
  setsid "$@" </dev/null >"$RUN/log/$name.log" 2>&1 9>&- &
  local pid=$!
  sleep 0.05
  printf '%s %s %s\n' "$name" "$pid" "$(proc_start "$pid")" >> "$STATE/pids"
}

# stop LINE...: each a line of $STATE/pids; SIGTERM, up to 10 s to exit, then SIGKILL.
stop() {
  local line name pid st i left
  for line in "$@"; do
    read -r name pid st <<<"$line"
    if alive "$pid" "$st"; then kill -TERM "$pid" 2>/dev/null || true; fi
  done
  for ((i = 0; i < 100; i++)); do
    left=0
    for line in "$@"; do read -r name pid st <<<"$line"; if alive "$pid" "$st"; then left=1; fi; done
    [ "$left" -eq 0 ] && return 0
    sleep 0.1
  done
  for line in "$@"; do
    read -r name pid st <<<"$line"
    if alive "$pid" "$st"; then log "$name (pid $pid) ignored SIGTERM for 10s: SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; fi
  done
}

# all_alive_so_far: every recorded process still runs (names the first that exited).
all_alive_so_far() {
  local name pid st
  while read -r name pid st; do alive "$pid" "$st" || { log "$name (pid $pid) exited"; return 1; }; done < "$STATE/pids"
}

tail_logs() { local f; for f in "$RUN"/log/*.log; do printf '\n--- %s\n' "$f"; tail -n 15 "$f"; done; }

# wait_for WHAT SECONDS CMD...: poll CMD every 0.25 s while every process lives; die with the logs otherwise.
wait_for() {
  local what=$1 t=$2 i; shift 2
  for ((i = 0; i < t * 4; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    all_alive_so_far || break
    sleep 0.25
  done
  die "$what not ready after ${t}s; logs in $RUN/log (copied to $STATE/last-logs):$(tail_logs)"
}
