#!/usr/bin/env python3
"""Integration tests: real ZooKeeper clients (kazoo 2.11, zkCli.sh from ZooKeeper 3.8.0) against
zraft servers started from the built binary: a single node and a 3-node ensemble.

Usage: real_clients.py PATH_TO_ZRAFT_BINARY   (test.sh installs kazoo and zookeeper first)
Prints one line per test and a final 'integration: N passed, M failed'.
"""
import copy, os, shutil, signal, socket, struct, subprocess, sys, tempfile, threading, time, traceback

from kazoo.client import KazooClient
from kazoo.exceptions import (NoNodeError, NodeExistsError, BadVersionError, SessionExpiredError, NoAuthError,
                               BadArgumentsError, ConnectionLoss)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import difftest  # noqa: E402
import jute  # noqa: E402
import readonly  # noqa: E402
import recipes  # noqa: E402
import zkdiff  # noqa: E402

BIN = os.path.abspath(sys.argv[1])
ZKCLI = "/usr/share/zookeeper/bin/zkCli.sh"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REAL_ZK_PORT = 24081
REAL_ZK3_PORT = 24091
ROOT = tempfile.mkdtemp(prefix="zraft-it-")
RESULTS = []


def make_pki(d):
    """A CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl;
    the server's key store is ZooKeeper's PEM form (chain and key in one file), and so is the
    Java client's."""
    os.makedirs(d, exist_ok=True)

    def ossl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d, timeout=60)

    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "3",
         "-subj", "/CN=zraft test CA")
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1,DNS:localhost"), ("client", "subjectAltName=DNS:client")):
        ossl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        open(f"{d}/{name}.ext", "w").write(ext + "\n")
        ossl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", f"{name}.crt", "-days", "3", "-extfile", f"{name}.ext")
        with open(f"{d}/{name}.pem", "w") as f:
            f.write(open(f"{d}/{name}.crt").read() + open(f"{d}/{name}.key").read())
    return {k: f"{d}/{k}" for k in ("ca.pem", "server.pem", "client.crt", "client.key", "client.pem")}


PKI = None
TLS_OFFSET = 50  # a TLS-enabled server's secureClientPort is its clientPort + 50


class Server:
    def __init__(self, sid, port, peers, data, tls=False, extra=()):
        self.sid, self.port, self.data, self.proc = sid, port, data, None
        self.secure_port = port + TLS_OFFSET if tls else None
        os.makedirs(data, exist_ok=True)
        lines = [f"tickTime=2000", f"dataDir={data}", f"clientPort={port}", "clientPortAddress=127.0.0.1",
                 "maxClientCnxns=0", "4lw.commands.whitelist=*",
                 # As scripts/real-zk.sh sets it for the reference: no reaping mid-comparison.
                 "znode.container.checkIntervalMs=3600000",
                 # 1 MiB log segments (ZooKeeper's preallocation block, in KiB): a run rolls
                 # several, and dozens of servers do not each write 64 MiB of zeros.
                 "preAllocSize=1024"]
        for i, pp in peers.items():
            lines.append(f"server.{i}=127.0.0.1:{pp}:{pp + 1000}")
        lines += list(extra)
        if tls:
            # ZooKeeper's keys; ssl.clientAuth is left at its default, need.
            lines += [f"secureClientPort={self.secure_port}", f"ssl.keyStore.location={PKI['server.pem']}",
                      "ssl.keyStore.type=PEM", f"ssl.trustStore.location={PKI['ca.pem']}", "ssl.trustStore.type=PEM"]
        if peers:
            open(f"{data}/myid", "w").write(f"{sid}\n")
        self.cfg = f"{data}/zoo.cfg"
        open(self.cfg, "w").write("\n".join(lines) + "\n")

    def start(self, env=None):
        self.log = open(f"{self.data}/server.log", "a")
        self.proc = subprocess.Popen([BIN, "serve", "--config", self.cfg], stdout=self.log, stderr=self.log,
                                     env=env)
        deadline = time.time() + 15
        while time.time() < deadline:
            if four(self.port, "ruok") == "imok":
                return
            time.sleep(0.1)
        raise RuntimeError(f"server {self.sid} did not start")

    def kill9(self):
        if self.proc:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def hosts(self):
        return f"127.0.0.1:{self.port}"


def four(port, word):
    return jute.four_letter(f"127.0.0.1:{port}", word)


def mode(port):
    for line in four(port, "srvr").splitlines():
        if line.startswith("Mode:"):
            return line.split(":", 1)[1].strip()
    return ""


def ensemble(n, base, tls=False, extra=()):
    peers = {i: base + 100 + i for i in range(1, n + 1)} if n > 1 else {}
    servers = [Server(i, base + i - 1, peers, f"{ROOT}/{base}-n{i}", tls, extra) for i in range(1, n + 1)]
    for s in servers:
        s.start()
    if n > 1:
        wait_for(lambda: any(mode(s.port) == "leader" for s in servers), 20, "a leader")
    return servers


