#!/usr/bin/env bash
# A 3-worker Alphabet cluster on one machine: the initializer and two workers that join it.
# Run from the repository root after building (ninja -C build). A sink must listen on 7002:
#   build/tools/roo-receiver --listen 127.0.0.1:7002 &
# Then talk to it: build/tools/roo-sender --host 127.0.0.1:7010 --messages 1M
# and:             build/tools/roo-ctl --external 127.0.0.1:6002 status
A=${ALPHABET:-build/examples/alphabet/alphabet}
STATE=${STATE:-/var/tmp/roo}

$A --cluster-initializer --worker-count 3 \
   --control 127.0.0.1:6000 --data 127.0.0.1:6001 --external 127.0.0.1:6002 \
   --in 127.0.0.1:7010 --out 127.0.0.1:7002 --resilience-dir "$STATE/initializer" &

$A --name worker1 --control 127.0.0.1:6000 \
   --my-control 127.0.0.1:6010 --my-data 127.0.0.1:6011 --external 127.0.0.1:6012 \
   --in 127.0.0.1:7011 --out 127.0.0.1:7002 --resilience-dir "$STATE/worker1" &

$A --name worker2 --control 127.0.0.1:6000 \
   --my-control 127.0.0.1:6020 --my-data 127.0.0.1:6021 --external 127.0.0.1:6022 \
   --in 127.0.0.1:7012 --out 127.0.0.1:7002 --resilience-dir "$STATE/worker2" &

wait
