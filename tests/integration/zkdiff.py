"""Differential scenarios: the same kazoo 2.11 sessions against real ZooKeeper 3.8 and zraft,
recording what a client can observe (raw watch notifications in arrival order, error names,
whether a request used a zxid), normalized so that two servers' runs compare with ==.

collect(hosts) runs every scenario against one server and returns {scenario: result};
diff(reference, candidate) lists the scenarios whose results differ.
Scenarios chosen from what differed once (see COMPATIBILITY.md): watch bookkeeping, pipelined
requests, the empty path, checkWatches/removeWatches.
"""
import socket
import struct
import time
from collections import namedtuple

from kazoo.client import KazooClient
from kazoo.protocol import connection as kconn
from kazoo.protocol import serialization as S
from kazoo.security import OPEN_ACL_UNSAFE

# Raw notifications as they come off the wire (kazoo hides duplicates from one-shot watchers).
_RAW = {}
_orig_read_watch_event = kconn.ConnectionHandler._read_watch_event


def _spy(self, buffer, offset):
    typ, _state = struct.unpack_from("!ii", buffer, offset)
    path, _ = S.read_string(buffer, offset + 8)
    _RAW.setdefault(id(self.client), []).append((typ, path))
    return _orig_read_watch_event(self, buffer, offset)


kconn.ConnectionHandler._read_watch_event = _spy


class _PathMode(namedtuple("PathMode", "path mode")):
    def serialize(self):
        b = bytearray(S.write_string(self.path))
        b.extend(S.int_struct.pack(self.mode))
        return b

    @classmethod
    def deserialize(cls, bytes, offset):
        return True


class AddWatch(_PathMode):
    type = 106


class CheckWatches(_PathMode):
    type = 17


class RemoveWatches(_PathMode):
    type = 18


class CreateContainer(S.Create):
    type = 19


class CreateTTL(S.Create):
    type = 21

    def serialize(self):
        b = super().serialize()
        b.extend(S.long_struct.pack(5000))
        return b


def describe(v):
    """A server-independent summary of a reply: its shape, the czxid of any Stat (0 for the
    root), whether a child list holds /zookeeper, never data that differs between servers."""
    if isinstance(v, S.ZnodeStat):
        return f"stat(czxid={v.czxid})"
    if isinstance(v, tuple):
        return "(" + ", ".join(describe(x) for x in v) + ")"
    if isinstance(v, list):
        return f"list(zookeeper={'zookeeper' in v})" if all(isinstance(x, str) for x in v) else f"list[{len(v)}]"
    if isinstance(v, (bytes, bytearray)):
        return f"bytes[{len(v)}]"
    return repr(v) if v is None or isinstance(v, (bool, int)) else type(v).__name__


def call(zk, req):
    """Sends a raw request; 'ok' and a summary of the reply, or the exception's name."""
    r = zk.handler.async_result()
    zk._call(req, r)
    try:
        return "ok " + describe(r.get(timeout=10))
    except Exception as e:  # noqa: BLE001 - the error's kind is the observation
        return type(e).__name__


def _client(hosts):
    z = KazooClient(hosts=hosts, timeout=10.0)
    z.start(timeout=15)
    return z


def _events(zk, base):
    return [(t, p.replace(base, "B")) for t, p in _RAW.pop(id(zk), [])]


def _settle(w, path):
    # A round trip on the watching session: every notification of earlier writes came first.
    w.sync("/")
    w.exists(path)
    time.sleep(0.2)


def _nop(*_):
    return None


