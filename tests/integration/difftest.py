#!/usr/bin/env python3
"""Seeded differential tester: the same random client program against real ZooKeeper 3.8 and
zraft, compared on everything a client observes.

A program (drawn from a seed, independent of any server) is a list of steps over several
sessions: pipelined batches of requests drawn from every 3.8 opcode (creates of every mode
with container and TTL, deletes, setData, ACLs with digest auth, reads, multi and multiRead
with failing ops, every watch kind incl. the same watch twice, persistent and recursive ones,
checkWatches/removeWatches, getEphemerals, getAllChildrenNumber, sync), bad paths and wrong
versions, auth, reconnects to another server with setWatches2, session closes.

Each session records what arrives on its connections in order: replies and watch
notifications. Results are normalized so two servers compare with ==: zxids become the
position among the program's writes ("W3" is the zxid of the fourth write, "W3+" a zxid after
it and before the next), times are dropped, session ids become session names, child lists and
getEphemerals answers are sorted (ZooKeeper returns them from hash sets).

Each batch starts with sync("/") on its session, so that on several servers a session has
seen every earlier write (and its notifications) before its next requests: the program's
results are then the same on 1 and 3 servers. On several servers the header zxids of sync and
read replies are not compared, nor where notifications fall among replies (a ZooKeeper
follower may answer a sync before it applies a write acknowledged elsewhere).

Usage:
  difftest.py run HOSTS[;HOSTS2] --seeds A..B [--ops N]     one target, print normalized results
  difftest.py compare REF_HOSTS CAND_HOSTS --seeds A..B      both, list divergences
HOSTS is a comma-separated list of host:port.
"""
import argparse
import hashlib
import base64
import random
import socket
import struct
import sys
import threading
import time
from collections import Counter

import jute as J

OPEN = [(31, "world", "anyone")]
READ_ONLY = [(1, "world", "anyone")]
CREATOR = [(31, "auth", "")]
USERS = {"alice": "pw-a", "bob": "pw-b"}


def digest_id(user, pw):
    return f"{user}:" + base64.b64encode(hashlib.sha1(f"{user}:{pw}".encode()).digest()).decode()


WRITES = {J.CREATE, J.CREATE2, J.CREATE_CONTAINER, J.CREATE_TTL, J.DELETE, J.SET_DATA, J.SET_ACL, J.MULTI}
NAMES = {v: k for k, v in vars(J).items() if isinstance(v, int) and k.isupper() and k != "ERRORS"}


