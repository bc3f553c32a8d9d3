#!/usr/bin/env python3
"""zraft against real ZooKeeper 3.8, same machine, same disk, same load generator, one run.

Starts each server in turn (never two at once, so they do not compete for the 2 cores): real
ZooKeeper standalone and as a 3-node ensemble (Debian's package, forceSync=yes, heap -Xmx2g,
maxClientCnxns=0, admin.enableServer=false), then zraft as 1 and 3 nodes on 127.0.0.1.
Runs the same matrix of loads against each with `zraft bench` and prints a table with
throughput, p99, zraft/ZooKeeper ratios and each server's CPU per request (its processes'
user + system time over the measured window, divided by the requests measured); writes
reports/bench/<stamp>.csv, .svg and the table as .txt. The disk's raw fsync rate (4 KiB
appends, each fdatasync'ed) is measured in the data directory before and after, printed with
the table and kept in <stamp>-fsync.txt.

With --big N (e.g. 1000000), first a memory-and-restart comparison on one node of each:
N znodes of 100 bytes created (64 sessions, depth 16), the time that took, the server's
resident memory right after (and its peak and last value over the next 3 s: a snapshot being
written at that instant shows as a passing peak) and data directory, and, after kill -9, the
time from starting the server again to its first acknowledged write (and the node count it
came back with).

With --rounds N, the load matrix runs N times, each round starting every server afresh and
alternating which kind goes first (so neither always follows the other's disk writes): the
table then gives each server's median ops/s and p99 per cell, the median of the rounds' ratios
and their range, which separates a real difference from this machine's run-to-run noise
(±15-30% on a 2-core VM). Every round's figures go to the CSV (column `round`).

Usage: scripts/bench_vs_zk.py [--zraft target/release/zraft] [--secs 8] [--nodes 1,3]
       [--loads set,get,create-seq] [--depths 1,16] [--sessions 64] [--value-size 1024]
       [--big 1000000] [--only-big] [--servers zk,zraft] [--rounds 1]
"""
import argparse
import csv
import os
import shutil
import socket
import struct
import subprocess
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
from jute import CREATE, R, W, encode_op, four_letter  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JARS = ":".join(sorted(os.path.join("/usr/share/java", f) for f in os.listdir("/usr/share/java") if f.endswith(".jar"))) \
    if os.path.isdir("/usr/share/java") else ""


def ruok(port):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=1)
        s.sendall(b"ruok")
        ok = s.recv(4) == b"imok"
        s.close()
        return ok
    except OSError:
        return False


def mode(port):
    for line in four_letter(f"127.0.0.1:{port}", "srvr").splitlines():
        if line.startswith("Mode:"):
            return line.split(":", 1)[1].strip()
    return ""


