"""Read-only mode (readonlymode.enabled), observed the same way on real ZooKeeper 3.8 and zraft:
a 3-member ensemble loses two members; the survivor, cut off from any leader, must serve
read-only sessions to clients that can take one and answer writes NotReadOnly, then return to
read-write service when the others are back.

observe(ensemble) returns what a client sees, normalized, so that the two runs compare with ==.
`ensemble` has: hosts() (all client addresses), survivor (an address), stop_others(),
start_others().
"""
import time

from kazoo.client import KazooClient
from kazoo.exceptions import NotReadOnlyCallError
from kazoo.protocol.states import KeeperState

import jute as J

OPEN = [(31, "world", "anyone")]


four = J.four_letter


def mode(addr):
    for line in four(addr, "srvr").splitlines():
        if line.startswith("Mode:"):
            return line.split(":", 1)[1].strip()
    return ""


def wait(cond, secs, what):
    deadline = time.time() + secs
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def call(c, op, args=None):
    """One request on a raw connection: the error name and the decoded reply."""
    xid = c.send(op, args or {})
    c.wait(lambda st: any(x[0] == "reply" and x[1] == xid for x in st) or (st and st[-1][0] == "closed"))
    for x in c.stream:
        if x[0] == "reply" and x[1] == xid:
            return J.ERRORS.get(x[3], x[3]), J.decode_reply(op, x[3], x[4])
    return "closed", None


def connect(addr, read_only, **kw):
    """The handshake's outcome: ('session', read_only flag, conn) or ('refused', None, None)."""
    try:
        c = J.Conn(addr, read_only=read_only, **kw)
    except ConnectionError as e:
        return (str(e), None, None)
    return ("session", c.read_only, c)


def observe(ens, base):
    out = {}
    # Before: a normal ensemble; a session made now reattaches later.
    c = J.Conn(ens.survivor)
    call(c, J.CREATE, {"path": base, "data": b"before", "acl": OPEN, "flags": 0})
    call(c, J.CREATE, {"path": base + "/child", "data": b"", "acl": OPEN, "flags": 0})
    # An ephemeral makes the session global in a ZooKeeper with local sessions (it is always
    # global in zraft): every member knows it, and it may reattach anywhere.
    out["rw ephemeral"] = call(c, J.CREATE, {"path": base + "/eph", "data": b"", "acl": OPEN, "flags": 1})
    sid, pw, zxid = c.session_id, c.passwd, c.last_zxid
    out["rw isro"] = four(ens.survivor, "isro")
    out["rw connect read_only=True"] = connect(ens.survivor, True)[:2]
    c.close()

    ens.stop_others()
    wait(lambda: four(ens.survivor, "isro") == "ro", 60, "the survivor to go read-only")
    # ZooKeeper says "ro" a moment before its read-only server takes sessions: wait for one.
    wait(lambda: connect(ens.survivor, True)[0] == "session", 30, "a read-only session")
    out["ro isro"] = four(ens.survivor, "isro")
    out["ro srvr mode"] = mode(ens.survivor)
    out["ro connect read_only=False"] = connect(ens.survivor, False)[:2]
    kind, flag, ro = connect(ens.survivor, True)
    out["ro connect read_only=True"] = (kind, flag)
    out["ro session id"] = "new" if ro and ro.session_id not in (0, sid) else "other"
    for name, op, args in [
        ("getData", J.GET_DATA, {"path": base, "watch": True}),
        ("exists", J.EXISTS, {"path": base + "/nope", "watch": False}),
        ("getChildren", J.GET_CHILDREN, {"path": base, "watch": False}),
        ("create", J.CREATE, {"path": base + "/x", "data": b"", "acl": OPEN, "flags": 0}),
        ("setData", J.SET_DATA, {"path": base, "data": b"x", "version": -1}),
        ("delete", J.DELETE, {"path": base + "/child", "version": -1}),
        ("setACL", J.SET_ACL, {"path": base, "acl": OPEN, "version": -1}),
        ("multi", J.MULTI, {"ops": [(J.CHECK, {"path": base, "version": -1})]}),
        ("sync", J.SYNC, {"path": "/"}),
        ("getData after writes", J.GET_DATA, {"path": base, "watch": False}),
    ]:
        err, val = call(ro, op, args)
        if isinstance(val, tuple) and isinstance(val[0], bytes):
            val = val[0]
        elif isinstance(val, list):
            val = sorted(val)
        elif isinstance(val, dict):
            val = "stat"
        out[f"ro {name}"] = (err, val)
    out["ro closeSession of a read-only session"] = call(ro, J.CLOSE)[0]
    # The session made before: it reattaches read-only; closing it is a write.
    kind, flag, old = connect(ens.survivor, True, session_id=sid, passwd=pw, last_zxid=zxid)
    out["ro reattach earlier session"] = (kind, flag)
    if old:
        out["ro earlier session getData"] = call(old, J.GET_DATA, {"path": base, "watch": False})[0]
        out["ro closeSession of an earlier session"] = call(old, J.CLOSE)[0]
        old.close()
    # kazoo with read_only=True: connected read-only, reads work, a write is NotReadOnly.
    k = KazooClient(hosts=ens.survivor, read_only=True, timeout=10.0)
    k.start(timeout=20)
    out["kazoo client_state"] = str(k.client_state)
    out["kazoo get"] = k.get(base)[0]
    try:
        k.set(base, b"no")
        out["kazoo set"] = "accepted"
    except NotReadOnlyCallError:
        out["kazoo set"] = "NotReadOnlyCallError"
    k.stop()
    k.close()

    ens.start_others()
    wait(lambda: four(ens.survivor, "isro") == "rw", 60, "the survivor to serve read-write again")
    out["back isro"] = four(ens.survivor, "isro")
    k = KazooClient(hosts=ens.survivor, read_only=True, timeout=10.0)
    k.start(timeout=20)
    out["back kazoo client_state"] = str(k.client_state)
    k.set(base, b"after")
    out["back write"] = k.get(base)[0]
    k.delete(base, recursive=True)
    k.stop()
    k.close()
    assert out["kazoo client_state"] == str(KeeperState.CONNECTED_RO), out
    return out


# Observations where zraft differs on purpose (COMPATIBILITY.md): ZooKeeper 3.8.0's read-only
# server closes, without a reply, the connection of a session created before it went
# read-only (its client retries until a read-write server is back); zraft lets the session
# reattach read-only, refusing it only if the client has seen a newer zxid than its tree.
INTENDED = {
    "ro reattach earlier session": "zraft: a read-only session; ZooKeeper: connection closed",
    "ro earlier session getData": "follows from the reattach",
    "ro closeSession of an earlier session": "follows from the reattach (NotReadOnly in zraft)",
}


def diff(reference, candidate):
    """Differences, except the intended ones (which must still be present to be excused)."""
    return [(k, reference.get(k), candidate.get(k)) for k in sorted(set(reference) | set(candidate))
            if reference.get(k) != candidate.get(k) and k not in INTENDED]