class Program:
    """A random client program drawn from a seed."""

    def __init__(self, seed, ops, base, sessions=3):
        self.rng = random.Random(seed)
        self.base = base
        self.sessions = sessions
        self.steps = [("batch", 0, [(J.SYNC, {"path": "/"}), (J.CREATE, self._create_args(self.base, 0, OPEN))])]
        n = 0
        while n < ops:
            step = self._step()
            self.steps.append(step)
            n += len(step[2]) if step[0] == "batch" else 1

    # --- drawing ---
    def _path(self):
        r, b = self.rng.random(), self.base
        if r < 0.04:
            return self.rng.choice(["", "relative", b + "/", b + "//a", b + "/./a", b + "/a/../b"])
        if r < 0.12:
            return f"{b}/{self.rng.choice('ab')}/s-{self.rng.randrange(4):010d}"
        return self.rng.choice([b, b + "/a", b + "/b", b + "/a/x", b + "/b/x", b + "/a/x/y", b + "/c", b + "/c/k"])

    def _data(self):
        r = self.rng.random()
        if r < 0.05:
            return None
        return bytes(self.rng.randrange(256) for _ in range(self.rng.randrange(9)))

    def _acl(self):
        r = self.rng.random()
        if r < 0.7:
            return OPEN
        if r < 0.78:
            return READ_ONLY
        if r < 0.86:
            return CREATOR
        if r < 0.93:
            u = self.rng.choice(sorted(USERS))
            return [(self.rng.choice([31, 1 | 2 | 8, 1, 4 | 8 | 16]), "digest", digest_id(u, USERS[u]))] + \
                (READ_ONLY if self.rng.random() < 0.5 else [])
        return self.rng.choice([[], [(31, "nosuch", "x")], [(0, "world", "anyone")], [(31, "ip", "127.0.0.1")]])

    def _version(self):
        return -1 if self.rng.random() < 0.6 else self.rng.randrange(3)

    def _create_args(self, path, flags, acl):
        return {"path": path, "data": b"", "acl": acl, "flags": flags}

    def _create(self):
        op = self.rng.choices([J.CREATE, J.CREATE2, J.CREATE_CONTAINER, J.CREATE_TTL], [5, 3, 1, 1])[0]
        if op == J.CREATE_CONTAINER:
            # Not an ephemeral flag: ZooKeeper then takes the pending container for an
            # ephemeral until it is applied (COMPATIBILITY.md).
            flags = 4 if self.rng.random() < 0.85 else self.rng.choice([0, 2])
        elif op == J.CREATE_TTL:
            flags = self.rng.choice([5, 6]) if self.rng.random() < 0.85 else self.rng.choice([0, 1, 4])
        else:
            flags = self.rng.choices([0, 1, 2, 3, 4, 5], [6, 3, 2, 2, 1, 1])[0]
        path = self._path()
        if flags in (2, 3, 6) and (self.rng.random() < 0.8 or path == self.base):
            # Not the base itself: a name under the root would count the root's other children.
            path = f"{self.base}/{self.rng.choice('ab')}/s-"
        a = {"path": path, "data": self._data(), "acl": self._acl(), "flags": flags}
        if op == J.CREATE_TTL:
            a["ttl"] = self.rng.choice([3_600_000, 3_600_000, 0, -5])
            if flags not in (5, 6) and a["ttl"] < 0:
                # Stops ZooKeeper 3.8.0 for good (COMPATIBILITY.md); zraft: BadArguments.
                a["ttl"] = 0
        return op, a

    def _multi(self):
        ops = []
        for _ in range(self.rng.randrange(1, 5)):
            k = self.rng.choice(["create", "create2", "delete", "setData", "check"])
            p = self._path()
            if k in ("create", "create2"):
                flags = self.rng.choices([0, 1, 2], [5, 2, 1])[0]
                if flags == 2 and p == self.base:
                    p = self.base + "/b"
                ops.append((J.CREATE if k == "create" else J.CREATE2,
                            {"path": p, "data": self._data(), "acl": OPEN, "flags": flags}))
            elif k == "delete":
                ops.append((J.DELETE, {"path": p, "version": self._version()}))
            elif k == "setData":
                ops.append((J.SET_DATA, {"path": p, "data": self._data(), "version": self._version()}))
            else:
                ops.append((J.CHECK, {"path": p, "version": self._version()}))
        return J.MULTI, {"ops": ops}

    def _op(self):
        rng = self.rng
        k = rng.choices(
            ["create", "delete", "setData", "exists", "getData", "getChildren", "getChildren2", "getACL",
             "setACL", "sync", "multi", "multiRead", "checkWatches", "removeWatches", "addWatch",
             "getEphemerals", "getAllChildrenNumber", "reconfig"],
            [14, 7, 9, 6, 7, 5, 3, 2, 2, 1, 5, 2, 2, 2, 3, 1, 1, 0.3])[0]
        p = self._path()
        if p == "" and k not in ("create", "delete", "setData", "setACL", "multi"):
            p = "relative"  # reads of "" answer the root, which other runs change (zkdiff covers it)
        if k == "create":
            return self._create()
        if k == "delete":
            return J.DELETE, {"path": p, "version": self._version()}
        if k == "setData":
            return J.SET_DATA, {"path": p, "data": self._data(), "version": self._version()}
        if k in ("exists", "getData", "getChildren", "getChildren2"):
            op = {"exists": J.EXISTS, "getData": J.GET_DATA, "getChildren": J.GET_CHILDREN,
                  "getChildren2": J.GET_CHILDREN2}[k]
            return op, {"path": p, "watch": rng.random() < 0.5}
        if k == "getACL":
            return J.GET_ACL, {"path": p}
        if k == "setACL":
            return J.SET_ACL, {"path": p, "acl": self._acl(), "version": self._version()}
        if k == "sync":
            return J.SYNC, {"path": p}
        if k == "multi":
            return self._multi()
        if k == "multiRead":
            return J.MULTI_READ, {"ops": [(rng.choice([J.GET_DATA, J.GET_CHILDREN]), {"path": self._path() or "/x", "watch": False})
                                          for _ in range(rng.randrange(1, 4))]}
        if k == "checkWatches":
            return J.CHECK_WATCHES, {"path": p, "type": rng.choice([1, 2, 3])}
        if k == "removeWatches":
            return J.REMOVE_WATCHES, {"path": p, "type": rng.choice([1, 2, 3, 3])}
        if k == "addWatch":
            return J.ADD_WATCH, {"path": p, "type": rng.choice([0, 1])}
        if k == "reconfig":
            # Incremental or not, always disabled (reconfigEnabled is false by default).
            return J.RECONFIG, rng.choice([{"joining": "server.9=127.0.0.1:2999:3999", "config_id": -1},
                                           {"leaving": "1", "config_id": -1},
                                           {"members": "server.1=127.0.0.1:2888:3888", "config_id": 5}])
        if k == "getEphemerals":
            return J.GET_EPHEMERALS, {"path": rng.choice([self.base, self.base + "/a", "/"])}
        return J.GET_ALL_CHILDREN_NUMBER, {"path": p}

    def _step(self):
        rng = self.rng
        s = rng.randrange(self.sessions)
        r = rng.random()
        if r < 0.03:
            return ("reconnect", s, "old" if rng.random() < 0.3 else "new")
        if r < 0.05:
            return ("auth", s, rng.choice(sorted(USERS)))
        if r < 0.065:
            return ("close", s, None)
        ops = [(J.SYNC, {"path": "/"})] + [self._op() for _ in range(rng.randrange(1, 7))]
        # setACL ends its batch: ZooKeeper 3.8.0 checks requests prepared while a setACL is
        # pending against the old ACL (its change record keeps it), so what follows a setACL in
        # a pipeline depends on timing there (COMPATIBILITY.md).
        for i, (op, _) in enumerate(ops):
            if op == J.SET_ACL:
                return ("batch", s, ops[:i + 1])
        return ("batch", s, ops)


