#!/usr/bin/env bash
# Like-for-like echo: netpoll against madsim 0.2.34 and turmoil 0.7.2, in the same run.
#
# Builds `netpoll-sim` (the workspace, release) and this directory's two programs (release,
# their own target dir here, RUSTFLAGS="--cfg madsim"), then runs every program RUNS times in
# turn (netpoll, netpoll rt-echo, madsim, turmoil, netpoll, ...) under /usr/bin/time, and
# prints each one's median CPU (user + sys) and median peak RSS, and its CPU against madsim's.
#
# Each measured run follows an unmeasured run of the same program (WARMUP=0 turns that off), so
# that no program pays for the memory the previous one just gave back: right after madsim's
# 650 MiB process exits, netpoll's run takes 0.06 to 0.13 s of system time (page faults that
# now get huge pages, each zeroed whole), against 0.01 to 0.02 s after a run of its own; its
# user time is the same either way.
#
# The shape is the same on every side: CONNS connections, every one open at once (netpoll:
# `--param window=CONNS`), each writing MSGS messages of SIZE bytes and reading each echo back
# before the next, then half-closing; madsim and turmoil put PER_NODE connections on each
# client node (host), netpoll runs every client in its one simulated process (spread over
# 127.0.0.x past 20,000, as the engine does).
#
#   bench/compare/run.sh              # 5 runs each, 100,000 x 10 x 64 B
#   RUNS=3 CONNS=10000 bench/compare/run.sh
#   ONLY="netpoll madsim" bench/compare/run.sh
#   WARMUP=0 bench/compare/run.sh     # measured runs back to back, half the time
#
# Needs cargo and GNU time (/usr/bin/time). Exits non-zero if a build or any run fails.
set -euo pipefail

RUNS=${RUNS:-5}
WARMUP=${WARMUP:-1}
case "$WARMUP" in
  0 | 1) ;;
  *) echo "error: WARMUP must be 0 or 1, not '$WARMUP'" >&2; exit 2 ;;
esac
CONNS=${CONNS:-100000}
MSGS=${MSGS:-10}
SIZE=${SIZE:-64}
PER_NODE=${PER_NODE:-1000}
SEED=${SEED:-7}
ONLY=${ONLY:-"netpoll rt-echo madsim turmoil"}

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
[ -x /usr/bin/time ] || { echo "error: GNU time (/usr/bin/time) is needed" >&2; exit 2; }

export CARGO_INCREMENTAL=0
echo "building netpoll-sim (release) ..." >&2
(cd "$root" && cargo build --release --quiet -p netpoll-scenarios --bin netpoll-sim)
echo "building madsim_echo and turmoil_echo (release, --cfg madsim) ..." >&2
(cd "$here" && RUSTFLAGS="--cfg madsim" cargo build --release --quiet --bins)

sim="$root/target/release/netpoll-sim"
bin="$here/target/release"
shape="--conns $CONNS --msgs $MSGS --size $SIZE"
declare -A cmd=(
  [netpoll]="$sim run echo $shape --param window=$CONNS --seed $SEED"
  [rt-echo]="$sim run rt-echo $shape --param window=$CONNS --seed $SEED"
  [madsim]="$bin/madsim_echo $shape --per-node $PER_NODE --seed $SEED"
  [turmoil]="$bin/turmoil_echo $shape --per-node $PER_NODE --seed $SEED"
)

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for ((i = 1; i <= RUNS; i++)); do
  for name in $ONLY; do
    [ -n "${cmd[$name]:-}" ] || { echo "error: unknown program '$name' in ONLY" >&2; exit 2; }
    if [ "$WARMUP" = 1 ] && ! ${cmd[$name]} > "$out/log" 2>&1; then
      echo "error: the warm-up before run $i of $name failed: ${cmd[$name]}" >&2
      tail -5 "$out/log" >&2
      exit 1
    fi
    if ! /usr/bin/time -f "%U %S %M" -o "$out/t" ${cmd[$name]} > "$out/log" 2>&1; then
      echo "error: run $i of $name failed: ${cmd[$name]}" >&2
      tail -5 "$out/log" >&2
      exit 1
    fi
    read -r user sys kib < <(tail -1 "$out/t")
    echo "$name $(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.3f", u + s }') $kib" >> "$out/all"
    echo "run $i/$RUNS $name: cpu $(tail -1 "$out/all" | cut -d' ' -f2) s (user $user, sys $sys)" >&2
  done
done

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
echo
echo "$CONNS x $MSGS x $SIZE B echo, every connection open at once; madsim/turmoil: $PER_NODE per client node; medians of $RUNS runs"
printf '%-10s %10s %12s %14s\n' program "CPU s" "peak MiB" "CPU / madsim"
ms=$(awk '$1 == "madsim" { print $2 }' "$out/all" | median)
for name in $ONLY; do
  c=$(awk -v n="$name" '$1 == n { print $2 }' "$out/all" | median)
  m=$(awk -v n="$name" '$1 == n { print $3 }' "$out/all" | median)
  r=$(awk -v c="$c" -v m="${ms:-}" 'BEGIN { if (m == "" || m == 0) print "-"; else printf "%.2f", c / m }')
  printf '%-10s %10.2f %12.1f %14s\n' "$name" "$c" "$(awk -v k="$m" 'BEGIN { print k / 1024 }')" "$r"
done
