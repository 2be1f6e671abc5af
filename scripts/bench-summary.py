"""One line per `freqd bench --json` result: scripts/bench-summary.py FILE LABEL."""
import json
import sys

j = json.load(open(sys.argv[1]))
lat = j["latency"]
cpu = (j.get("server_cpu") or {}).get("per_op_us", 0)
floors = " ".join(f'{f["name"]}={f["ops_per_s"]:.0f}' for f in j.get("floors") or [])
print(f'{sys.argv[2]} ops/s={j["ops_per_s"]:.0f} p50={lat["p50_us"]:.0f}us p99={lat["p99_us"]:.0f}us '
      f'errors={j["errors"]} server_cpu={cpu:.0f}us/op floors: {floors}')
