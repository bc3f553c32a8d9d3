#!/usr/bin/env bash
# Starts (or stops) a real ZooKeeper 3.8 from Debian's `zookeeper` package, for fixtures and
# comparison runs: one standalone server, or an ensemble of N servers on localhost.
# Usage: scripts/real-zk.sh start PORT DIR            standalone, client port PORT
#        scripts/real-zk.sh ensemble N PORT DIR       servers 1..N, client ports PORT..PORT+N-1
#        scripts/real-zk.sh stop DIR                  (DIR of the whole, or of one server: DIR/s2)
#        scripts/real-zk.sh resume DIR                starts a stopped server DIR/sN again
# TTL nodes need extendedTypesEnabled; the super digest is "super:secret"; containers are not
# reaped during a run (a comparison must not race the reaper). ZK_JVM_FLAGS adds -D flags
# (e.g. -Dreadonlymode.enabled=true), ZK_CFG_EXTRA more zoo.cfg lines.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
cp_jars() { ls /usr/share/java/*.jar | tr '\n' ':'; }

# launch DIR: runs the server of DIR/zoo.cfg in the background.
launch() {
  local dir=$1
  # shellcheck disable=SC2086 # ZK_JVM_FLAGS: extra -D flags, word-split on purpose
  nohup java ${ZK_JVM_FLAGS:-} -Dzookeeper.extendedTypesEnabled=true -Dznode.container.checkIntervalMs=3600000 \
    -Dzookeeper.DigestAuthenticationProvider.superDigest="$SUPER" \
    -Dzookeeper.log.dir="$dir" -Dzookeeper.root.logger=INFO,CONSOLE \
    -cp "$(cp_jars)" org.apache.zookeeper.server.quorum.QuorumPeerMain "$dir/zoo.cfg" >> "$dir/zk.log" 2>&1 &
  echo $! > "$dir/pid"
}

# start_one DIR PORT [SERVER_LINES MYID]
start_one() {
  local dir=$1 port=$2 servers=${3:-} myid=${4:-}
  mkdir -p "$dir/data"
  cat > "$dir/zoo.cfg" <<CFG
tickTime=2000
initLimit=10
syncLimit=5
dataDir=$dir/data
clientPort=$port
clientPortAddress=127.0.0.1
admin.enableServer=false
maxClientCnxns=0
4lw.commands.whitelist=*
CFG
  # ZK_CFG_EXTRA: more zoo.cfg lines (e.g. localSessionsEnabled=true).
  if [ -n "${ZK_CFG_EXTRA:-}" ]; then
    printf '%s\n' "$ZK_CFG_EXTRA" >> "$dir/zoo.cfg"
  fi
  if [ -n "$servers" ]; then
    printf '%s\n' "$servers" >> "$dir/zoo.cfg"
    echo "$myid" > "$dir/data/myid"
  fi
  launch "$dir"
}

# wait_serving PORT: until the server answers srvr with a serving mode (the tests' jute.py asks).
wait_serving() {
  for _ in $(seq 1 150); do
    if python3 -c 'import sys; sys.path.insert(0, sys.argv[1]); from jute import four_letter
sys.exit(0 if "Mode: " in four_letter("127.0.0.1:" + sys.argv[2], "srvr") else 1)' "$REPO/tests/integration" "$1"; then
      return 0
    fi
    sleep 0.2
  done
  return 1
}

cmd=$1
case "$cmd" in
start|ensemble)
  if [ "$cmd" = start ]; then n=1; port=$2; dir=$3; else n=$2; port=$3; dir=$4; fi
  rm -rf "$dir"; mkdir -p "$dir"
  SUPER=$(java -cp "$(cp_jars)" org.apache.zookeeper.server.auth.DigestAuthenticationProvider super:secret 2>/dev/null | sed 's/.*->//')
  if [ "$n" = 1 ]; then
    start_one "$dir" "$port"
  else
    servers=""
    for i in $(seq 1 "$n"); do
      servers+="server.$i=127.0.0.1:$((port + 100 + i)):$((port + 200 + i))"$'\n'
    done
    for i in $(seq 1 "$n"); do
      start_one "$dir/s$i" $((port + i - 1)) "$servers" "$i"
    done
  fi
  for i in $(seq 1 "$n"); do
    if ! wait_serving $((port + i - 1)); then
      echo "real ZooKeeper did not start; see $dir/**/zk.log" >&2; exit 1
    fi
  done
  ;;
resume)
  # One server of an ensemble again, from its existing DIR (e.g. DIR/s2), same flags.
  dir=$2
  SUPER=$(java -cp "$(cp_jars)" org.apache.zookeeper.server.auth.DigestAuthenticationProvider super:secret 2>/dev/null | sed 's/.*->//')
  launch "$dir"
  ;;
stop)
  dir=$2
  for p in "$dir"/pid "$dir"/s*/pid; do
    [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null || true
  done
  ;;
*) echo "usage: $0 start PORT DIR | ensemble N PORT DIR | stop DIR | resume DIR" >&2; exit 2 ;;
esac
