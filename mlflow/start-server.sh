#!/usr/bin/env bash
# Start the MLflow tracking server (UI + REST API + model registry) that semtune studies log to.
#
# Default: bound to 127.0.0.1:5000, one worker, runs and the registry in a sqlite file and
# artifacts (image grids, models) in a folder, both under ./mlruns of the project. Light enough
# for a 2-core laptop (~0.4 GiB idle instead of ~1.65 GiB with MLflow's defaults).
#
#   mlflow/start-server.sh                       # http://127.0.0.1:5000
#   PORT=5001 mlflow/start-server.sh
#   BACKEND_STORE_URI=postgresql://semtune@db.internal/mlflow \
#   ARTIFACTS_DESTINATION=s3://my-bucket/semtune HOST=10.0.0.5 mlflow/start-server.sh
#
# Environment (all optional):
#   HOST                   interface to bind (127.0.0.1). A private address (10.x, 192.168.x) for
#                          a team or a cluster; never 0.0.0.0 on a machine reachable from the
#                          internet (refused unless SEMTUNE_MLFLOW_ALLOW_ANY_HOST=1).
#   PORT                   5000
#   WORKERS                uvicorn worker processes (1)
#   MLFLOW_STORE           folder of the default stores (<project>/mlruns)
#   BACKEND_STORE_URI      any SQLAlchemy URL for runs + registry (sqlite:///$MLFLOW_STORE/mlflow.db)
#   ARTIFACTS_DESTINATION  where artifacts go: a folder, s3://, gs://, ... ($MLFLOW_STORE/artifacts)
#   MLFLOW                 the mlflow executable (the project's .venv/bin/mlflow if present)
# Extra arguments are passed on to `mlflow server` (e.g. --allowed-hosts mlflow.internal).
#
# Artifacts are proxied through the server (--serve-artifacts), so Ray workers on other machines
# upload over HTTP with nothing but the tracking URI: no shared folder, no cloud credentials.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
store="${MLFLOW_STORE:-$root/mlruns}"
host="${HOST:-127.0.0.1}"
port="${PORT:-5000}"
workers="${WORKERS:-1}"
backend="${BACKEND_STORE_URI:-sqlite:///$store/mlflow.db}"
artifacts="${ARTIFACTS_DESTINATION:-$store/artifacts}"

if [[ -n "${MLFLOW:-}" ]]; then
    mlflow_bin="$MLFLOW"
elif [[ -x "$root/.venv/bin/mlflow" ]]; then
    mlflow_bin="$root/.venv/bin/mlflow"
else
    mlflow_bin="$(command -v mlflow || true)"
fi
if [[ -z "$mlflow_bin" ]]; then
    echo "start-server.sh: mlflow not found (run \`make setup\` or set MLFLOW=/path/to/mlflow)" >&2
    exit 2
fi

# Every address the server would bind: HOST, and any --host/-h among the extra arguments (the
# last one wins in `mlflow server`, so all are checked). Each is resolved as uvicorn would
# (HOST=0, 0x0, ::0 and names that resolve to them all mean "every interface").
python_bin="$(dirname "$mlflow_bin")/python"
[[ -x "$python_bin" ]] || python_bin="$(command -v python3)"
hosts=("$host")
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    case "${args[$i]}" in
        --host | -h) hosts+=("${args[$((i + 1))]:-}") ;;
        --host=*) hosts+=("${args[$i]#--host=}") ;;
    esac
done
for h in "${hosts[@]}"; do
    if "$python_bin" - "$h" <<'PY'
import ipaddress, socket, sys
name = sys.argv[1].strip().strip("[]")
try:
    infos = socket.getaddrinfo(name, None) if name else []
except OSError:
    sys.exit(1)  # unresolvable: mlflow itself will say so
addresses = [ipaddress.ip_address(i[4][0].split("%")[0]) for i in infos]
sys.exit(0 if not name or any(a.is_unspecified for a in addresses) else 1)
PY
    then
        if [[ "${SEMTUNE_MLFLOW_ALLOW_ANY_HOST:-0}" != 1 ]]; then
            echo "start-server.sh: refusing to bind '$h' (every interface): MLflow has no" \
                "authentication by default. Bind 127.0.0.1 and use an SSH tunnel, or a private" \
                "address (see mlflow/README.md); SEMTUNE_MLFLOW_ALLOW_ANY_HOST=1 overrides." >&2
            exit 2
        fi
    fi
done

# local stores: create their folders (a URL such as postgresql:// or s3:// is left alone)
if [[ "$backend" == sqlite:///* ]]; then
    db="${backend#sqlite:///}"
    mkdir -p "$(dirname "$db")"
fi
if [[ "$artifacts" != *://* ]]; then
    mkdir -p "$artifacts"
    artifacts="$(cd "$artifacts" && pwd)"
fi

# The job-execution subsystem (for GenAI scorers) starts extra processes: not needed here.
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false
export MLFLOW_DISABLE_TELEMETRY=true

echo "MLflow tracking server on http://$host:$port  (runs: $backend, artifacts: $artifacts)"
echo "studies log here with: export MLFLOW_TRACKING_URI=http://$host:$port"
exec "$mlflow_bin" server \
    --host "$host" --port "$port" --workers "$workers" \
    --backend-store-uri "$backend" \
    --serve-artifacts --artifacts-destination "$artifacts" \
    "$@"