def watch_scenarios(hosts, base):
    """Each scenario: a fresh watching session registers, another session writes."""
    out = {}
    a = _client(hosts)
    a.ensure_path(base)

    def scenario(name, setup, act):
        w = _client(hosts)
        p = f"{base}/{name}"
        a.create(p, b"")
        _RAW.pop(id(w), None)
        setup(w, p)
        act(w, p)
        _settle(w, base)
        out[name] = _events(w, base)
        w.stop()

    def txn(*ops):
        t = a.transaction()
        for op in ops:
            op(t)
        return t.commit()

    scenario("children_twice", lambda w, p: (w.get_children(p, watch=_nop), w.get_children(p, watch=_nop)),
             lambda w, p: a.create(p + "/c"))
    scenario("data_and_exists", lambda w, p: (w.get(p, watch=_nop), w.exists(p, watch=_nop)),
             lambda w, p: a.set(p, b"1"))
    scenario("data_child_delete", lambda w, p: (w.get(p, watch=_nop), w.get_children(p, watch=_nop)),
             lambda w, p: a.delete(p))
    scenario("persistent_then_data", lambda w, p: (call(w, AddWatch(p, 0)), w.get(p, watch=_nop)),
             lambda w, p: (a.set(p, b"1"), a.set(p, b"2"), a.create(p + "/c")))
    scenario("data_then_persistent", lambda w, p: (w.get(p, watch=_nop), call(w, AddWatch(p, 0))),
             lambda w, p: (a.set(p, b"1"), a.set(p, b"2")))
    scenario("persistent_then_child", lambda w, p: (call(w, AddWatch(p, 0)), w.get_children(p, watch=_nop)),
             lambda w, p: (a.create(p + "/a"), a.set(p, b"1"), a.create(p + "/b"), a.set(p, b"2")))
    scenario("recursive_and_data_below", lambda w, p: (call(w, AddWatch(p, 1)), a.create(p + "/x"), w.get(p + "/x", watch=_nop)),
             lambda w, p: (a.set(p + "/x", b"1"), a.create(p + "/x/y"), a.delete(p + "/x/y")))
    scenario("recursive_then_oneshot_same_path", lambda w, p: (call(w, AddWatch(p, 1)), w.get(p, watch=_nop)),
             lambda w, p: (a.create(p + "/a"), a.set(p, b"1"), a.create(p + "/b")))
    scenario("oneshot_then_recursive_same_path", lambda w, p: (w.get(p, watch=_nop), call(w, AddWatch(p, 1))),
             lambda w, p: (a.create(p + "/a"), a.set(p, b"1"), a.delete(p + "/a")))
    scenario("exists_missing_then_create", lambda w, p: (a.delete(p), w.exists(p, watch=_nop)),
             lambda w, p: a.create(p))

    def pipelined_delete_exists(w, p):
        d = w.delete_async(p)
        e = w.exists_async(p, watch=_nop)
        d.get(), e.get()
        a.create(p)

    scenario("pipelined_delete_exists", _nop, pipelined_delete_exists)

    def pipelined_set_get(w, p):
        s = w.set_async(p, b"x")
        g = w.get_async(p, watch=_nop)
        s.get()
        assert g.get()[0] == b"x"
        a.set(p, b"y")

    scenario("pipelined_set_get", _nop, pipelined_set_get)
    scenario("multi_create_two", lambda w, p: w.get_children(p, watch=_nop),
             lambda w, p: txn(lambda t: t.create(p + "/x"), lambda t: t.create(p + "/y")))
    scenario("multi_delete_parent_child",
             lambda w, p: (a.create(p + "/x"), w.get_children(p, watch=_nop), w.get(p + "/x", watch=_nop),
                           w.get_children(p + "/x", watch=_nop)),
             lambda w, p: txn(lambda t: t.delete(p + "/x"), lambda t: t.delete(p)))

    def reconnect_set_watches(w, p):
        # The session moves to a new connection: kazoo re-sends its watches with setWatches.
        w.get(p, watch=_nop)
        w.get_children(p, watch=_nop)
        w._connection._socket.shutdown(socket.SHUT_RDWR)
        a.set(p, b"while away")
        deadline = time.time() + 15
        while w.state != "CONNECTED" and time.time() < deadline:
            time.sleep(0.05)
        a.create(p + "/c")

    scenario("reconnect_set_watches", _nop, reconnect_set_watches)
    a.stop()
    return out