def wait_for(cond, secs, what):
    deadline = time.time() + secs
    while time.time() < deadline:
        try:
            if cond():
                return
        except Exception:
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def client(hosts, **kw):
    c = KazooClient(hosts=hosts, timeout=kw.pop("timeout", 10.0), **kw)
    c.start(timeout=15)
    return c


def test(fn):
    name = fn.__name__
    t0 = time.time()
    try:
        fn()
        RESULTS.append((name, True))
        print(f"ok    {name} ({time.time() - t0:.1f}s)", flush=True)
    except Exception:
        RESULTS.append((name, False))
        print(f"FAIL  {name}\n{traceback.format_exc()}", flush=True)
    return fn


def crud(zk, base):
    zk.create(base, b"root")
    assert zk.get(base)[0] == b"root"
    st = zk.set(base, b"v2")
    assert st.version == 1
    try:
        zk.set(base, b"x", version=0)
        raise AssertionError("stale version accepted")
    except BadVersionError:
        pass
    zk.create(f"{base}/a", b"1")
    try:
        zk.create(f"{base}/a", b"1")
        raise AssertionError("duplicate create accepted")
    except NodeExistsError:
        pass
    s1 = zk.create(f"{base}/s-", b"", sequence=True)
    s2 = zk.create(f"{base}/s-", b"", sequence=True)
    assert s1 < s2 and s1.endswith("0000000001"), (s1, s2)
    e = zk.create(f"{base}/e", b"", ephemeral=True)
    assert zk.exists(e).ephemeralOwner == zk._session_id
    assert sorted(zk.get_children(base)) == sorted(["a", s1.rsplit("/", 1)[1], s2.rsplit("/", 1)[1], "e"])
    t = zk.transaction()
    t.create(f"{base}/m", b"m")
    t.set_data(f"{base}/a", b"2")
    t.check(f"{base}/a", 1)  # the set_data above made it version 1
    res = t.commit()
    assert res[0] == f"{base}/m", res
    zk.sync(base)
    assert zk.get(f"{base}/a")[0] == b"2"
    got = []
    ev = threading.Event()
    zk.get(f"{base}/a", watch=lambda w: (got.append(w), ev.set()))
    zk.set(f"{base}/a", b"3")
    assert ev.wait(5) and got[0].type == "CHANGED", got
    zk.delete(f"{base}/m")
    assert zk.exists(f"{base}/m") is None
    try:
        zk.get(f"{base}/m")
        raise AssertionError("deleted node readable")
    except NoNodeError:
        pass