class Session:
    """A session of the program on one target: its connections and its observations."""

    def __init__(self, name, servers, first):
        self.name, self.servers, self.gen = name, servers, 0
        self.at = first
        self.conn = None
        self.lines = []
        self.sent = {}
        self.watched = {"data": set(), "exist": set(), "child": set(), "persistent": set(), "recursive": set()}

    def label(self):
        return f"{self.name}.{self.gen}"


class Runner:
    """Runs a program against one target and returns its normalized observations."""

    def __init__(self, servers, base):
        self.servers, self.base = servers, base
        self.session_names = {}
        self.write_zxids = []
        self.raw = []  # (session label, step, op, args, zxid, err, decoded) and events
        self.coverage = Counter()

    def _open(self, s):
        s.gen += 1
        s.conn = J.Conn(self.servers[s.at % len(self.servers)])
        self.session_names[s.conn.session_id] = s.label()
        s.watched = {k: set() for k in s.watched}

    def _collect(self, s, step_no, until_replies):
        c = s.conn
        ok = c.wait(lambda st: sum(1 for x in st if x[0] == "reply") >= until_replies or
                    (st and st[-1][0] == "closed"), timeout=15)
        if not ok:
            raise TimeoutError(f"step {step_no}: {s.label()} got no reply in 15 s")

    def _drain(self, s):
        """Moves what arrived on the session's connection into the raw log."""
        with s.conn.lock:
            items, s.conn.stream[:] = list(s.conn.stream), []
        for it in items:
            if it[0] == "reply":
                _, xid, zxid, err, body = it
                step_no, op, args = s.sent.pop(xid)
                try:
                    val = J.decode_reply(op, err, body)
                except Exception as e:  # noqa: BLE001 - an undecodable reply is an observation
                    val = f"undecodable: {type(e).__name__}"
                self.raw.append(("reply", s.label(), step_no, op, args, zxid, err, val))
                if op in WRITES:
                    self.write_zxids.append(zxid)
                self.coverage[(NAMES.get(op, op), J.ERRORS.get(err, err))] += 1
            elif it[0] == "event":
                self.raw.append(("event", s.label(), it[1], it[2], it[3]))
                self.coverage[("event", it[1])] += 1
            else:
                self.raw.append(("closed", s.label()))

    def run(self, program):
        sessions = [Session(f"S{i}", self.servers, i) for i in range(program.sessions)]
        for s in sessions:
            self._open(s)
        for step_no, (kind, si, arg) in enumerate(program.steps):
            s = sessions[si]
            if s.conn.closed:
                self._drain(s)
                self._open(s)
            if kind == "batch":
                base = s.conn.replies()
                for op, args in arg:
                    try:
                        xid = s.conn.send(op, args)
                    except OSError:
                        break  # the server closed the connection: recorded as "closed"
                    s.sent[xid] = (step_no, op, args)
                    self._track_watch(s, op, args)
                self._collect(s, step_no, base + len(arg))
                self._drain(s)
            elif kind == "auth":
                base = s.conn.replies()
                s.conn.send(J.AUTH, {"scheme": "digest", "auth": f"{arg}:{USERS[arg]}".encode()}, xid=-4)
                s.sent[-4] = (step_no, J.AUTH, {"user": arg})
                self._collect(s, step_no, base + 1)
                self._drain(s)
            elif kind == "close":
                base = s.conn.replies()
                xid = s.conn.send(J.CLOSE)
                s.sent[xid] = (step_no, J.CLOSE, {})
                self._collect(s, step_no, base + 1)
                s.conn.wait(lambda st: st and st[-1][0] == "closed", timeout=5)
                self._drain(s)
            elif kind == "reconnect":
                # A sync first: the old connection has had every notification of earlier
                # writes, whichever server it is on (else the count before and after the move
                # would depend on how far that server lags).
                base = s.conn.replies()
                xid = s.conn.send(J.SYNC, {"path": "/"})
                s.sent[xid] = (step_no, J.SYNC, {"path": "/"})
                self._collect(s, step_no, base + 1)
                self._drain(s)
                sid, pw, zxid, old = s.conn.session_id, s.conn.passwd, s.conn.last_zxid, s.conn
                old.close()
                s.at += 1
                try:
                    s.conn = self._reattach(s, sid, pw, zxid)
                except ConnectionError as e:
                    self.raw.append(("reconnect-failed", s.label(), step_no, str(e)))
                    self._open(s)
                    continue
                self.raw.append(("reconnected", s.label(), step_no))
                w = {k: sorted(v) for k, v in s.watched.items()}
                base = s.conn.replies()
                # Clients older than 3.6 (and kazoo) send setWatches without the persistent kinds.
                op = J.SET_WATCHES if arg == "old" else J.SET_WATCHES2
                s.conn.send(op, {"zxid": zxid, **w}, xid=-8)
                s.sent[-8] = (step_no, op, w)
                self._collect(s, step_no, base + 1)
                self._drain(s)
                self.coverage[("reconnect", NAMES.get(op, op))] += 1
        # Every session syncs last, so notifications of the last writes are in.
        for s in sessions:
            if not s.conn.closed:
                base = s.conn.replies()
                xid = s.conn.send(J.SYNC, {"path": "/"})
                s.sent[xid] = (len(program.steps), J.SYNC, {"path": "/"})
                self._collect(s, len(program.steps), base + 1)
            self._drain(s)
        # Then closes its sessions: left to expire, they would close later, in the middle of
        # another run, and move the zxids that run's reads report.
        for s in sessions:
            if not s.conn.closed:
                xid = s.conn.send(J.CLOSE)
                s.sent[xid] = (len(program.steps), J.CLOSE, {})
                s.conn.wait(lambda st: st and st[-1][0] == "closed", timeout=10)
            s.conn.close()
        return self.normalized()

    def _reattach(self, s, sid, pw, zxid):
        """The session on its next server. A server behind the session's last zxid refuses
        it (both ZooKeeper and zraft); as a client library does, try again until it caught up."""
        for attempt in range(50):
            try:
                return J.Conn(self.servers[s.at % len(self.servers)], session_id=sid, passwd=pw, last_zxid=zxid)
            except ConnectionError as e:
                if str(e) != "handshake refused" or attempt == 49:
                    raise
                time.sleep(0.1)

    def _track_watch(self, s, op, a):
        """The watches a client library would remember for setWatches (it keeps them even when
        the server may have dropped one: the server decides on re-registration); only valid
        paths, as a client library would not have registered others."""
        if not a.get("path", "").startswith("/"):
            return
        if op == J.GET_DATA and a.get("watch"):
            s.watched["data"].add(a["path"])
        elif op == J.EXISTS and a.get("watch"):
            s.watched["exist"].add(a["path"])
        elif op in (J.GET_CHILDREN, J.GET_CHILDREN2) and a.get("watch"):
            s.watched["child"].add(a["path"])
        elif op == J.ADD_WATCH:
            s.watched["persistent" if a["type"] == 0 else "recursive"].add(a["path"])

    # --- normalization ---
    def _z(self, z, anchors):
        if z in anchors:
            return f"W{anchors[z]}"
        k = -1
        for w, i in anchors.items():
            if w < z:
                k = max(k, i)
        return f"W{k}+" if z > 0 else str(z)

    def _stat(self, st, anchors):
        return (f"stat(c={self._z(st['czxid'], anchors)} m={self._z(st['mzxid'], anchors)} "
                f"p={self._z(st['pzxid'], anchors)} v={st['version']} cv={st['cversion']} av={st['aversion']} "
                f"owner={self.session_names.get(st['ephemeralOwner'], st['ephemeralOwner'])} "
                f"len={st['dataLength']} n={st['numChildren']})")

    def _val(self, v, anchors):
        """Stats normalized, string lists (children, ephemerals) sorted, the rest as is."""
        if v is None:
            return ""
        if isinstance(v, dict):
            return self._stat(v, anchors)
        if isinstance(v, list) and all(isinstance(x, str) for x in v):
            return repr(sorted(v))
        if isinstance(v, (list, tuple)):
            return "(" + ", ".join(self._val(x, anchors) for x in v) + ")"
        if isinstance(v, str):
            return repr(v.replace(self.base, "/B"))
        return repr(v)

    def normalized(self):
        zs = sorted(set(z for z in self.write_zxids if z > 0))
        anchors = {z: i for i, z in enumerate(zs)}
        out = {}
        for r in self.raw:
            if r[0] == "reply":
                _, label, step, op, args, zxid, err, val = r
                shown = {k: v for k, v in args.items() if k in ("path", "flags", "version", "type", "watch")}
                z = self._z(zxid, anchors)
                if op not in WRITES and len(self.servers) > 1:
                    # On a ZooKeeper follower the zxid a sync or read reply carries may trail a
                    # write another server acknowledged before the sync (it is the follower's
                    # last applied zxid when its worker answers); what the reply holds is
                    # compared all the same, and so are the zxids of writes.
                    z = "~"
                line = (f"step {step} {NAMES.get(op, op)} {shown} -> {J.ERRORS.get(err, err)} "
                        f"zxid={z} {self._val(val, anchors)}").replace(self.base, "/B")
            elif r[0] == "event":
                line = f"event type={r[2]} state={r[3]} path={r[4]}".replace(self.base, "/B")
            else:
                line = " ".join(str(x) for x in r[:1] + r[2:])
            out.setdefault(r[1], []).append(line)
        out = {k: _sort_deletion_runs(v) for k, v in out.items()}
        if len(self.servers) > 1:
            # A ZooKeeper follower may answer a sync before it applies (and notifies) a write
            # another server acknowledged: on several servers a session's notifications are
            # compared in their own order, apart from its replies (on one server, and in the
            # simulator's watch checker, where they fall among replies is checked too).
            out = {k: [x for x in v if not x.startswith("event ")] + ["-- notifications --"] +
                   [x for x in v if x.startswith("event ")] for k, v in out.items()}
        return out


