#!/usr/bin/env bash
# Run examples/controller.py as a cloud controller would: Godwit (godwit-all:
# API, conductor, three fake hosts) on the real RabbitMQ in a vhost of its own
# with notifications on, two servers booted with the godwit client, then the
# example live-migrates one and resizes (and confirms) the other through the
# controllers' RPC interface, following both by notifications alone.
#
# Usage: tools/run-controller-example.sh VENV   (a virtualenv with Godwit installed)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$1
work=$(mktemp -d /tmp/godwit-controller.XXXXXX)
vhost="godwit-example-$(basename "$work" | cut -d. -f2)"
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
    rabbitmqctl -q delete_vhost "$vhost" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

rabbitmqctl -q add_vhost "$vhost"
rabbitmqctl -q set_permissions -p "$vhost" guest '.*' '.*' '.*'
port=$("$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url="rabbit://guest:guest@127.0.0.1:5672/$vhost"
cat > "$work/godwit.conf" <<EOF
[DEFAULT]
state_path = $work/state
transport_url = $url

[api]
port = $port

[oslo_messaging_notifications]
driver = messagingv2
EOF
"$venv/bin/godwit-all" --config-file "$work/godwit.conf" > "$work/godwit-all.log" 2>&1 &
pid=$!
export GODWIT_ENDPOINT="http://127.0.0.1:$port/v2.1"
for _ in $(seq 120); do
    "$venv/bin/godwit" service list >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || { cat "$work/godwit-all.log"; exit 1; }
    sleep 0.5
done
a=$("$venv/bin/godwit" server create live-me --flavor 1 --host compute1 --wait -f value -c id)
b=$("$venv/bin/godwit" server create resize-me --flavor 1 --host compute1 --wait -f value -c id)

set +e
"$venv/bin/python" examples/controller.py --transport-url "$url" --live "$a" \
    --resize "$b=2" --timeout 120 | tee "$work/out"
status=${PIPESTATUS[0]}
set -e
if [ "$status" != 0 ]; then
    echo "examples/controller.py exited with $status; godwit-all's log:" >&2
    tail -50 "$work/godwit-all.log" >&2
    exit 1
fi
# What the example must have seen: both moves' start, phases and end.
for want in "migration.start accepted" "migration.phase running -> post-migrating" \
            "migration.end post-migrating -> completed" "migration.phase finished -> confirming" \
            "migration.end confirming -> confirmed"; do
    grep -q -- "$want" "$work/out" || { echo "the example's output lacks '$want'" >&2; exit 1; }
done
echo "controller example: both moves followed to their end"
