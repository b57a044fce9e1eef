#!/usr/bin/env bash
# Make sure RabbitMQ (127.0.0.1:5672) and Redis (127.0.0.1:6379) are running, installing
# them from Debian packages when the machine has none.  The SQS endpoint (moto's server)
# is started by the test suite itself.
set -euo pipefail

port_open() {
    python3 - "$1" <<'PY'
import socket, sys
s = socket.socket()
s.settimeout(1)
try:
    s.connect(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
PY
}

wait_port() {  # port, seconds
    for _ in $(seq 1 "$2"); do
        port_open "$1" && return 0
        sleep 1
    done
    echo "port $1 did not open within $2 s" >&2
    return 1
}

apt_updated=0
apt_install() {
    if [ "$apt_updated" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if ! port_open 6379; then
    command -v redis-server >/dev/null || apt_install redis-server
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
    wait_port 6379 30
fi
echo "redis: up"

# the Sentinel tests start their own redis-sentinel; make sure the binary is there
command -v redis-sentinel >/dev/null || command -v redis-server >/dev/null || apt_install redis-server

if ! port_open 5672; then
    command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server
    rabbitmq-server -detached || true
    wait_port 5672 90
fi
echo "rabbitmq: up"