def create_once(port, path, timeout=10.0):
    """One session, one create: True if it was acknowledged (every step within `timeout`)."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except OSError:
        return False
    try:
        def frame():
            n = struct.unpack("!i", recv_exactly(s, 4))[0]
            return recv_exactly(s, n)
        w = W().int(0).long(0).int(30000).long(0).buffer(b"\0" * 16).bool(False)
        s.sendall(struct.pack("!i", len(w.b)) + bytes(w.b))
        if len(frame()) < 20:
            return False
        body = encode_op(CREATE, {"path": path, "data": b"x", "acl": [(31, "world", "anyone")], "flags": 0})
        s.sendall(struct.pack("!iii", 8 + len(body), 1, CREATE) + body)
        while True:
            r = R(frame())
            xid, _zxid, err = r.int(), r.long(), r.int()
            if xid == 1:
                return err == 0
    except (OSError, struct.error, ConnectionError):
        return False
    finally:
        s.close()


def recv_exactly(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise ConnectionError("closed")
        b += c
    return b


class Cluster:
    """n servers of one kind on 127.0.0.1, client ports base..base+n-1."""

    def __init__(self, kind, n, base, root, zraft):
        self.kind, self.n, self.base, self.procs, self.cmds = kind, n, base, [], []
        self.dir = os.path.join(root, f"{kind}{n}")
        shutil.rmtree(self.dir, ignore_errors=True)
        servers = "".join(f"server.{i}=127.0.0.1:{base + 100 + i}:{base + 200 + i}\n" for i in range(1, n + 1)) if n > 1 else ""
        for i in range(1, n + 1):
            d = os.path.join(self.dir, f"n{i}")
            os.makedirs(d)
            if n > 1:
                open(os.path.join(d, "myid"), "w").write(f"{i}\n")
            cfg = (f"tickTime=2000\ninitLimit=10\nsyncLimit=5\ndataDir={d}\nclientPort={base + i - 1}\n"
                   f"clientPortAddress=127.0.0.1\nmaxClientCnxns=0\nadmin.enableServer=false\n"
                   f"4lw.commands.whitelist=*\nforceSync=yes\n{servers}")
            open(os.path.join(d, "zoo.cfg"), "w").write(cfg)
            log = open(os.path.join(d, "server.log"), "w")
            if kind == "zk":
                cmd = ["java", "-Xmx2g", "-Xms2g", f"-Dzookeeper.log.dir={d}", "-Dzookeeper.root.logger=WARN,CONSOLE",
                       "-cp", JARS, "org.apache.zookeeper.server.quorum.QuorumPeerMain", os.path.join(d, "zoo.cfg")]
            else:
                cmd = [zraft, "serve", "--config", os.path.join(d, "zoo.cfg")]
            self.cmds.append((cmd, log))
            self.procs.append(subprocess.Popen(cmd, stdout=log, stderr=log, env=dict(os.environ, ZRAFT_LOG="warn")))
        deadline = time.time() + 60
        while time.time() < deadline:
            modes = [mode(base + i) for i in range(n)]
            if all(modes) and (n == 1 or "leader" in modes):
                return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{kind} x{n} did not start; see {self.dir}")

    def hosts(self):
        return ",".join(f"127.0.0.1:{self.base + i}" for i in range(self.n))

    def rss_mb(self, i=0):
        """Resident memory of server i (MB)."""
        for line in open(f"/proc/{self.procs[i].pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def data_mb(self, i=0):
        """Bytes under server i's data directory (its log excluded), in MB."""
        d = os.path.join(self.dir, f"n{i + 1}")
        return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(d) for f in fs
                   if f != "server.log") / 1e6

    def crash_and_restart(self, i=0):
        """kill -9 server i, start it again; seconds until it acknowledges a write."""
        self.procs[i].kill()
        self.procs[i].wait()
        cmd, log = self.cmds[i]
        t0 = time.time()
        self.procs[i] = subprocess.Popen(cmd, stdout=log, stderr=log, env=dict(os.environ, ZRAFT_LOG="warn"))
        while time.time() - t0 < 300:
            if create_once(self.base + i, f"/restart-{int(t0 * 1000)}"):
                return time.time() - t0
            time.sleep(0.01)
        return float("inf")

    def node_count(self, i=0):
        for line in four_letter(f"127.0.0.1:{self.base + i}", "srvr").splitlines():
            if line.startswith("Node count:"):
                return int(line.split(":", 1)[1])
        return -1

    def stop(self):
        for p in self.procs:
            p.kill()
            p.wait()
        self.procs = []


def fsync_rate(directory, secs=3.0, size=4096):
    """The disk's raw rate of 4 KiB appends each made durable (pwrite + fdatasync), in the
    directory the servers keep their data in: the ceiling a server that syncs every write alone
    would hit, for context beside the table."""
    path = os.path.join(directory, "fsync-probe.bin")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        buf, off, n, t0 = b"x" * size, 0, 0, time.time()
        while time.time() - t0 < secs:
            os.pwrite(fd, buf, off)
            os.fdatasync(fd)
            off, n = off + size, n + 1
        return n / (time.time() - t0)
    finally:
        os.close(fd)
        os.remove(path)


