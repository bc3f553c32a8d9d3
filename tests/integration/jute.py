"""A raw ZooKeeper client for tests: jute encoding of every 3.8 request, one connection per
session, pipelined requests, and a reader thread that records replies and watch notifications
in the order they arrive. No client library in between, so nothing is hidden or reordered.
"""
import socket
import struct
import threading
import time

# Opcodes (zookeeper.jute / ZooDefs.OpCode).
CREATE, DELETE, EXISTS, GET_DATA, SET_DATA, GET_ACL, SET_ACL, GET_CHILDREN, SYNC = 1, 2, 3, 4, 5, 6, 7, 8, 9
GET_CHILDREN2, CHECK, MULTI, CREATE2, RECONFIG, CHECK_WATCHES, REMOVE_WATCHES = 12, 13, 14, 15, 16, 17, 18
CREATE_CONTAINER, CREATE_TTL, MULTI_READ, AUTH, SET_WATCHES = 19, 21, 22, 100, 101
GET_EPHEMERALS, GET_ALL_CHILDREN_NUMBER, SET_WATCHES2, ADD_WATCH, CLOSE = 103, 104, 105, 106, -11

ERRORS = {
    0: "OK", -4: "ConnectionLoss", -5: "MarshallingError", -6: "Unimplemented", -8: "BadArguments",
    -13: "NewConfigNoQuorum", -101: "NoNode", -102: "NoAuth", -103: "BadVersion",
    -108: "NoChildrenForEphemerals", -110: "NodeExists", -111: "NotEmpty", -112: "SessionExpired",
    -114: "InvalidACL", -115: "AuthFailed", -118: "SessionMoved", -119: "NotReadOnly",
    -120: "EphemeralOnLocalSession", -121: "NoWatcher", -123: "ReconfigDisabled", -125: "QuotaExceeded",
    -127: "Throttled",
}


class W:
    """A jute record writer."""

    def __init__(self):
        self.b = bytearray()

    def int(self, v):
        self.b += struct.pack("!i", v)
        return self

    def long(self, v):
        self.b += struct.pack("!q", v)
        return self

    def bool(self, v):
        self.b += b"\x01" if v else b"\x00"
        return self

    def buffer(self, v):
        if v is None:
            return self.int(-1)
        self.int(len(v))
        self.b += v
        return self

    def string(self, v):
        return self.buffer(None if v is None else v.encode())

    def strings(self, vs):
        self.int(len(vs))
        for v in vs:
            self.string(v)
        return self

    def acls(self, acls):
        self.int(len(acls))
        for perms, scheme, ident in acls:
            self.int(perms).string(scheme).string(ident)
        return self


class R:
    """A jute record reader."""

    def __init__(self, b, o=0):
        self.b, self.o = b, o

    def int(self):
        v = struct.unpack_from("!i", self.b, self.o)[0]
        self.o += 4
        return v

    def long(self):
        v = struct.unpack_from("!q", self.b, self.o)[0]
        self.o += 8
        return v

    def bool(self):
        v = self.b[self.o] != 0
        self.o += 1
        return v

    def buffer(self):
        n = self.int()
        if n < 0:
            return None
        v = bytes(self.b[self.o:self.o + n])
        self.o += n
        return v

    def string(self):
        v = self.buffer()
        return None if v is None else v.decode()

    def strings(self):
        return [self.string() for _ in range(self.int())]

    def stat(self):
        keys = ("czxid", "mzxid", "ctime", "mtime", "version", "cversion", "aversion",
                "ephemeralOwner", "dataLength", "numChildren", "pzxid")
        vals = [self.long(), self.long(), self.long(), self.long(), self.int(), self.int(), self.int(),
                self.long(), self.int(), self.int(), self.long()]
        return dict(zip(keys, vals))

    def acls(self):
        return [(self.int(), self.string(), self.string()) for _ in range(self.int())]


def encode_op(op, a):
    """The request body of one operation (a dict of its arguments)."""
    w = W()
    if op in (CREATE, CREATE2, CREATE_CONTAINER, CREATE_TTL):
        w.string(a["path"]).buffer(a["data"]).acls(a["acl"]).int(a["flags"])
        if op == CREATE_TTL:
            w.long(a["ttl"])
    elif op == DELETE:
        w.string(a["path"]).int(a["version"])
    elif op in (EXISTS, GET_DATA, GET_CHILDREN, GET_CHILDREN2):
        w.string(a["path"]).bool(a["watch"])
    elif op == SET_DATA:
        w.string(a["path"]).buffer(a["data"]).int(a["version"])
    elif op in (GET_ACL, SYNC, GET_ALL_CHILDREN_NUMBER, GET_EPHEMERALS):
        w.string(a["path"])
    elif op == SET_ACL:
        w.string(a["path"]).acls(a["acl"]).int(a["version"])
    elif op == CHECK:
        w.string(a["path"]).int(a["version"])
    elif op in (CHECK_WATCHES, REMOVE_WATCHES, ADD_WATCH):
        w.string(a["path"]).int(a["type"])
    elif op in (MULTI, MULTI_READ):
        for sub, sa in a["ops"]:
            w.int(sub).bool(False).int(-1)
            w.b += encode_op(sub, sa)
        w.int(-1).bool(True).int(-1)
    elif op == AUTH:
        w.int(0).string(a["scheme"]).buffer(a["auth"])
    elif op in (SET_WATCHES, SET_WATCHES2):
        w.long(a["zxid"]).strings(a["data"]).strings(a["exist"]).strings(a["child"])
        if op == SET_WATCHES2:
            w.strings(a["persistent"]).strings(a["recursive"])
    elif op == RECONFIG:
        w.string(a.get("joining")).string(a.get("leaving")).string(a.get("members")).long(a.get("config_id", -1))
    elif op == CLOSE:
        pass
    else:
        raise ValueError(f"no encoding for opcode {op}")
    return bytes(w.b)