def _sort_deletion_runs(lines):
    """Sorts each run of consecutive NodeDeleted/NodeChildrenChanged notifications: a closing
    session's ephemerals go in one transaction, deleted by ZooKeeper in hash-set order and by
    zraft in path order (ZooKeeper promises no order among them; COMPATIBILITY.md)."""
    out, run = [], []
    for line in lines + [None]:
        if line is not None and (line.startswith("event type=2 ") or line.startswith("event type=4 ")):
            run.append(line)
            continue
        out += sorted(run)
        run = []
        if line is not None:
            out.append(line)
    return out


def run_target(hosts, seed, ops):
    servers = [h.strip() for h in hosts.split(",") if h.strip()]
    # A base path of its own per run: the same server may run the same seed again.
    base = f"/dt{seed}-{time.time_ns() % 10**12}"
    runner = Runner(servers, base)
    result = runner.run(Program(seed, ops, base))
    return result, runner.coverage


def divergences(ref, cand):
    """Per session: the first line where the two runs differ (with a line of context)."""
    out = []
    for label in sorted(set(ref) | set(cand)):
        a, b = ref.get(label, []), cand.get(label, [])
        for i in range(max(len(a), len(b))):
            x = a[i] if i < len(a) else "<nothing>"
            y = b[i] if i < len(b) else "<nothing>"
            if x != y:
                out.append((label, i, a[i - 1] if 0 < i <= len(a) else "", x, y))
                break
    return out