def check_remove_scenario(hosts, base):
    """checkWatches/removeWatches answers for one session, with another one watching too."""
    a, w = _client(hosts), _client(hosts)
    p = f"{base}/cw"
    a.ensure_path(p)
    res = {"check_data_none": call(w, CheckWatches(p, 2))}
    a.get(p, watch=_nop)
    res["check_data_other_session"] = call(w, CheckWatches(p, 2))
    res["remove_data_other_session"] = call(w, RemoveWatches(p, 2))
    w.get(p, watch=_nop)
    res["check_child_when_data"] = call(w, CheckWatches(p, 1))
    res["check_any"] = call(w, CheckWatches(p, 3))
    call(w, AddWatch(p, 0))
    res["check_persistent"] = call(w, CheckWatches(p, 4))
    res["remove_persistent"] = call(w, RemoveWatches(p, 4))
    res["remove_recursive"] = call(w, RemoveWatches(p, 5))
    res["remove_child_after_persistent"] = call(w, RemoveWatches(p, 1))
    res["remove_any"] = call(w, RemoveWatches(p, 3))
    res["remove_any_again"] = call(w, RemoveWatches(p, 3))
    a.stop()
    w.stop()
    return res


class EmptyPath:
    """A request whose path is the empty string, length 0 on the wire (kazoo would send a null
    string for "", which ZooKeeper 3.8 fails with a NullPointerException: see COMPATIBILITY.md).
    `inner` gives the opcode and the fields after the path."""

    def __init__(self, inner):
        self.inner, self.type = inner, inner.type

    def serialize(self):
        rest = self.inner.serialize()[4:]  # kazoo wrote the path as -1 (null): drop it
        return bytearray(S.int_struct.pack(0)) + rest

    def deserialize(self, bytes, offset):
        return self.inner.deserialize(bytes, offset)


def empty_path_scenario(hosts, base):
    """Every opcode with the empty path (and two relative paths): the error, and whether the
    request used a zxid (a failed write does, as an error transaction)."""
    z = _client(hosts)
    seq = f"{base}/n-"
    z.ensure_path(base)
    reqs = {
        "create": S.Create("", b"", OPEN_ACL_UNSAFE, 0),
        "create2": S.Create2("", b"", OPEN_ACL_UNSAFE, 0),
        "createContainer": CreateContainer("", b"", OPEN_ACL_UNSAFE, 4),
        "createTTL": CreateTTL("", b"", OPEN_ACL_UNSAFE, 5),
        "delete": S.Delete("", -1),
        "setData": S.SetData("", b"", -1),
        "exists": S.Exists("", False),
        "getData": S.GetData("", False),
        "getChildren": S.GetChildren("", False),
        "getChildren2": S.GetChildren2("", False),
        "getACL": S.GetACL(""),
        "setACL": S.SetACL("", OPEN_ACL_UNSAFE, -1),
        "create_relative": S.Create("x", b"", OPEN_ACL_UNSAFE, 0),
        "create_trailing_slash": S.Create(base + "/", b"", OPEN_ACL_UNSAFE, 0),
        "delete_relative": S.Delete("x", -1),
        "getData_relative": S.GetData("x", False),
    }
    out = {}
    for k, req in reqs.items():
        if req.path == "":
            req = EmptyPath(req)
        before = z.exists(z.create(seq, b"", sequence=True)).czxid
        res = call(z, req)
        after = z.exists(z.create(seq, b"", sequence=True)).czxid
        out[k] = [res, after - before - 1]
    z.stop()
    return out


def collect(hosts, base="/zkdiff"):
    """Every scenario against one server (hosts may list several: the first is used)."""
    base = f"{base}-{int(time.time() * 1000) % 10**9}"
    out = {f"watch/{k}": v for k, v in watch_scenarios(hosts, base).items()}
    out["check_remove"] = check_remove_scenario(hosts, base)
    out["empty_path"] = empty_path_scenario(hosts, base)
    return out


def diff(reference, candidate):
    """(scenario, reference result, candidate result) for each difference."""
    keys = sorted(set(reference) | set(candidate))
    return [(k, reference.get(k), candidate.get(k)) for k in keys if reference.get(k) != candidate.get(k)]