def decode_reply(op, err, body):
    """What a successful reply holds, as plain values (stats as dicts)."""
    if err != 0 or op in (DELETE, CLOSE, CHECK_WATCHES, REMOVE_WATCHES, ADD_WATCH, AUTH,
                          SET_WATCHES, SET_WATCHES2, CHECK):
        return None
    r = R(body)
    if op == CREATE:
        return r.string()
    if op in (CREATE2, CREATE_CONTAINER, CREATE_TTL):
        return (r.string(), r.stat())
    if op in (EXISTS, SET_DATA, SET_ACL):
        return r.stat()
    if op == RECONFIG:
        return (r.buffer(), r.stat())
    if op == GET_DATA:
        return (r.buffer(), r.stat())
    if op == GET_ACL:
        return (r.acls(), r.stat())
    if op in (GET_CHILDREN, GET_EPHEMERALS):
        return r.strings()
    if op == GET_CHILDREN2:
        return (r.strings(), r.stat())
    if op == SYNC:
        return r.string()
    if op == GET_ALL_CHILDREN_NUMBER:
        return r.int()
    if op in (MULTI, MULTI_READ):
        out = []
        while True:
            typ, done, e = r.int(), r.bool(), r.int()
            if done:
                return out
            if typ == -1:
                out.append(("err", r.int()))
            elif typ == CREATE:
                out.append(("create", r.string()))
            elif typ == CREATE2:
                out.append(("create2", r.string(), r.stat()))
            elif typ == SET_DATA:
                out.append(("setData", r.stat()))
            elif typ in (DELETE, CHECK):
                out.append((typ,))
            elif typ == GET_DATA:
                out.append(("getData", r.buffer(), r.stat()))
            elif typ == GET_CHILDREN:
                out.append(("getChildren", r.strings()))
            else:
                raise ValueError(f"unexpected multi result type {typ}")
    raise ValueError(f"no decoding for opcode {op}")


class Conn:
    """One TCP connection of a session. Every frame received goes to `stream` in arrival order:
    ("reply", xid, zxid, err, body) or ("event", type, state, path); ("closed",) at EOF."""

    def __init__(self, addr, session_id=0, passwd=b"\0" * 16, timeout_ms=20000, last_zxid=0, read_only=False,
                 sock=None):
        host, port = addr.rsplit(":", 1)
        self.sock = sock or socket.create_connection((host, int(port)), timeout=10)
        self.sock.settimeout(None)
        self.lock = threading.Condition()
        self.stream = []
        self.closed = False
        w = W().int(0).long(last_zxid).int(timeout_ms).long(session_id).buffer(passwd).bool(read_only)
        self.sock.sendall(struct.pack("!i", len(w.b)) + bytes(w.b))
        resp = self._frame()
        if resp is None or len(resp) < 20:
            raise ConnectionError("handshake refused")
        r = R(resp)
        self.proto, self.timeout_ms, self.session_id = r.int(), r.int(), r.long()
        self.passwd = r.buffer()
        self.read_only = r.bool() if r.o < len(resp) else None
        if self.session_id == 0:
            raise ConnectionError("session expired")
        self.last_zxid = last_zxid
        self.xid = 0
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._ping, daemon=True).start()

    def _recv(self, n):
        b = b""
        while len(b) < n:
            c = self.sock.recv(n - len(b))
            if not c:
                return None
            b += c
        return b

    def _frame(self):
        h = self._recv(4)
        if h is None:
            return None
        return self._recv(struct.unpack("!i", h)[0])

    def _read(self):
        while True:
            try:
                f = self._frame()
            except OSError:
                f = None
            with self.lock:
                if f is None:
                    self.closed = True
                    self.stream.append(("closed",))
                    self.lock.notify_all()
                    return
                r = R(f)
                xid, zxid, err = r.int(), r.long(), r.int()
                if xid == -2:
                    continue  # ping
                if xid == -1:
                    self.stream.append(("event", r.int(), r.int(), r.string()))
                else:
                    if zxid > 0:
                        self.last_zxid = max(self.last_zxid, zxid)
                    self.stream.append(("reply", xid, zxid, err, f[16:]))
                self.lock.notify_all()

    def _ping(self):
        while not self.closed:
            time.sleep(self.timeout_ms / 3000.0)
            try:
                self.sock.sendall(struct.pack("!iii", 8, -2, 11))
            except OSError:
                return

    def send(self, op, args=None, xid=None):
        """Sends one request without waiting; returns its xid."""
        if xid is None:
            self.xid += 1
            xid = self.xid
        body = encode_op(op, args or {})
        self.sock.sendall(struct.pack("!iii", 8 + len(body), xid, op) + body)
        return xid

    def wait(self, pred, timeout=10.0):
        """Waits until pred(stream) holds (or the connection closed); False on timeout."""
        deadline = time.time() + timeout
        with self.lock:
            while not pred(self.stream) and not self.closed:
                left = deadline - time.time()
                if left <= 0:
                    return False
                self.lock.wait(left)
            return True

    def replies(self):
        with self.lock:
            return sum(1 for s in self.stream if s[0] == "reply")

    def close(self):
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def four_letter(addr, word):
    """A four-letter word's answer ("" if the server cannot be reached)."""
    host, port = addr.rsplit(":", 1)
    try:
        s = socket.create_connection((host, int(port)), timeout=2)
        s.sendall(word.encode())
        out = b""
        while True:
            b = s.recv(4096)
            if not b:
                break
            out += b
        s.close()
        return out.decode()
    except OSError:
        return ""