class DropFirstNotification:
    """A TCP proxy in front of a server that drops the first watch notification it forwards:
    the deliberate difference the tester must report."""

    def __init__(self, upstream):
        self.host, self.port = upstream.rsplit(":", 1)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.addr = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.dropped = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            c, _ = self.listener.accept()
            u = socket.create_connection((self.host, int(self.port)))
            threading.Thread(target=self._pipe, args=(c, u), daemon=True).start()
            threading.Thread(target=self._frames, args=(u, c), daemon=True).start()

    def _pipe(self, a, b):
        try:
            while True:
                d = a.recv(65536)
                if not d:
                    break
                b.sendall(d)
        except OSError:
            pass
        _shutdown(a, b)

    def _frames(self, up, down):
        buf, first = b"", True
        try:
            while True:
                d = up.recv(65536)
                if not d:
                    break
                buf += d
                while len(buf) >= 4:
                    n = struct.unpack_from("!i", buf)[0]
                    if len(buf) < 4 + n:
                        break
                    frame, buf = buf[:4 + n], buf[4 + n:]
                    if not first and n >= 4 and struct.unpack_from("!i", frame, 4)[0] == -1 and self.dropped == 0:
                        self.dropped += 1
                        continue
                    first = False
                    down.sendall(frame)
        except OSError:
            pass
        _shutdown(up, down)