def expiry(hosts_create, hosts_check, base):
    # A client process that vanishes without closing its session.
    code = (f"from kazoo.client import KazooClient;import os;z=KazooClient(hosts='{hosts_create}',timeout=4.0);z.start();"
            f"z.create('{base}',b'',ephemeral=True);os._exit(0)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)
    zk = client(hosts_check)
    assert zk.exists(base) is not None, "ephemeral should exist while the session lives"
    wait_for(lambda: zk.exists(base) is None, 20, "session expiry to delete the ephemeral")
    zk.stop()


def zkcli(hosts, base, jvm_flags=""):
    cmds = f"""create {base} hello
ls /
get {base}
set {base} world
stat {base}
get {base}
delete {base}
ls /
quit
"""
    env = dict(os.environ, ZOO_LOG4J_PROP="ERROR,CONSOLE",
               CLIENT_JVMFLAGS="-Dzookeeper.root.logger=ERROR,CONSOLE " + jvm_flags)
    p = subprocess.run([ZKCLI, "-server", hosts], input=cmds.encode(), env=env, capture_output=True, timeout=120)
    out = p.stdout.decode() + p.stderr.decode()
    assert f"Created {base}" in out, out
    assert "hello" in out and "world" in out, out
    assert "dataVersion = 1" in out, out
    assert f"{base.strip('/')}," in out or f", {base.strip('/')}" in out or f"[{base.strip('/')}" in out, out


SUPER_DIGEST = "super:" + __import__("base64").b64encode(__import__("hashlib").sha1(b"super:secret").digest()).decode()


def reconfig_session(base):
    """A 3-node zraft with reconfigEnabled and the super user, changed by kazoo's reconfig and
    zkCli.sh's `reconfig`, as an operator would: start servers 4 and 5 (their zoo.cfg lists the
    ensemble and themselves) and add them, remove a follower, replace the leader; the data
    written before and between survives every step, and the refused forms get ZooKeeper's
    errors. Prints what the clients printed."""
    env = dict(os.environ, ZRAFT_SUPER_DIGEST=SUPER_DIGEST)
    peers = {i: base + 100 + i for i in range(1, 6)}

    def spec(i):
        return f"server.{i}=127.0.0.1:{peers[i]}:{peers[i] + 1000}:participant;127.0.0.1:{base + i - 1}"

    def server(i, members):
        # ZooKeeper's Prometheus keys: each server scraped on base + 400 + i.
        return Server(i, base + i - 1, {m: peers[m] for m in members}, f"{ROOT}/{base}-rc{i}",
                      extra=["reconfigEnabled=true",
                             "metricsProvider.className=org.apache.zookeeper.metrics.prometheus.PrometheusMetricsProvider",
                             f"metricsProvider.httpPort={base + 400 + i}", "metricsProvider.httpHost=127.0.0.1"])

    def scrape(i):
        import urllib.request
        with urllib.request.urlopen(f"http://127.0.0.1:{base + 400 + i}/metrics", timeout=5) as r:
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            return {l.split(" ")[0]: float(l.split(" ")[1]) for l in r.read().decode().splitlines()
                    if l and not l.startswith("#")}

    servers = {i: server(i, [1, 2, 3]) for i in (1, 2, 3)}
    for s in servers.values():
        s.start(env)
    wait_for(lambda: any(mode(s.port) == "leader" for s in servers.values()), 20, "a leader")
    hosts = ",".join(s.hosts() for s in servers.values())
    zk = client(hosts)
    try:
        config = lambda: zk.get("/zookeeper/config")[0].decode()  # noqa: E731
        print("      /zookeeper/config: " + config().replace("\n", " | "))
        assert "version=0" in config() and "server.3=" in config()
        for i in range(50):
            zk.create(f"/rc/before-{i}", b"x", makepath=True)
        try:
            zk.reconfig(joining=None, leaving="3", new_members=None)
            raise AssertionError("reconfig without the super user succeeded")
        except NoAuthError:
            pass
        zk.add_auth("digest", "super:secret")
        for kw, err in [(dict(leaving="3", from_config=12345), BadVersionError),
                        (dict(joining="server.9=127.0.0.1:1"), BadArgumentsError),
                        (dict(leaving="1,2"), BadArgumentsError)]:
            try:
                zk.reconfig(**{"joining": None, "leaving": None, "new_members": None, **kw})
                raise AssertionError(f"reconfig {kw} succeeded")
            except err:
                print(f"      kazoo reconfig {kw}: {err.__name__}")
        # Server 4 joins through kazoo.
        servers[4] = server(4, [1, 2, 3, 4])
        servers[4].start(env)
        data, stat = zk.reconfig(joining=spec(4), leaving=None, new_members=None)
        text = data.decode()
        print("      kazoo reconfig(joining=server.4): " + text.replace("\n", " | "))
        assert "server.4=" in text and text == config(), (text, config())
        assert stat.mzxid == int(text.rsplit("version=", 1)[1], 16)
        # Server 5 joins through zkCli.sh, which then removes server 3.
        servers[5] = server(5, [1, 2, 3, 5])
        servers[5].start(env)
        cmds = f"addauth digest super:secret\nreconfig -add {spec(5)}\nconfig\nreconfig -remove 3\nconfig\nquit\n"
        cli_env = dict(os.environ, ZOO_LOG4J_PROP="ERROR,CONSOLE", CLIENT_JVMFLAGS="-Dzookeeper.root.logger=ERROR,CONSOLE")
        p = subprocess.run([ZKCLI, "-server", servers[1].hosts()], input=cmds.encode(), env=cli_env,
                           capture_output=True, timeout=120)
        out = p.stdout.decode() + p.stderr.decode()
        shown = [l for l in out.splitlines() if l.startswith(("server.", "version=", "Committed new configuration"))]
        print("      zkCli.sh reconfig -add server.5, config, reconfig -remove 3, config:\n        "
              + "\n        ".join(shown))
        assert "server.5=" in out and out.count("server.3=") >= 1, out
        zk.sync("/")
        final = config()
        assert "server.5=" in final and "server.3=" not in final, final
        wait_for(lambda: "not currently serving" in four(servers[3].port, "srvr"), 10, "server 3 to stop serving")
        print("      server 3 after its removal: " + four(servers[3].port, "srvr").strip())
        for i in range(50):
            zk.create(f"/rc/between-{i}", b"y")
        # Replace the leader: it goes, the rest elect one at once.
        old = leader_of([servers[i] for i in (1, 2, 4, 5)])
        assert old is not None
        try:
            zk.reconfig(joining=None, leaving=str(old.sid), new_members=None)
        except ConnectionLoss:
            pass  # as with ZooKeeper: the client's server saw its leader go
        wait_for(lambda: leader_of([servers[i] for i in (1, 2, 4, 5) if i != old.sid]) is not None, 20,
                 "a new leader")
        new = leader_of([servers[i] for i in (1, 2, 4, 5) if i != old.sid])
        zk.sync("/")
        final = config()
        print(f"      leader {old.sid} removed, leader now {new.sid}: " + final.replace("\n", " | "))
        assert f"server.{old.sid}=" not in final
        # Every write survived, on every remaining member.
        for i in [i for i in (1, 2, 4, 5) if i != old.sid]:
            c = client(servers[i].hosts())
            c.sync("/")
            kids = c.get_children("/rc")
            assert len(kids) == 100, (i, len(kids))
            assert f"server.{old.sid}=" not in c.get("/zookeeper/config")[0].decode()
            c.stop()
        conf4 = four(servers[4].port, "conf")
        assert "membership:" in conf4 and "server.4=" in conf4, conf4
        # The Prometheus endpoint: the new leader's view of the membership and its log.
        m = scrape(new.sid)
        assert m["server_state_leader"] == 1 and m["raft_voters"] == 3 and m["synced_followers"] == 2, m
        assert m["znode_count"] >= 100 and m["fsynctime_count"] > 0 and m["raft_leader_changes_total"] >= 1, m
        assert m["config_version"] == int(final.rsplit("version=", 1)[1], 16), m
        print(f"      scrape of server {new.sid}: " + ", ".join(f"{k} {m[k]:g}" for k in (
            "server_state_leader", "raft_term", "raft_commit_index", "raft_voters", "znode_count",
            "fsynctime_count", "fsynctime_sum", "raft_leader_changes_total", "config_version")))
    finally:
        zk.stop()
        for s in servers.values():
            s.kill9()


def repair_session(base):
    """Replica repair on the real binary: under a steady writer, a follower is killed, a bit in
    the middle of its log segment is flipped (synced data: damage on the platter), and it is
    started again: it finds the damage, moves its log aside, rebuilds itself from the others
    (not serving meanwhile) and serves every acknowledged write."""
    servers = ensemble(3, base)
    hosts = ",".join(s.hosts() for s in servers)
    zk = client(hosts, timeout=6.0)
    acked, stop = [], threading.Event()
    zk.ensure_path("/repair")

    def writer():
        i = 0
        while not stop.is_set():
            try:
                zk.create(f"/repair/w-{i:06d}", b"x" * 100)
                acked.append(i)
            except Exception:  # noqa: BLE001 - a write in doubt is simply not counted
                pass
            i += 1

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    try:
        wait_for(lambda: len(acked) >= 300, 30, "300 writes")
        victim = next(s for s in servers if mode(s.port) == "follower")
        victim.kill9()
        raft = f"{victim.data}/raft"
        seg = sorted(f for f in os.listdir(raft) if f.startswith("wal-"))[0]
        path = f"{raft}/{seg}"
        with open(path, "r+b") as f:
            f.seek(os.path.getsize(path) // 2)
            b = f.read(1)
            f.seek(-1, 1)
            f.write(bytes([b[0] ^ 0x10]))
        victim.start()
        wait_for(lambda: "Mode: follower" in four(victim.port, "srvr"), 30, "the damaged replica to rebuild")
        wait_for(lambda: len(acked) >= 600, 30, "300 more writes")
        stop.set()
        t.join(10)
        log = open(f"{victim.data}/server.log").read()
        assert "damaged storage moved aside" in log and "replica rebuilt from the ensemble" in log, log[-2000:]
        assert os.path.isdir(f"{raft}.damaged-1") and not os.path.exists(f"{raft}/REBUILDING")
        c = client(victim.hosts())
        c.sync("/")
        kids = set(c.get_children("/repair"))
        missing = [i for i in acked if f"w-{i:06d}" not in kids]
        assert not missing, f"{len(missing)} acknowledged writes missing on the rebuilt replica: {missing[:5]}"
        c.stop()
        print(f"      {seg} of server {victim.sid} damaged at its middle: moved to raft.damaged-1, rebuilt, "
              f"all {len(acked)} acknowledged writes there")
    finally:
        stop.set()
        zk.stop()
        for s in servers:
            s.kill9()


def leader_of(servers):
    for s in servers:
        if s.proc and mode(s.port) == "leader":
            return s
    return None


def durability(servers):
    """1,000 acknowledged writes while the leader, then a follower, is killed with SIGKILL and
    then every node restarts: every acknowledged write must be readable on every node."""
    acked = {}
    hosts = ",".join(s.hosts() for s in servers)
    zk = client(hosts, timeout=6.0)
    zk.ensure_path("/dur")
    i = 0

    def write_until(n):
        nonlocal i
        while len(acked) < n:
            key = f"/dur/k{i:05d}"
            i += 1
            try:
                zk.create(key, str(i).encode())
                acked[key] = str(i).encode()
            except NodeExistsError:
                # A retried create that had committed before the connection dropped.
                acked[key] = zk.get(key)[0]
            except Exception:
                time.sleep(0.2)

    write_until(400)
    leader = leader_of(servers)
    leader.kill9()
    write_until(800)
    follower = next(s for s in servers if s.proc and mode(s.port) != "leader")
    follower.kill9()
    # One node of three is left: no quorum, no writes. Restart everything.
    for s in servers:
        s.kill9()
    for s in servers:
        s.start()
    wait_for(lambda: leader_of(servers) is not None, 30, "a leader after restart")
    write_until(1000)
    zk.stop()
    for s in servers:
        c = client(s.hosts())
        c.sync("/dur")
        missing = [k for k, v in acked.items() if c.get(k)[0] != v]
        c.stop()
        assert not missing, f"node {s.sid} lost {len(missing)} acknowledged writes, e.g. {missing[:3]}"
    print(f"      durability: {len(acked)} acknowledged writes, leader {leader.sid} and follower {follower.sid} killed, all restarted; every write read back on {len(servers)} nodes")


def raw(port, payload, read=True):
    s = socket.create_connection(("127.0.0.1", port), timeout=1)
    s.sendall(payload)
    out = b""
    if read:
        try:
            while True:
                b = s.recv(4096)
                if not b:
                    break
                out += b
        except socket.timeout:
            # The server is waiting for the rest of a frame it was promised.
            out += b"<timeout>"
        except ConnectionResetError:
            # Closed with our bytes unread: a closed connection all the same.
            pass
    s.close()
    return out


def handshake():
    body = struct.pack(">iqiq", 0, 0, 10000, 0) + struct.pack(">i", 16) + b"\0" * 16 + b"\0"
    return struct.pack(">i", len(body)) + body


def bad_input(server):
    zk = client(server.hosts())
    zk.create("/bad-live", b"0")
    stop = threading.Event()
    errors = []

    def steady():
        n = 0
        while not stop.is_set():
            try:
                n += 1
                zk.set("/bad-live", str(n).encode())
                assert zk.get("/bad-live")[0] == str(n).encode()
            except Exception as e:
                errors.append(e)
                return

    t = threading.Thread(target=steady)
    t.start()
    port = server.port
    import random
    rnd = random.Random(7)
    # Garbage bytes: the connection is closed, nothing else happens.
    for _ in range(20):
        raw(port, bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 200))))
    # An oversized length prefix: closed before anything is allocated.
    assert raw(port, struct.pack(">i", 0x7fffffff) + b"xx") == b""
    assert raw(port, handshake()[:4 + 44] + struct.pack(">i", 0x100000) + b"x")[:4] != b"<tim"
    # A truncated frame, then the client goes away.
    raw(port, struct.pack(">i", 100) + b"short", read=False)
    # An unknown opcode after a valid handshake: Unimplemented (-6), then the connection closes.
    req = struct.pack(">ii", 1, 55)
    out = raw(port, handshake() + struct.pack(">i", len(req)) + req)
    n = struct.unpack(">i", out[:4])[0]
    rest = out[4 + n:]
    xid, zxid, err = struct.unpack(">iqi", rest[4:20])
    assert (xid, err) == (1, -6), (xid, err)
    # A request before the handshake: not a valid ConnectRequest, closed.
    get = struct.pack(">ii", 1, 4) + struct.pack(">i", 1) + b"/" + b"\0"
    assert raw(port, struct.pack(">i", len(get)) + get) == b""
    time.sleep(0.5)
    stop.set()
    t.join()
    assert not errors, errors
    assert four(port, "ruok") == "imok"
    zk.stop()


