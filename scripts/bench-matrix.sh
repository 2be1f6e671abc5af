#!/usr/bin/env bash
# Runs the docs/performance.md matrix: 3 `freqd serve` processes on
# loopback (replication factor 3, 128 partitions, pool 1-100000), for each
# fsync policy in FSYNCS and each client count in CLIENTS, RUNS runs of
# `freqd bench` (alloc-release) with the loopback floors of the same run;
# then the idle CPU of the cluster. One JSON object per run goes to
# $OUT/bench-<fsync>-c<clients>-<run>.json and a summary line to stdout.
#
#   scripts/bench-matrix.sh                 # the full matrix
#   FSYNCS=none CLIENTS=64 RUNS=1 scripts/bench-matrix.sh
#   FSYNCS=none CLIENTS= scripts/bench-matrix.sh   # the idle cluster only
set -euo pipefail
cd "$(dirname "$0")/.."

FSYNCS=${FSYNCS:-"none always"}
CLIENTS=${CLIENTS-"1 16 64"}
RUNS=${RUNS:-3}
DURATION=${DURATION:-10s}
PROFILE=${PROFILE:-fast}
OUT=${OUT:-$(mktemp -d)}
BIN=$OUT/freqd
go build -o "$BIN" ./cmd/freqd

pids=()
stop() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	pids=()
}
trap stop EXIT

start() { # $1 = fsync policy
	local dir=$OUT/data-$1
	rm -rf "$dir"
	for i in 1 2 3; do
		local seeds=()
		for j in 1 2 3; do [ "$j" != "$i" ] && seeds+=("127.0.0.1:1794$j"); done
		"$BIN" serve --name "n$i" --api-addr "127.0.0.1:1710$i" --peer-addr "127.0.0.1:1730$i" \
			--gossip-addr "127.0.0.1:1794$i" --seeds "$(IFS=,; echo "${seeds[*]}")" \
			--profile "$PROFILE" --ranges 1-100000 --partitions 128 --replication-factor 3 \
			--bootstrap-expect 3 --data-dir "$dir/n$i" --fsync "$1" --log-level warn \
			>"$OUT/n$i-$1.log" 2>&1 &
		pids+=($!)
	done
	# Wait until every partition is writable (poll, bounded).
	for _ in $(seq 1 300); do
		if "$BIN" status --addr 127.0.0.1:17101 --json 2>/dev/null | grep -q '"writable": *128'; then
			return 0
		fi
		sleep 0.1
	done
	echo "cluster did not become writable; logs in $OUT" >&2
	exit 1
}

addrs=127.0.0.1:17101,127.0.0.1:17102,127.0.0.1:17103
for fs in $FSYNCS; do
	start "$fs"
	for c in $CLIENTS; do
		for r in $(seq 1 "$RUNS"); do
			f=$OUT/bench-$fs-c$c-$r.json
			"$BIN" bench --addr "$addrs" --clients "$c" --duration "$DURATION" --warmup 2s \
				--floor-duration 3s --json >"$f" 2>/dev/null
			python3 scripts/bench-summary.py "$f" "fsync=$fs clients=$c run=$r"
		done
	done
	if [ "$fs" = "${FSYNCS##* }" ]; then
		# Idle CPU: 20 s of nothing, per process.
		declare -A before
		for p in "${pids[@]}"; do before[$p]=$(awk '{print $14+$15}' "/proc/$p/stat"); done
		sleep 20
		tck=$(getconf CLK_TCK)
		for p in "${pids[@]}"; do
			after=$(awk '{print $14+$15}' "/proc/$p/stat")
			echo "idle pid $p: $(python3 -c "print(f'{($after-${before[$p]})/$tck/20*100:.2f}% of a core')")"
		done
	fi
	stop
done
echo "results in $OUT"