def cpu_ticks(pids):
    """User plus system CPU the processes have used so far, in clock ticks (0 for any gone)."""
    total = 0
    for pid in pids:
        try:
            # The command name (field 2) may hold spaces: fields are counted after its ')'.
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total


def bench(zraft, hosts, load, depth, a, secs, warmup, label, csv_path, server_pids=()):
    """One `zraft bench` run; its CSV row, with the CPU the servers (all of the cluster's
    processes) and the load generator used per measured request, sampled over the measured
    window: the servers share the machine's cores with the generator and the kernel's loopback
    TCP, so throughput alone does not say how much of the machine a server needed."""
    cmd = [zraft, "bench", "--hosts", hosts, "--load", load, "--depth", str(depth), "--sessions", str(a.sessions),
           "--value-size", str(a.value_size), "--secs", str(secs), "--warmup", str(warmup),
           "--root", f"/b-{label.replace(' ', '-')}-{load}-{depth}", "--csv", csv_path, "--label", label]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    samples = []
    try:
        # The generator measures what is sent after `warmup` and answered before `warmup + secs`
        # from its start (connecting takes milliseconds): sample the CPU at those instants.
        t0 = time.time()
        for at in (warmup, warmup + secs):
            time.sleep(max(0.0, t0 + at - time.time()))
            samples.append((cpu_ticks(server_pids), cpu_ticks([proc.pid])))
        stdout, stderr = proc.communicate(timeout=300)
    except BaseException:
        proc.kill()
        raise
    if proc.returncode != 0:
        raise RuntimeError(f"bench failed: {' '.join(cmd)}\n{stderr}")
    print("   ", stdout.strip(), flush=True)
    with open(csv_path) as f:
        row = list(csv.DictReader(f))[-1]
    ops = float(row.get("ops") or 0)
    us_per_tick = 1e6 / os.sysconf("SC_CLK_TCK")
    for i, key in enumerate(["server_cpu_us_per_op", "generator_cpu_us_per_op"]):
        used = samples[1][i] - samples[0][i]
        row[key] = f"{used * us_per_tick / ops:.1f}" if ops else ""
    return row


def svg(rows, path, rounds=1):
    """A grouped bar chart of ops/s: one group per (nodes, load, depth), ZooKeeper and zraft
    (medians, when there were several rounds)."""
    groups = sorted({(r["nodes"], r["load"], r["depth"]) for r in rows})
    w, h, bw = 120 * len(groups) + 80, 360, 40
    top = max(float(r["ops_per_s"]) for r in rows) or 1
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">',
             f'<text x="10" y="16" font-size="13">ops/s, ZooKeeper 3.8 (grey) vs zraft (blue), same machine and run'
             + (f', medians of {rounds} rounds' if rounds > 1 else '') + '</text>']
    for gi, g in enumerate(groups):
        x0 = 60 + gi * 120
        for ki, kind in enumerate(["zk", "zraft"]):
            r = next((r for r in rows if (r["nodes"], r["load"], r["depth"]) == g and r["server"] == kind), None)
            if not r:
                continue
            v = float(r["ops_per_s"])
            bh = int((h - 90) * v / top)
            x = x0 + ki * (bw + 4)
            color = "#999" if kind == "zk" else "#2a6fdb"
            parts.append(f'<rect x="{x}" y="{h - 50 - bh}" width="{bw}" height="{bh}" fill="{color}"/>')
            parts.append(f'<text x="{x}" y="{h - 54 - bh}">{v / 1000:.1f}k</text>')
        parts.append(f'<text x="{x0}" y="{h - 34}">{g[0]} node(s)</text>')
        parts.append(f'<text x="{x0}" y="{h - 20}">{g[1]} d={g[2]}</text>')
    parts.append("</svg>")
    open(path, "w").write("\n".join(parts))


