#!/bin/sh
# A designrun runner in POSIX sh + curl: a reference for runner authors (docs/runner.md).
#
#   DESIGNRUN_CALLBACK_URL=… DESIGNRUN_RUNNER_TOKEN=… sh runner.sh [COMMAND [ARGS…]]
#
# It reports "running", runs COMMAND (default: a short built-in demo) with DESIGNRUN_OUTPUT_DIR
# set, sends each line it prints as a log event (one per request, each with an idempotency key
# and its number in metadata.seq), reports progress every few lines, uploads the files left in
# DESIGNRUN_OUTPUT_DIR, and finishes "completed" (or "failed") with eventCount and
# artifactCount. Connection errors, 429 and 5xx are retried with backoff, waiting Retry-After
# when the server sends one; any other 4xx is final (the request is dropped, never resent); a
# 409 means the run was cancelled: the command is stopped and the runner exits. The token is
# refreshed at half its life. Passes `designrun-runner-check --profile standard`.
set -u

base=${DESIGNRUN_CALLBACK_URL:?DESIGNRUN_CALLBACK_URL is required}
token=${DESIGNRUN_RUNNER_TOKEN:?DESIGNRUN_RUNNER_TOKEN is required}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
prefix=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
count=0      # events sent (the eventCount declared at the end)
uploads=0    # artifacts sent
refresh_at=0 # epoch seconds; 0: a token without exp (the legacy shared secret)
pid=

log() { printf 'runner.sh: %s\n' "$*" >&2; }

# The token's exp claim, read without verification (only to know when to refresh it).
set_token() {
    token=$1
    payload=$(printf %s "$token" | cut -d. -f2 | tr '_-' '/+')
    while [ $(( ${#payload} % 4 )) -ne 0 ]; do payload="$payload="; done
    exp=$(printf %s "$payload" | base64 -d 2>/dev/null | sed -n 's/.*"exp": *\([0-9]*\).*/\1/p')
    now=$(date +%s)
    if [ -n "$exp" ]; then refresh_at=$(( now + (exp - now) / 2 )); else refresh_at=0; fi
}

# post ENDPOINT CURL-ARGS…: POST with retries. Returns 0 (2xx, answer in $work/answer),
# 1 (refused: a 4xx other than 409/429, or retries spent) or 2 (409: the run is finished).
post() {
    endpoint=$1
    shift
    attempt=0
    while :; do
        attempt=$((attempt + 1))
        if [ "$refresh_at" -gt 0 ] && [ "$(date +%s)" -ge "$refresh_at" ]; then
            refresh
        fi
        code=$(curl -sS -o "$work/answer" -D "$work/headers" -w '%{http_code}' --max-time 30 \
            -X POST -H "Authorization: Bearer $token" "$@" "$base/$endpoint" 2>/dev/null) || code=000
        case $code in
            2??) return 0 ;;
            409) return 2 ;;
            429 | 5?? | 000) ;;
            *) log "$endpoint: HTTP $code, dropped"; return 1 ;;
        esac
        if [ "$attempt" -ge 10 ]; then log "$endpoint: giving up"; return 1; fi
        wait=$(sed -n 's/^[Rr]etry-[Aa]fter: *\([0-9][0-9]*\).*/\1/p' "$work/headers" 2>/dev/null | tail -n 1)
        if [ -z "$wait" ] || [ "$code" = 000 ]; then
            wait=$(awk -v a="$attempt" 'BEGIN { d = 0.2 * 2 ^ (a - 1); if (d > 5) d = 5; print d }')
        fi
        sleep "$wait"
    done
}

# The token exchange has its own loop and variable names: sh has no local variables, and
# post() calls this in the middle of its own retries.
refresh() {
    r_attempt=0
    while [ "$r_attempt" -lt 5 ]; do
        r_attempt=$((r_attempt + 1))
        r_code=$(curl -sS -o "$work/token" -w '%{http_code}' --max-time 30 -X POST \
            -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
            --data-binary '{}' "$base/token" 2>/dev/null) || r_code=000
        case $r_code in
            2??)
                fresh=$(sed -n 's/.*"runnerToken": *"\([^"]*\)".*/\1/p' "$work/token")
                if [ -n "$fresh" ]; then set_token "$fresh"; fi
                return 0 ;;
            429 | 5?? | 000) sleep "$(awk -v a="$r_attempt" 'BEGIN { print 0.2 * 2 ^ (a - 1) }')" ;;
            *) log "token: HTTP $r_code"; return 1 ;;
        esac
    done
    return 1 # keep the current token; the next request tries again
}

json_string() { # stdin → a JSON string body (without quotes)
    tr -d '\000-\010\013-\037' | sed 's/\\/\\\\/g; s/"/\\"/g; s/\t/\\t/g'
}

stop_command() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; fi
    log "the run was cancelled; stopped"
    exit 0
}

status() { # status JSON-BODY; a 409 stops the runner, a refused report is not worth the run
    post status -H 'Content-Type: application/json' --data-binary "$1"
    if [ $? -eq 2 ]; then stop_command; fi
}

set_token "$token"
status '{"status": "running"}'

out="$work/out"
mkdir -p "$out"
export DESIGNRUN_OUTPUT_DIR="$out"
if [ $# -eq 0 ]; then
    set -- sh -c 'for i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo "step $i of 12"; sleep 0.1; done
        printf "<h1>%s</h1>\n" "${DESIGNRUN_PROMPT:-hello}" > "$DESIGNRUN_OUTPUT_DIR/index.html"'
fi
mkfifo "$work/lines"
"$@" > "$work/lines" 2>&1 &
pid=$!
# Read in this shell (not a pipe's subshell): count and token must survive the loop.
while IFS= read -r line || [ -n "$line" ]; do
    count=$((count + 1))
    message=$(printf %s "$line" | json_string)
    post events -H 'Content-Type: application/json' --data-binary \
        "{\"eventType\": \"log.stdout\", \"message\": \"$message\", \"metadata\": {\"seq\": $count}, \"idempotencyKey\": \"$prefix:$count\"}"
    if [ $? -eq 2 ]; then stop_command; fi
    if [ $((count % 3)) -eq 0 ]; then
        status "{\"progress\": $(awk -v n="$count" 'BEGIN { print n / (n + 6) }')}"
    fi
done < "$work/lines"
wait "$pid"
exit_code=$?
pid=

for file in "$out"/*; do
    [ -f "$file" ] || continue
    uploads=$((uploads + 1))
    post artifacts -F "file=@$file" -F "artifactType=file" -F "idempotencyKey=$prefix:artifact:$uploads"
    if [ $? -eq 2 ]; then stop_command; fi
done

counts="\"eventCount\": $count, \"artifactCount\": $uploads"
if [ "$exit_code" -eq 0 ]; then
    status "{\"status\": \"completed\", $counts}"
else
    status "{\"status\": \"failed\", \"error\": \"command exited with code $exit_code\", $counts}"
fi
exit "$exit_code"
