# bench/lib.sh: ports for the bench scripts' workers (source it once $work exists).

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# free_port: a port nobody listens on, never one this run handed out before. Ports are drawn
# before the workers bind them, in command substitutions where no variable survives, so each
# is reserved as a directory in $work; a repeat would make two listeners collide.
free_port() {
    local p
    mkdir -p "$work/ports"
    while :; do
        # Below the kernel's ephemeral range (32768+ by default), so outgoing connections
        # never take a port between our check and the worker's bind.
        p=$((10000 + (RANDOM * 32768 + RANDOM) % 22000))
        if ! port_busy "$p" && mkdir "$work/ports/$p" 2>/dev/null; then
            echo "$p"
            return
        fi
    done
}