def median_row(rows, cell, kind):
    """One server's figures for a cell over the rounds: the median ops/s and the median p99."""
    rs = [r for r in rows if (r["nodes"], r["load"], r["depth"]) == cell and r["server"] == kind]
    if not rs:
        return None
    cpu = [float(r["server_cpu_us_per_op"]) for r in rs if r.get("server_cpu_us_per_op")]
    return dict(rs[0], ops_per_s=statistics.median(float(r["ops_per_s"]) for r in rs),
                p99_ms=statistics.median(float(r["p99_ms"]) for r in rs),
                cpu=statistics.median(cpu) if cpu else 0.0)


def round_ratios(rows, cell):
    """zraft's ops/s over ZooKeeper's, round by round (servers measured minutes apart)."""
    out = []
    for rnd in sorted({r["round"] for r in rows}):
        by = {r["server"]: float(r["ops_per_s"]) for r in rows
              if (r["nodes"], r["load"], r["depth"]) == cell and r["round"] == rnd}
        if by.get("zk") and "zraft" in by:
            out.append(by["zraft"] / by["zk"])
    return out


def main():
    sys.stdout.reconfigure(line_buffering=True)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--zraft", default=os.path.join(REPO, "target/release/zraft"))
    p.add_argument("--secs", type=float, default=8.0)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--zk-warmup", type=float, default=10.0, help="seconds of load on ZooKeeper before measuring (JIT)")
    p.add_argument("--nodes", default="1,3")
    p.add_argument("--loads", default="set,get,create-seq")
    p.add_argument("--depths", default="1,16")
    p.add_argument("--sessions", type=int, default=64)
    p.add_argument("--value-size", type=int, default=1024)
    p.add_argument("--dir", default=None, help="where the servers keep their data (default: a temp dir under target/)")
    p.add_argument("--big", type=int, default=0, help="znodes of 100 bytes for the memory-and-restart comparison (0: skip)")
    p.add_argument("--only-big", action="store_true", help="only the memory-and-restart comparison")
    p.add_argument("--servers", default="zk,zraft", help="which servers to run (zraft alone: figures without ratios, for iterating)")
    p.add_argument("--rounds", type=int, default=1, help="times to run the load matrix (medians and ranges of ratios)")
    a = p.parse_args()
    if a.rounds < 1:
        p.error("--rounds must be at least 1")
    # Found missing up front, not as a server that "did not start" with an empty log.
    if "zk" in a.servers.split(",") and ("zookeeper-3" not in JARS or not shutil.which("java")):
        p.error("ZooKeeper 3.8 is not installed: Debian's package `zookeeper` (apt-get install zookeeper; "
                "./test.sh installs it), or --servers zraft for zraft's figures alone")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    os.makedirs(os.path.join(REPO, "reports/bench"), exist_ok=True)
    csv_path = os.path.join(REPO, f"reports/bench/{stamp}.csv")
    raw_csv = csv_path + ".raw"
    root = a.dir or tempfile.mkdtemp(prefix="bench-", dir=os.path.join(REPO, "target"))
    rows = []
    big = {}
    servers = a.servers.split(",")
    os.makedirs(root, exist_ok=True)
    fsyncs = [fsync_rate(root)]
    print(f"raw fsync rate here: {fsyncs[0]:.0f} per s (4 KiB pwrite + fdatasync, appending, 3 s)", flush=True)
    for kind in servers if a.big > 0 else []:
        print(f"== {kind} x1: {a.big} znodes of 100 bytes", flush=True)
        c = Cluster(kind, 1, 29000, root, a.zraft)
        try:
            out = subprocess.run([a.zraft, "bench", "--hosts", c.hosts(), "--load", "create", "--depth", "16",
                                  "--sessions", str(a.sessions), "--value-size", "100", "--count", str(a.big),
                                  "--keys", "1", "--root", "/big"], capture_output=True, text=True, timeout=7200)
            if out.returncode != 0:
                raise RuntimeError(f"loading failed: {out.stderr}")
            print("   ", out.stdout.strip(), flush=True)
            secs = float(out.stdout.split(" ops in ")[1].split("s,")[0])
            # Resident memory right after the load, and over the next 3 s: a snapshot being
            # written at that instant (zraft's copy-on-write chunks, ZooKeeper's serializer)
            # shows as a peak that is gone a second later.
            samples = [c.rss_mb()]
            for _ in range(12):
                time.sleep(0.25)
                samples.append(c.rss_mb())
            b = dict(load_s=secs, rss_mb=samples[0], rss_peak_mb=max(samples), rss_settled_mb=samples[-1],
                     data_mb=c.data_mb())
            b["restart_s"] = c.crash_and_restart()
            b["nodes_after"] = c.node_count()
            b["rss_after_mb"] = c.rss_mb()
            big[kind] = b
            print(f"    load {secs:.1f} s, RSS {b['rss_mb']:.0f} MB, data {b['data_mb']:.0f} MB, "
                  f"restart to a write {b['restart_s']:.2f} s ({b['nodes_after']} nodes, RSS {b['rss_after_mb']:.0f} MB)",
                  flush=True)
        finally:
            c.stop()
    for rnd in range(1, a.rounds + 1) if not a.only_big else []:
        # Every other round the other kind goes first: the second server of a round starts on
        # a disk still writing back the first one's data.
        order = servers if rnd % 2 else servers[::-1]
        for n in [int(x) for x in a.nodes.split(",")]:
            for kind in order:
                print(f"== {kind} x{n}" + (f" (round {rnd} of {a.rounds})" if a.rounds > 1 else ""), flush=True)
                c = Cluster(kind, n, 25000 + 1000 * n, root, a.zraft)
                try:
                    if kind == "zk" and a.zk_warmup > 0:
                        bench(a.zraft, c.hosts(), "set", 16, a, a.zk_warmup, 0, "warmup", raw_csv)
                    for load in a.loads.split(","):
                        for depth in [int(d) for d in a.depths.split(",")]:
                            r = bench(a.zraft, c.hosts(), load, depth, a, a.secs, a.warmup, f"{kind}{n}", raw_csv,
                                      [pr.pid for pr in c.procs])
                            rows.append(dict(r, server=kind, nodes=str(n), load=load, depth=str(depth), round=str(rnd)))
                finally:
                    c.stop()
    fsyncs.append(fsync_rate(root))
    shutil.rmtree(root, ignore_errors=True)
    fsync_line = f"raw fsync rate: {fsyncs[0]:.0f} per s before the runs, {fsyncs[1]:.0f} after (4 KiB pwrite + fdatasync)"
    with open(csv_path.replace(".csv", "-fsync.txt"), "w") as f:
        f.write(fsync_line + "\n")
    if big:
        print(f"\n{a.big} znodes of 100 bytes, 1 node | {'ZooKeeper':>10} | {'zraft':>10} | ratio")
        for k, what in [("load_s", "load s"), ("rss_mb", "RSS MB"), ("rss_peak_mb", "RSS peak in the 3 s after MB"),
                        ("rss_settled_mb", "RSS 3 s after the load MB"), ("data_mb", "data dir MB"),
                        ("restart_s", "restart to a write s"), ("rss_after_mb", "RSS after restart MB")]:
            z, r = big.get("zk", {}).get(k, 0), big.get("zraft", {}).get(k, 0)
            print(f"{what:>33} | {z:>10.2f} | {r:>10.2f} | {r / z if z else 0:.2f}")
        with open(csv_path.replace(".csv", "-big.csv"), "w", newline="") as f:
            wr = csv.writer(f)
            wr.writerow(["server", "znodes", "load_s", "rss_mb", "data_mb", "restart_s", "nodes_after", "rss_after_mb",
                         "rss_peak_mb", "rss_settled_mb"])
            for k, b in big.items():
                wr.writerow([k, a.big, f"{b['load_s']:.2f}", f"{b['rss_mb']:.0f}", f"{b['data_mb']:.0f}",
                             f"{b['restart_s']:.3f}", b["nodes_after"], f"{b['rss_after_mb']:.0f}",
                             f"{b['rss_peak_mb']:.0f}", f"{b['rss_settled_mb']:.0f}"])
    if not rows:
        print(f"\n{fsync_line}")
        return 0
    with open(csv_path, "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=["round", "server", "nodes", "load", "depth", "sessions", "value_size", "ops_per_s", "ops",
                                           "errors", "p50_ms", "p99_ms", "p999_ms", "max_ms", "server_cpu_us_per_op",
                                           "generator_cpu_us_per_op"], extrasaction="ignore")
        wr.writeheader()
        wr.writerows(rows)
    os.remove(raw_csv)
    cells = sorted({(r["nodes"], r["load"], r["depth"]) for r in rows})
    med = [median_row(rows, cell, kind) for cell in cells for kind in ("zk", "zraft")]
    svg([m for m in med if m], csv_path.replace(".csv", ".svg"), a.rounds)
    table = []
    if a.rounds > 1:
        table.append(f"medians of {a.rounds} rounds; 'range' is the lowest and highest of the rounds' ratios")
    table.append(f"{'nodes':>5} {'load':>10} {'depth':>5} | {'ZK ops/s':>9} {'p99 ms':>7} | {'zraft ops/s':>11} {'p99 ms':>7} | "
                 f"{'ratio':>5} {'p99 ratio':>9}" + (f" | {'range':>11}" if a.rounds > 1 else "")
                 + f" | {'ZK cpu':>6} {'zraft cpu':>9} {'cpu ratio':>9}")
    for n, load, depth in cells:
        z = median_row(rows, (n, load, depth), "zk") or {"ops_per_s": 0, "p99_ms": 0, "cpu": 0.0}
        r = median_row(rows, (n, load, depth), "zraft") or {"ops_per_s": 0, "p99_ms": 0, "cpu": 0.0}
        zo, ro = float(z["ops_per_s"]), float(r["ops_per_s"])
        zp, rp = float(z["p99_ms"]), float(r["p99_ms"])
        ratios = round_ratios(rows, (n, load, depth))
        ratio = statistics.median(ratios) if ratios else 0
        line = (f"{n:>5} {load:>10} {depth:>5} | {zo:>9.0f} {zp:>7.2f} | {ro:>11.0f} {rp:>7.2f} | "
                f"{ratio:>5.2f} {rp / zp if zp else 0:>9.2f}")
        if a.rounds > 1:
            line += f" | {min(ratios, default=0):>5.2f}-{max(ratios, default=0):<5.2f}"
        line += f" | {z['cpu']:>6.1f} {r['cpu']:>9.1f} {z['cpu'] / r['cpu'] if r['cpu'] else 0:>9.2f}"
        table.append(line)
    table.append("")
    table.append("cpu: microseconds of CPU (user + system) the server's processes (all nodes together) used per")
    table.append("measured request, medians; cpu ratio: ZooKeeper's over zraft's. The load generator and the")
    table.append("kernel's loopback TCP share the same cores (the generator's CPU per request is in the csv).")
    table.append(fsync_line)
    # The table as printed, beside the csv it summarises (the closing notes quote it).
    with open(csv_path.replace(".csv", ".txt"), "w") as f:
        f.write("\n".join(table) + "\n")
    print()
    print("\n".join(table[:-1]))
    print(f"\n{fsync_line}\ncsv: {csv_path}\nplot: {csv_path.replace('.csv', '.svg')}")


if __name__ == "__main__":
    sys.exit(main())
