#!/bin/bash
# Container HEALTHCHECK: GET /healthz on the admin address (RINGCAST_ADMIN, IPv4
# ADDR:PORT) with bash's /dev/tcp, so the runtime image needs no curl. 0.0.0.0 means
# this host. Exit 0 on HTTP 200, else 1.
set -euo pipefail
addr=${RINGCAST_ADMIN:-127.0.0.1:9090}
host=${addr%:*}
port=${addr##*:}
[ "$host" = "0.0.0.0" ] && host=127.0.0.1
exec 3<>"/dev/tcp/$host/$port"
printf 'GET /healthz HTTP/1.0\r\nHost: %s\r\n\r\n' "$addr" >&3
read -r _ status _ <&3
[ "$status" = "200" ]