def _shutdown(*socks):
    for s in socks:
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def seeds_arg(s):
    a, _, b = s.partition("..")
    return range(int(a), int(b) if b else int(a) + 1)


def compare(ref_hosts, cand_hosts, seeds, ops, log=print):
    """Runs every seed on both targets; returns (divergences, operations, coverage)."""
    found, n_ops, cov = [], 0, Counter()
    for seed in seeds:
        ref, _ = run_target(ref_hosts, seed, ops)
        cand, c = run_target(cand_hosts, seed, ops)
        cov += c
        n_ops += sum(1 for k in c for _ in range(c[k]) if k[0] not in ("event", "reconnect"))
        d = divergences(ref, cand)
        for label, i, ctx, x, y in d:
            log(f"seed {seed} session {label} line {i}:\n    before: {ctx}\n    reference: {x}\n    candidate: {y}")
        found += [(seed,) + x for x in d]
    return found, n_ops, cov


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("hosts")
    c = sub.add_parser("compare")
    c.add_argument("reference")
    c.add_argument("candidate")
    sh = sub.add_parser("show", help="unified diffs of each session's observations")
    sh.add_argument("reference")
    sh.add_argument("candidate")
    sh.add_argument("--context", type=int, default=8)
    for p in (r, c, sh):
        p.add_argument("--seeds", type=seeds_arg, default=range(0, 1))
        p.add_argument("--ops", type=int, default=300)
    a = ap.parse_args()
    if a.cmd == "run":
        for seed in a.seeds:
            res, _ = run_target(a.hosts, seed, a.ops)
            for label in sorted(res):
                for line in res[label]:
                    print(f"{seed} {label} {line}")
        return 0
    if a.cmd == "show":
        import difflib
        for seed in a.seeds:
            ref, _ = run_target(a.reference, seed, a.ops)
            cand, _ = run_target(a.candidate, seed, a.ops)
            for label in sorted(set(ref) | set(cand)):
                d = list(difflib.unified_diff(ref.get(label, []), cand.get(label, []), "reference", "candidate",
                                              n=a.context, lineterm=""))
                if d:
                    print(f"== seed {seed} session {label}")
                    print("\n".join(d))
        return 0
    found, n, cov = compare(a.reference, a.candidate, a.seeds, a.ops)
    print(f"difftest: {len(a.seeds)} seeds, {n} requests, {len(found)} divergences")
    print("coverage: " + ", ".join(f"{k[0]}/{k[1]}={v}" for k, v in sorted(cov.items(), key=str)))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
