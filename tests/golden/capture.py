#!/usr/bin/env python3
"""Captures golden jute frames: real clients (kazoo 2.11 and zkCli.sh from ZooKeeper 3.8.0) talk
to a real ZooKeeper 3.8.0 through a recording proxy; every frame is written to frames.txt as
`<connection> <c2s|s2c> <hex payload>` (payload without the 4-byte length prefix).

Usage: capture.py ZK_PORT OUT   (start the server first with scripts/real-zk.sh)
"""
import os, socket, subprocess, sys, threading, time

ZK_PORT = int(sys.argv[1])
OUT = sys.argv[2]
lock = threading.Lock()
frames = []  # (conn, dir, payload)
conn_ids = iter(range(1, 10**6))
live = []  # sockets of open proxied connections, so a test can cut them


def drop_all():
    """Cuts every proxied connection, forcing clients to reconnect (and resend watches)."""
    with lock:
        socks, live[:] = list(live), []
    for s in socks:
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def pump(src, dst, conn, direction):
    buf = b""
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
            buf += data
            while len(buf) >= 4:
                n = int.from_bytes(buf[:4], "big", signed=True)
                if n < 0 or len(buf) < 4 + n:
                    break
                with lock:
                    frames.append((conn, direction, buf[4:4 + n]))
                buf = buf[4 + n:]
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def proxy(listener):
    while True:
        client, _ = listener.accept()
        server = socket.create_connection(("127.0.0.1", ZK_PORT))
        conn = next(conn_ids)
        with lock:
            live.extend([client, server])
        threading.Thread(target=pump, args=(client, server, conn, "c2s"), daemon=True).start()
        threading.Thread(target=pump, args=(server, client, conn, "s2c"), daemon=True).start()


def kazoo_session(port):
    from kazoo.client import KazooClient
    from kazoo.security import make_digest_acl, OPEN_ACL_UNSAFE
    events = []
    zk = KazooClient(hosts=f"127.0.0.1:{port}", timeout=10.0)
    zk.start()
    zk.create("/golden", b"root")
    zk.create("/golden/a", b"alpha", makepath=True)
    zk.create("/golden/seq-", b"", sequence=True)
    zk.create("/golden/eph", b"e", ephemeral=True)
    zk.create("/golden/eseq-", b"", ephemeral=True, sequence=True)
    zk.create("/golden/nulldata", None)
    zk.create("/golden/c2", b"stat", include_data=True)
    zk.get("/golden/a", watch=lambda e: events.append(e))
    zk.get_children("/golden", watch=lambda e: events.append(e), include_data=True)
    zk.exists("/golden/missing", watch=lambda e: events.append(e))
    # Idle long enough for a ping, then cut the connection: kazoo reconnects with its session
    # id and password and re-registers the watches with setWatches (xid -8).
    time.sleep(5)
    drop_all()
    deadline = time.time() + 20
    while not zk.connected and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)
    while not zk.connected and time.time() < deadline:
        time.sleep(0.1)
    zk.set("/golden/a", b"beta")
    zk.set("/golden/a", b"gamma", version=1)
    try:
        zk.set("/golden/a", b"x", version=99)
    except Exception:
        pass
    try:
        zk.create("/golden/a", b"")
    except Exception:
        pass
    try:
        zk.get("/golden/nope")
    except Exception:
        pass
    zk.create("/golden/missing", b"now")
    zk.get_acls("/golden")
    zk.add_auth("digest", "alice:pw")
    zk.create("/golden/secret", b"s", acl=[make_digest_acl("alice", "pw", all=True)])
    zk.set_acls("/golden/secret", OPEN_ACL_UNSAFE)
    zk.sync("/golden")
    t = zk.transaction()
    t.create("/golden/t1", b"1")
    t.set_data("/golden/t1", b"2")
    t.check("/golden/a", 2)
    t.delete("/golden/t1")
    t.commit()
    t = zk.transaction()
    t.create("/golden/t2", b"1")
    t.check("/golden/a", 42)
    t.commit()
    zk.get_children("/golden")
    zk.delete("/golden/missing")
    zk.delete("/golden", recursive=True)
    time.sleep(0.5)
    zk.stop()
    zk.close()


def zkcli(port):
    # Two batches; between them the connection is cut, so the Java client reconnects and
    # re-registers its watches with setWatches2.
    batches = ["""create /cli data
create -s /cli/seq- s
create -e /cli/eph e
create -c /cli/cont c
create -t 60000 /cli/ttl t
ls /cli
ls -s /cli
get /cli
get -s /cli
set /cli newdata
set -v 1 /cli newer
stat /cli
getAcl /cli
setAcl /cli world:anyone:cdrwa
addauth digest bob:pw
whoami
getEphemerals /cli
getAllChildrenNumber /cli
sync /cli
addWatch /cli
addWatch -m PERSISTENT_RECURSIVE /cli
ls -w /cli
get -w /cli
stat -w /cli
ls -w /cli/seq-0000000000
""", """removewatches /cli
create /cli/x
delete /cli/x
deleteall /cli
close
quit
"""]
    env = dict(os.environ, ZOO_LOG4J_PROP="ERROR,CONSOLE", CLIENT_JVMFLAGS="-Dzookeeper.root.logger=ERROR,CONSOLE")
    p = subprocess.Popen(["/usr/share/zookeeper/bin/zkCli.sh", "-server", f"127.0.0.1:{port}"],
                         stdin=subprocess.PIPE, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    p.stdin.write(batches[0].encode())
    p.stdin.flush()
    time.sleep(8)
    drop_all()
    time.sleep(5)
    p.stdin.write(batches[1].encode())
    p.stdin.close()
    p.wait(timeout=120)


def main():
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    threading.Thread(target=proxy, args=(listener,), daemon=True).start()
    kazoo_session(port)
    zkcli(port)
    time.sleep(1.0)
    with lock, open(OUT, "w") as f:
        f.write("# golden frames: <connection> <c2s|s2c> <hex payload>; made by tests/golden/capture.py\n")
        for conn, d, payload in frames:
            f.write(f"{conn} {d} {payload.hex()}\n")
    print(f"captured {len(frames)} frames on {next(conn_ids) - 1} connections", file=sys.stderr)


if __name__ == "__main__":
    main()