def pipelining(hosts_list, rounds):
    """One session per entry of hosts_list, all at once; each pipelines `rounds` rounds of
    set_async, get_async and exists_async on its own node (plus a sequential create and a
    get_children every 5th round) before waiting for any reply. Every reply must come in order
    (kazoo raises 'xids do not match' otherwise) and every read must see the write sent just
    before it by the same session."""
    errors, counts = [], []

    def one(idx, hosts):
        try:
            zk = client(hosts)
            base = f"/pipe{idx}"
            zk.create(base, b"0")
            zk.create(base + "/q", b"")
            pend = []
            for i in range(1, rounds + 1):
                pend.append(("set", i, zk.set_async(base, str(i).encode())))
                pend.append(("get", i, zk.get_async(base)))
                pend.append(("exists", i, zk.exists_async(base)))
                if i % 5 == 0:
                    pend.append(("create", i, zk.create_async(base + "/q/c-", b"", sequence=True)))
                    pend.append(("children", i // 5, zk.get_children_async(base + "/q")))
            for kind, i, a in pend:
                r = a.get(timeout=120)
                if kind == "set":
                    assert r.version == i, (kind, i, r)
                elif kind == "get":
                    assert r[0] == str(i).encode() and r[1].version == i, ("read missed its own write", i, r)
                elif kind == "exists":
                    assert r.version == i, (kind, i, r)
                elif kind == "children":
                    assert len(r) == i, (kind, i, len(r))
            counts.append(len(pend))
            zk.stop()
        except Exception as e:  # noqa: BLE001
            errors.append(f"session {idx} on {hosts}: {e!r}")

    t0 = time.time()
    threads = [threading.Thread(target=one, args=(i, h)) for i, h in enumerate(hosts_list)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    secs = time.time() - t0
    assert not errors, errors
    total = sum(counts)
    print(f"      pipelining: {len(hosts_list)} sessions x {rounds} rounds = {total} pipelined requests "
          f"in {secs:.1f}s ({total / secs:.0f}/s), replies in order, every read saw its session's write")


CLI_MT = "/usr/lib/zookeeper/bin/cli_mt"


def cli_mt(hosts, base):
    """A scripted session of ZooKeeper's C client (Debian zookeeper-bin); its output lines,
    without what differs between any two servers (session ids, times, zxids), sorted (the
    client prints from its callback thread, so the order of lines may vary)."""
    script = [f"create {base}", f"set {base} world", f"get {base}", f"create +e {base}/eph",
              f"create +s {base}/seq-", f"ls {base}", f"delete {base}/eph", f"exists {base}/eph",
              f"get {base}/missing", "quit"]
    p = subprocess.Popen([CLI_MT, hosts], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    for c in script:
        p.stdin.write((c + "\n").encode())
        p.stdin.flush()
        time.sleep(0.3)
    out, _ = p.communicate(timeout=30)
    keep = []
    for line in out.decode(errors="replace").splitlines():
        line = line.strip()
        if not line or "ZOO_" in line or line.startswith(("Got a new session", "time =", "ctime", "mtime", "czxid", "mzxid")):
            continue
        keep.append(line)
    return sorted(keep)


def real_zookeeper():
    """Starts real ZooKeeper 3.8 (Debian's package) for the differential tests."""
    d = f"{ROOT}/realzk"
    subprocess.run([f"{REPO}/scripts/real-zk.sh", "start", str(REAL_ZK_PORT), d], check=True, timeout=120)
    return d


def real_zookeeper_ensemble():
    """A 3-server real ZooKeeper 3.8 ensemble: the reference for 3-node zraft (watch tables
    are per server, so checkWatches answers depend on where sessions are)."""
    d = f"{ROOT}/realzk3"
    subprocess.run([f"{REPO}/scripts/real-zk.sh", "ensemble", "3", str(REAL_ZK3_PORT), d], check=True, timeout=120)
    return d


def differential(reference, hosts, what):
    got = zkdiff.collect(hosts)
    d = zkdiff.diff(reference, got)
    for k, r, c in d:
        print(f"      DIFF {k}\n        zookeeper: {r}\n        zraft:     {c}")
    assert not d, f"{len(d)} of {len(reference)} scenarios differ from ZooKeeper 3.8 on {what}"
    n_events = sum(len(v) for k, v in got.items() if k.startswith("watch/"))
    print(f"      differential: {len(reference)} scenarios ({n_events} watch events, "
          f"{len(got['empty_path'])} empty-path opcodes, {len(got['check_remove'])} check/removeWatches cases) "
          f"identical to ZooKeeper 3.8 on {what}")


def main():
    global PKI
    PKI = make_pki(f"{ROOT}/pki")
    single = ensemble(1, 24181)
    trio = ensemble(3, 24281, tls=True)
    realzk = real_zookeeper()
    realzk3 = real_zookeeper_ensemble()
    reference = zkdiff.collect(f"127.0.0.1:{REAL_ZK_PORT}")
    try:
        @test
        def differential_single_node():
            differential(reference, single[0].hosts(), "1 node")

        @test
        def differential_three_nodes_follower_and_leader():
            follower = next(s for s in trio if mode(s.port) == "follower")
            differential(reference, follower.hosts(), "3 nodes through a follower")
            differential(reference, leader_of(trio).hosts(), "3 nodes through the leader")

        diff_seeds = difftest.seeds_arg(os.environ.get("ZRAFT_DIFF_SEEDS", "0..10"))
        diff_ops = int(os.environ.get("ZRAFT_DIFF_OPS", "300"))
        zk_hosts = f"127.0.0.1:{REAL_ZK_PORT}"

        def random_programs(candidate, what, reference=zk_hosts):
            found, n, cov = difftest.compare(reference, candidate, diff_seeds, diff_ops,
                                             log=lambda m: print("      " + m.replace("\n", "\n      ")))
            kinds = sorted({k[0] for k in cov if k[0] not in ("event", "reconnect")})
            events = sum(v for k, v in cov.items() if k[0] == "event")
            errors = sorted({k[1] for k in cov if k[0] not in ("event", "reconnect") and k[1] != "OK"})
            print(f"      difftest: {len(diff_seeds)} seeds x {diff_ops} ops = {n} requests on {what}: "
                  f"{len(found)} divergences; {len(kinds)} request kinds, {events} watch events, "
                  f"{cov[('reconnect', 'SET_WATCHES2')]} reconnects with setWatches2 and {cov[('reconnect', 'SET_WATCHES')]} "
                  f"with setWatches, errors seen: {' '.join(errors)}")
            assert len(kinds) >= 20, f"the programs exercised only {kinds}"
            assert not found, f"{len(found)} sessions diverged from ZooKeeper 3.8 on {what}"

        @test
        def difftest_random_programs_single_node():
            random_programs(single[0].hosts(), "1 node")

        @test
        def difftest_random_programs_three_nodes():
            zk3 = ",".join(f"127.0.0.1:{REAL_ZK3_PORT + i}" for i in range(3))
            random_programs(",".join(s.hosts() for s in trio), "3 nodes against a 3-server ZooKeeper "
                            "(sessions spread, reconnects move)", reference=zk3)

        @test
        def difftest_reports_a_deliberate_difference():
            # A proxy that loses one watch notification in front of zraft must be reported.
            proxy = difftest.DropFirstNotification(single[0].hosts())
            found, _, _ = difftest.compare(zk_hosts, proxy.addr, range(0, 1), diff_ops, log=lambda m: None)
            assert proxy.dropped == 1, "the program produced no notification to drop"
            assert found and any("event" in x[4] + x[5] for x in found), found
            print(f"      a dropped notification is reported: {found[0][1]} line {found[0][2]}: "
                  f"zookeeper {found[0][4]!r}, candidate {found[0][5]!r}")

        @test
        def read_only_mode_as_zookeeper():
            # Both ensembles with readonlymode.enabled; two members stop, the survivor serves
            # read-only sessions, then the members come back.
            zkro = f"{ROOT}/realzk-ro"
            # ZooKeeper 3.8.0 creates sessions in read-only mode only as local sessions: without
            # localSessionsEnabled it answers the handshake with a NotReadOnly reply header that
            # no client can parse (COMPATIBILITY.md).
            ro_env = dict(os.environ, ZK_JVM_FLAGS="-Dreadonlymode.enabled=true", ZK_CFG_EXTRA="localSessionsEnabled=true\nlocalSessionsUpgradingEnabled=true")
            subprocess.run([f"{REPO}/scripts/real-zk.sh", "ensemble", "3", "24111", zkro], check=True, timeout=120,
                           env=ro_env)

            class ZkEnsemble:
                survivor = "127.0.0.1:24111"

                def stop_others(self):
                    for i in (2, 3):
                        subprocess.run([f"{REPO}/scripts/real-zk.sh", "stop", f"{zkro}/s{i}"], timeout=60)

                def start_others(self):
                    for i in (2, 3):
                        subprocess.run([f"{REPO}/scripts/real-zk.sh", "resume", f"{zkro}/s{i}"], check=True, timeout=60,
                                       env=ro_env)

            ro_trio = ensemble(3, 24501, extra=["readonlymode.enabled=true"])

            class ZraftEnsemble:
                survivor = ro_trio[0].hosts()

                def stop_others(self):
                    for srv in ro_trio[1:]:
                        srv.kill9()

                def start_others(self):
                    for srv in ro_trio[1:]:
                        srv.start()

            try:
                want = readonly.observe(ZkEnsemble(), "/ro")
                got = readonly.observe(ZraftEnsemble(), "/ro")
            finally:
                subprocess.run([f"{REPO}/scripts/real-zk.sh", "stop", zkro], timeout=60)
                for srv in ro_trio:
                    srv.kill9()
            d = readonly.diff(want, got)
            for k, a, b in d:
                print(f"      DIFF {k}\n        zookeeper: {a}\n        zraft:     {b}")
            assert not d, f"{len(d)} of {len(want)} read-only observations differ from ZooKeeper 3.8"
            assert got["ro reattach earlier session"] == ("session", True), got
            for k, why in readonly.INTENDED.items():
                print(f"      intended difference {k}: zookeeper {want.get(k)}, zraft {got.get(k)} ({why})")
            print(f"      read-only mode: {len(want) - len(readonly.INTENDED)} observations identical to ZooKeeper 3.8 "
                  f"(isro {want['ro isro']!r}, Mode {want['ro srvr mode']!r}, writes {want['ro setData'][0]}, "
                  f"kazoo {want['kazoo client_state']}, then {want['back isro']!r})")

        @test
        def c_client_cli_mt_three_nodes_as_zookeeper():
            want = cli_mt(f"127.0.0.1:{REAL_ZK_PORT}", "/cmt")
            got = cli_mt(",".join(s.hosts() for s in trio), "/cmt")
            assert "world" in want and any("seq-0000000001" in x for x in want), want
            assert got == want, f"C client output differs\nzookeeper: {want}\nzraft:     {got}"
            print(f"      cli_mt: {len(got)} output lines identical to ZooKeeper 3.8's (create, set, get, ephemeral, sequential, ls with a watch event, delete, exists, NoNode)")

        @test
        def differential_reports_every_scenario():
            # The comparison is not vacuous: changing any one scenario's result is reported.
            for k in reference:
                changed = copy.deepcopy(reference)
                changed[k] = [changed[k], "changed"]
                assert [x[0] for x in zkdiff.diff(reference, changed)] == [k], k

        @test
        def kazoo_pipelining_three_nodes():
            pipelining([s.hosts() for s in trio] + [trio[1].hosts()], int(os.environ.get("ZRAFT_PIPELINE_ROUNDS", "1000")))

        @test
        def kazoo_pipelining_single_node():
            pipelining([single[0].hosts()] * 2, int(os.environ.get("ZRAFT_PIPELINE_ROUNDS", "1000")))

        for i, recipe in enumerate(recipes.ALL):
            def run_recipe(recipe=recipe, i=i):
                hosts = [s.hosts() for s in trio]
                try:
                    print("      " + recipe(hosts, f"/recipe{i}"))
                finally:
                    recipes.stop_all()
            run_recipe.__name__ = f"kazoo_recipe_{recipe.__name__}_three_nodes"
            test(run_recipe)

        @test
        def kazoo_single_node():
            zk = client(single[0].hosts())
            crud(zk, "/it1")
            zk.stop()

        @test
        def kazoo_three_nodes_through_every_node():
            for i, s in enumerate(trio):
                zk = client(s.hosts())
                crud(zk, f"/it3-{i}")
                zk.stop()
            # Every node serves the same data after sync.
            views = []
            for s in trio:
                zk = client(s.hosts())
                zk.sync("/")
                views.append(sorted(zk.get_children("/")))
                zk.stop()
            assert views[0] == views[1] == views[2], views

        @test
        def session_expiry_deletes_ephemerals_single():
            expiry(single[0].hosts(), single[0].hosts(), "/exp1")

        @test
        def session_expiry_deletes_ephemerals_three():
            expiry(trio[1].hosts(), trio[2].hosts(), "/exp3")

        @test
        def session_moves_to_another_node():
            zk = client(trio[0].hosts())
            zk.create("/moving", b"", ephemeral=True)
            sid, pw = zk._session_id, zk._session_passwd
            # Same session, other node (as a client whose server went away would do).
            zk2 = KazooClient(hosts=trio[2].hosts(), client_id=(sid, pw), timeout=10.0)
            zk2.start(timeout=15)
            assert zk2._session_id == sid
            zk2.sync("/")
            assert zk2.exists("/moving").ephemeralOwner == sid
            zk2.create("/moving2", b"", ephemeral=True)
            zk2.stop()
            zk3 = client(trio[1].hosts())
            zk3.sync("/")
            assert zk3.exists("/moving") is None and zk3.exists("/moving2") is None, "closing the session removes its ephemerals"
            zk3.stop()

        @test
        def durability_kill9_leader_then_follower_then_all():
            durability(trio)

        @test
        def bad_input_does_not_disturb_a_live_session():
            bad_input(single[0])
            bad_input(trio[0])

        @test
        def reconfig_by_kazoo_and_zkcli_three_to_five_and_back():
            reconfig_session(24701)

        @test
        def a_replica_with_a_damaged_log_rebuilds_from_the_others():
            repair_session(24801)

        @test
        def zkcli_single_node():
            zkcli(single[0].hosts(), "/cli1")

        @test
        def zkcli_three_nodes():
            zkcli(",".join(s.hosts() for s in trio), "/cli3")

        secure_hosts = ",".join(f"127.0.0.1:{s.secure_port}" for s in trio)

        @test
        def kazoo_tls_three_nodes():
            zk = KazooClient(hosts=secure_hosts, timeout=10.0, use_ssl=True, verify_certs=True, ca=PKI["ca.pem"],
                             certfile=PKI["client.crt"], keyfile=PKI["client.key"])
            zk.start(timeout=15)
            crud(zk, "/tls-kazoo")
            seen = threading.Event()
            zk.get_children("/", watch=lambda e: seen.set())
            plain = client(trio[2].hosts())
            plain.create("/tls-kazoo-2")
            assert seen.wait(10), "a watch over TLS fired"
            zk.sync("/")
            assert zk.exists("/tls-kazoo-2") is not None, "TLS and plaintext sessions share the tree"
            plain.stop()
            zk.stop()
            print(f"      kazoo use_ssl=True with a client certificate on {secure_hosts}: crud, watch, sync")

        @test
        def kazoo_tls_without_a_client_certificate_gets_no_session():
            zk = KazooClient(hosts=secure_hosts, timeout=4.0, use_ssl=True, verify_certs=True, ca=PKI["ca.pem"],
                             connection_retry={"max_tries": 1})
            try:
                zk.start(timeout=5)
                raise AssertionError("a client without a certificate got a session (ssl.clientAuth=need)")
            except AssertionError:
                raise
            except Exception:  # noqa: BLE001 - any failure to connect is the expected outcome
                pass
            finally:
                zk.stop()
                zk.close()
            assert four(trio[0].port, "ruok") == "imok"

        @test
        def zkcli_tls_three_nodes():
            # Debian's zkCli.sh puts only zookeeper.jar (and its manifest's jars) on the class path,
            # which lacks three of the Netty jars the TLS client socket needs: the same script,
            # with them added (a later -cp wins).
            netty = ":".join(f"/usr/share/java/netty-{j}.jar" for j in ("codec", "resolver", "transport-native-unix-common"))
            flags = (f"-cp /etc/zookeeper/conf:/usr/share/java/zookeeper.jar:{netty} "
                     "-Dzookeeper.clientCnxnSocket=org.apache.zookeeper.ClientCnxnSocketNetty "
                     "-Dzookeeper.client.secure=true "
                     f"-Dzookeeper.ssl.keyStore.location={PKI['client.pem']} -Dzookeeper.ssl.keyStore.type=PEM "
                     f"-Dzookeeper.ssl.trustStore.location={PKI['ca.pem']} -Dzookeeper.ssl.trustStore.type=PEM")
            zkcli(secure_hosts, "/cli-tls", flags)
            print("      zkCli.sh (Netty, client.secure=true, PEM stores) on the secure ports: create, ls, get, set, stat, delete")
    finally:
        for s in single + trio:
            s.kill9()
        subprocess.run([f"{REPO}/scripts/real-zk.sh", "stop", realzk], timeout=60)
        subprocess.run([f"{REPO}/scripts/real-zk.sh", "stop", realzk3], timeout=60)
    passed = sum(1 for _, ok in RESULTS if ok)
    failed = len(RESULTS) - passed
    print(f"integration: {passed} passed, {failed} failed", flush=True)
    shutil.rmtree(ROOT, ignore_errors=True)
    # A client thread a failed test left behind must not keep the process (and CI) waiting.
    os._exit(1 if failed else 0)


if __name__ == "__main__":
    main()
