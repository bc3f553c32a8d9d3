#!/usr/bin/env bash
# Starts (or stops) a real ZooKeeper 3.8 from Debian's `zookeeper` package, for fixtures and
# comparison runs. Usage: scripts/real-zk.sh start PORT DIR | stop DIR
# TTL nodes need extendedTypesEnabled; the super digest is "super:secret".
set -euo pipefail
cmd=$1
case "$cmd" in
start)
  port=$2; dir=$3
  rm -rf "$dir"; mkdir -p "$dir/data"
  cat > "$dir/zoo.cfg" <<CFG
tickTime=2000
dataDir=$dir/data
clientPort=$port
clientPortAddress=127.0.0.1
admin.enableServer=false
maxClientCnxns=0
4lw.commands.whitelist=*
CFG
  super=$(java -cp "$(ls /usr/share/java/*.jar | tr '\n' ':')" \
    org.apache.zookeeper.server.auth.DigestAuthenticationProvider super:secret 2>/dev/null | sed 's/.*->//')
  nohup java -Dzookeeper.extendedTypesEnabled=true -Dznode.container.checkIntervalMs=3600000 \
    -Dzookeeper.DigestAuthenticationProvider.superDigest="$super" \
    -Dzookeeper.log.dir="$dir" -Dzookeeper.root.logger=INFO,CONSOLE \
    -cp "$(ls /usr/share/java/*.jar | tr '\n' ':')" \
    org.apache.zookeeper.server.quorum.QuorumPeerMain "$dir/zoo.cfg" > "$dir/zk.log" 2>&1 &
  echo $! > "$dir/pid"
  for _ in $(seq 1 100); do
    if python3 - "$port" <<'PY' 2>/dev/null; then exit 0; fi
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1)
s.sendall(b"ruok"); assert s.recv(4) == b"imok"
PY
    sleep 0.2
  done
  echo "real ZooKeeper did not start; see $dir/zk.log" >&2; exit 1
  ;;
stop)
  dir=$2
  [ -f "$dir/pid" ] && kill "$(cat "$dir/pid")" 2>/dev/null || true
  ;;
*) echo "usage: $0 start PORT DIR | stop DIR" >&2; exit 2 ;;
esac
