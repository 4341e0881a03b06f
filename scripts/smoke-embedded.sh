#!/usr/bin/env bash
# Smoke test of the zero-setup path (`npm start` with no DATABASE_URL): boots the real server on
# embedded PGlite in a temporary data folder, signs in with the generated first-owner password,
# creates and lists a department, restarts on the same folder (no new password, the old one
# still works, the data is still there), then checks a graceful SIGTERM exit.
#
#   bash scripts/smoke-embedded.sh        (SMOKE_PORT=3917 by default; a free one if taken)
#
# Needs node (24+), curl and python3. Exits non-zero on the first failure.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

DATA_DIR_SMOKE=$(mktemp -d "${TMPDIR:-/tmp}/deskroute-smoke.XXXXXX")
LOG="$DATA_DIR_SMOKE/server.log"
SERVER_PID=""

cleanup() {
  local rc=$?
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$DATA_DIR_SMOKE"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

pass() { printf 'PASS  %s\n' "$*"; }
fail() {
  printf 'FAIL  %s\n' "$*" >&2
  if [[ -f "$LOG" ]]; then
    printf -- '--- server output (last 40 lines) ---\n' >&2
    tail -n 40 "$LOG" >&2 || true
  fi
  exit 1
}

for tool in node curl python3; do
  command -v "$tool" >/dev/null || fail "$tool is not installed"
done

port_free() {
  python3 - "$1" <<'PY'
import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
finally:
    s.close()
PY
}
PORT_SMOKE=${SMOKE_PORT:-3917}
if ! port_free "$PORT_SMOKE"; then
  PORT_SMOKE=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
fi
BASE="http://127.0.0.1:$PORT_SMOKE"

# json FIELD: prints a top-level field (or a.b path) of the JSON document on stdin.
json() {
  python3 -c '
import json, sys
value = json.load(sys.stdin)
for part in sys.argv[1].split("."):
    value = value[int(part)] if isinstance(value, list) else value[part]
print(value if not isinstance(value, (dict, list)) else json.dumps(value))
' "$1"
}

start_server() {
  : >"$LOG"
  # Nothing from the caller's environment may point the server elsewhere or preset the owner.
  env -u DATABASE_URL -u DESKROUTE_ADMIN_EMAIL -u DESKROUTE_ADMIN_PASSWORD -u JWT_SECRET \
    -u DESKROUTE_ENV -u HOST \
    DATA_DIR="$DATA_DIR_SMOKE/data" PORT="$PORT_SMOKE" LOG_LEVEL=warn \
    node src/server.ts >"$LOG" 2>&1 &
  SERVER_PID=$!
  local deadline=$((SECONDS + 120))
  until curl -fsS -o /dev/null "$BASE/healthz" 2>/dev/null; do
    kill -0 "$SERVER_PID" 2>/dev/null || fail "server exited during start-up"
    ((SECONDS < deadline)) || fail "server did not answer /healthz within 120 s"
    sleep 0.25
  done
  # The banner is written right after listen(); give stdout a moment to land in the log.
  local wait_banner=$((SECONDS + 5))
  until grep -q 'Deskroute listening on' "$LOG"; do
    ((SECONDS < wait_banner)) || fail "server never printed its 'listening' line"
    sleep 0.1
  done
}

# request METHOD PATH [BODY]: sets STATUS and BODY from the response.
request() {
  local method=$1 path=$2 data=${3:-}
  local args=(-sS -o "$DATA_DIR_SMOKE/body" -w '%{http_code}' -X "$method" -H 'accept: application/json')
  [[ -n "${TOKEN:-}" ]] && args+=(-H "authorization: Bearer $TOKEN")
  [[ -n "$data" ]] && args+=(-H 'content-type: application/json' --data "$data")
  STATUS=$(curl "${args[@]}" "$BASE$path") || fail "$method $path: curl failed"
  BODY=$(cat "$DATA_DIR_SMOKE/body")
}

sign_in() {
  local email=$1 password=$2 payload
  payload=$(python3 -c 'import json,sys; print(json.dumps({"email": sys.argv[1], "password": sys.argv[2]}))' \
    "$email" "$password")
  TOKEN="" request POST /v1/auth/token "$payload"
}

# 1. First start: migrations run, the first owner is created with a generated password.
start_server
pass "server started on embedded PGlite ($BASE, DATA_DIR=$DATA_DIR_SMOKE/data)"

EMAIL=$(sed -n 's/^  email:    //p' "$LOG" | head -n 1)
PASSWORD=$(sed -n 's/^  password: //p' "$LOG" | head -n 1)
[[ -n "$EMAIL" ]] || fail "no first-owner email printed on first start"
[[ -n "$PASSWORD" ]] || fail "no generated password printed on first start"
pass "first start printed the owner's sign-in ($EMAIL, generated password)"

sign_in "$EMAIL" "$PASSWORD"
[[ "$STATUS" == 200 ]] || fail "sign-in answered $STATUS: $BODY"
TOKEN=$(json access_token <<<"$BODY")
[[ -n "$TOKEN" ]] || fail "sign-in returned no access_token"
pass "signed in with the generated password"

request POST /v1/departments '{"name":"Smoke"}'
[[ "$STATUS" == 201 ]] || fail "POST /v1/departments answered $STATUS: $BODY"
DEPARTMENT_ID=$(json id <<<"$BODY")
pass "created department Smoke ($DEPARTMENT_ID)"

request GET /v1/departments
[[ "$STATUS" == 200 ]] || fail "GET /v1/departments answered $STATUS: $BODY"
python3 -c 'import json,sys; sys.exit(0 if any(d["name"] == "Smoke" for d in json.load(sys.stdin)["data"]) else 1)' \
  <<<"$BODY" || fail "Smoke is missing from GET /v1/departments: $BODY"
pass "GET /v1/departments lists Smoke"

# 2. Restart on the same data folder.
kill -TERM "$SERVER_PID"
wait "$SERVER_PID" || fail "server exited non-zero on SIGTERM before the restart"
SERVER_PID=""
start_server
pass "server restarted on the same DATA_DIR"

if grep -q '^  password: ' "$LOG"; then
  fail "second start printed a password again"
fi
pass "second start printed no password"

sign_in "$EMAIL" "$PASSWORD"
[[ "$STATUS" == 200 ]] || fail "sign-in with the original password after restart answered $STATUS: $BODY"
TOKEN=$(json access_token <<<"$BODY")
pass "the original password still signs in after the restart"

request GET "/v1/departments/$DEPARTMENT_ID"
[[ "$STATUS" == 200 && "$(json name <<<"$BODY")" == Smoke ]] ||
  fail "department Smoke did not survive the restart ($STATUS): $BODY"
pass "department Smoke survived the restart"

# 3. Graceful shutdown: SIGTERM, exit 0 within a few seconds.
kill -TERM "$SERVER_PID"
for _ in $(seq 1 50); do
  kill -0 "$SERVER_PID" 2>/dev/null || break
  sleep 0.1
done
if kill -0 "$SERVER_PID" 2>/dev/null; then
  fail "server still running 5 s after SIGTERM"
fi
set +e
wait "$SERVER_PID"
EXIT_CODE=$?
set -e
SERVER_PID=""
[[ "$EXIT_CODE" == 0 ]] || fail "server exited with code $EXIT_CODE after SIGTERM (expected 0)"
pass "SIGTERM: server exited 0 within 5 s"

echo "PASS  embedded smoke test"
