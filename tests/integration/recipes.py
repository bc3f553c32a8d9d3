"""kazoo 2.11's recipes, unchanged, against a zraft ensemble: each is driven by several clients
spread over the servers and its outcome checked (mutual exclusion, counts, order, events).
Called by real_clients.py with the ensemble's hosts; every function raises on failure."""
import threading
import time

from kazoo.client import KazooClient
from kazoo.recipe.barrier import Barrier, DoubleBarrier
from kazoo.recipe.counter import Counter
from kazoo.recipe.lock import Lock, ReadLock, Semaphore, WriteLock
from kazoo.recipe.party import Party
from kazoo.recipe.partitioner import SetPartitioner
from kazoo.recipe.queue import LockingQueue, Queue
from kazoo.recipe.cache import TreeCache, TreeEvent
from kazoo.recipe.watchers import ChildrenWatch, DataWatch


# Every client a recipe started, so that a failing recipe leaves none running.
STARTED = []


def clients(hosts_list, n):
    out = []
    for i in range(n):
        c = KazooClient(hosts=hosts_list[i % len(hosts_list)], timeout=10.0)
        c.start(timeout=15)
        STARTED.append(c)
        out.append(c)
    return out


def stop(cs):
    for c in cs:
        c.stop()
        c.close()


def stop_all():
    """Stops whatever a (failed) recipe left running."""
    while STARTED:
        c = STARTED.pop()
        try:
            c.stop()
            c.close()
        except Exception:  # noqa: BLE001 - already stopped
            pass


def run_threads(fns):
    errors = []

    def wrap(f):
        try:
            f()
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    ts = [threading.Thread(target=wrap, args=(f,)) for f in fns]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert not errors, errors


def lock_exclusion(hosts_list, base):
    """4 clients, 25 acquisitions each: never two holders; every acquisition happens."""
    cs = clients(hosts_list, 4)
    holders, max_seen, count = [0], [0], [0]
    guard = threading.Lock()

    def work(c, i):
        lock = Lock(c, f"{base}/lock", identifier=f"c{i}")
        for _ in range(25):
            with lock:
                with guard:
                    holders[0] += 1
                    max_seen[0] = max(max_seen[0], holders[0])
                    count[0] += 1
                time.sleep(0.001)
                with guard:
                    holders[0] -= 1

    run_threads([lambda c=c, i=i: work(c, i) for i, c in enumerate(cs)])
    stop(cs)
    assert max_seen[0] == 1 and count[0] == 100, (max_seen, count)
    return f"lock: 100 acquisitions by 4 clients, at most {max_seen[0]} holder"


def semaphore(hosts_list, base):
    """Semaphore of 2 leases, 4 clients: never more than 2 holders."""
    cs = clients(hosts_list, 4)
    inside, peak = [0], [0]
    guard = threading.Lock()

    def work(c, i):
        sem = Semaphore(c, f"{base}/sem", identifier=f"c{i}", max_leases=2)
        for _ in range(10):
            with sem:
                with guard:
                    inside[0] += 1
                    peak[0] = max(peak[0], inside[0])
                time.sleep(0.005)
                with guard:
                    inside[0] -= 1

    run_threads([lambda c=c, i=i: work(c, i) for i, c in enumerate(cs)])
    stop(cs)
    assert 1 <= peak[0] <= 2, peak
    return f"semaphore: 40 leases of 2, peak {peak[0]}"


def read_write_lock(hosts_list, base):
    """Readers share, a writer excludes everyone."""
    cs = clients(hosts_list, 4)
    state = {"readers": 0, "writers": 0, "bad": 0, "shared": 0}
    guard = threading.Lock()

    def reader(c):
        for _ in range(10):
            with ReadLock(c, f"{base}/rw"):
                with guard:
                    state["readers"] += 1
                    state["bad"] += state["writers"] > 0
                    state["shared"] = max(state["shared"], state["readers"])
                time.sleep(0.005)
                with guard:
                    state["readers"] -= 1

    def writer(c):
        for _ in range(10):
            with WriteLock(c, f"{base}/rw"):
                with guard:
                    state["writers"] += 1
                    state["bad"] += state["writers"] > 1 or state["readers"] > 0
                time.sleep(0.002)
                with guard:
                    state["writers"] -= 1

    run_threads([lambda: reader(cs[0]), lambda: reader(cs[1]), lambda: reader(cs[2]), lambda: writer(cs[3])])
    stop(cs)
    assert state["bad"] == 0, state
    return f"read/write lock: 30 reads, 10 writes, no overlap with a writer (readers shared up to {state['shared']})"


def election(hosts_list, base):
    """3 candidates: exactly one leader at a time; when it leaves, another is elected."""
    cs = clients(hosts_list, 3)
    leaders, active = [], [0]
    guard = threading.Lock()
    done = threading.Event()

    def lead(i):
        with guard:
            active[0] += 1
            leaders.append((i, active[0]))
        time.sleep(0.2)
        with guard:
            active[0] -= 1

    threads = []
    for i, c in enumerate(cs):
        e = c.Election(f"{base}/election", f"c{i}")
        t = threading.Thread(target=e.run, args=(lead, i))
        t.start()
        threads.append(t)
    for t in threads:
        t.join(60)
    done.set()
    stop(cs)
    assert sorted(i for i, _ in leaders) == [0, 1, 2] and all(a == 1 for _, a in leaders), leaders
    return "election: 3 candidates led in turn, one at a time"


def queues(hosts_list, base):
    """Queue: 50 items put by one client come out once each, in priority then FIFO order;
    LockingQueue: consume() only after get()."""
    cs = clients(hosts_list, 2)
    q = Queue(cs[0], f"{base}/queue")
    for i in range(50):
        q.put(f"{i:03}".encode(), priority=100 if i % 2 else 50)
    got = []
    q2 = Queue(cs[1], f"{base}/queue")
    while True:
        x = q2.get()
        if x is None:
            break
        got.append(x.decode())
    want = [f"{i:03}" for i in range(50) if i % 2 == 0] + [f"{i:03}" for i in range(50) if i % 2]
    assert got == want, got
    lq = LockingQueue(cs[0], f"{base}/lqueue")
    lq.put_all([b"a", b"b", b"c"])
    lq2 = LockingQueue(cs[1], f"{base}/lqueue")
    items = []
    for _ in range(3):
        items.append(lq2.get(timeout=10))
        assert lq2.consume()
    assert items == [b"a", b"b", b"c"], items
    stop(cs)
    return "queue: 50 items in priority/FIFO order; locking queue: 3 items got and consumed"


def counter(hosts_list, base):
    """4 clients add 25 each concurrently: 100."""
    cs = clients(hosts_list, 4)
    run_threads([lambda c=c: [Counter(c, f"{base}/counter").__add__(1) for _ in range(25)] for c in cs])
    value = Counter(cs[0], f"{base}/counter").value
    stop(cs)
    assert value == 100, value
    return "counter: 4 clients x 25 increments = 100"


def barriers(hosts_list, base):
    """Barrier holds waiters until removed; DoubleBarrier lets 3 in together and out together."""
    cs = clients(hosts_list, 3)
    b = Barrier(cs[0], f"{base}/barrier")
    b.create()
    released = []
    ts = [threading.Thread(target=lambda c=c: released.append(Barrier(c, f"{base}/barrier").wait(30))) for c in cs[1:]]
    for t in ts:
        t.start()
    time.sleep(0.5)
    assert released == [], "released before the barrier was removed"
    b.remove()
    for t in ts:
        t.join(30)
    assert released == [True, True], released
    joined, seen_at_entry = [0], []
    guard = threading.Lock()

    def double(c, i):
        d = DoubleBarrier(c, f"{base}/double", 3, identifier=f"c{i}")
        with guard:
            joined[0] += 1
        if i == 2:
            time.sleep(0.5)  # the last one is late: the others must wait for it
        d.enter()
        with guard:
            seen_at_entry.append(joined[0])
        d.leave()

    run_threads([lambda c=c, i=i: double(c, i) for i, c in enumerate(cs)])
    stop(cs)
    # enter() returned only once all three had joined.
    assert seen_at_entry == [3, 3, 3], seen_at_entry
    return "barrier: 2 waiters released on removal; double barrier: 3 entered and left together"


def party_and_partitioner(hosts_list, base):
    cs = clients(hosts_list, 3)
    parties = [Party(c, f"{base}/party", f"m{i}") for i, c in enumerate(cs)]
    for p in parties:
        p.join()
    assert len(parties[0]) == 3 and sorted(parties[1]) == ["m0", "m1", "m2"]
    parties[2].leave()
    assert len(parties[0]) == 2
    items = {f"w{i}" for i in range(12)}
    parts = [SetPartitioner(c, f"{base}/partition", items, identifier=f"p{i}", time_boundary=0.5) for i, c in enumerate(cs)]
    deadline = time.time() + 30
    while time.time() < deadline and not all(p.acquired for p in parts):
        for p in parts:
            if p.release:
                p.release_set()
        time.sleep(0.1)
    assert all(p.acquired for p in parts), [p.state for p in parts]
    owned = [set(p) for p in parts]
    assert set().union(*owned) == items and sum(len(o) for o in owned) == len(items), owned
    for p in parts:
        p.finish()
    stop(cs)
    return "party: 3 members, 2 after one left; set partitioner: 12 items split over 3 members, each once"


def watchers_across_expiry(hosts_list, base):
    """DataWatch and ChildrenWatch see every change, also after the session expires and the
    client gets a new one; TreeCache mirrors a subtree."""
    c, w = clients(hosts_list, 2)
    c.ensure_path(f"{base}/dw")
    data, kids = [], []
    DataWatch(w, f"{base}/dw", lambda d, s: data.append(d))
    ChildrenWatch(w, f"{base}/dw", lambda ch: kids.append(sorted(ch)))
    cache = TreeCache(w, f"{base}/dw")
    events = []
    cache.listen(lambda e: events.append(e.event_type))
    cache.start()
    time.sleep(0.5)
    c.set(f"{base}/dw", b"1")
    c.create(f"{base}/dw/a", b"x")
    deadline = time.time() + 10
    while time.time() < deadline and (b"1" not in data or ["a"] not in kids):
        time.sleep(0.05)
    assert b"1" in data and ["a"] in kids, (data, kids)
    # Expire the watcher's session: a second client with the same session id closes it.
    sid, pw = w.client_id
    z = KazooClient(hosts=hosts_list[0], client_id=(sid, pw), timeout=10.0)
    z.start(timeout=15)
    z.stop()
    z.close()
    def new_session():
        cid = w.client_id
        return cid is not None and cid[0] != sid and w.connected

    deadline = time.time() + 30
    while time.time() < deadline and not new_session():
        time.sleep(0.1)
    assert new_session(), "the session was not replaced after expiry"
    c.set(f"{base}/dw", b"2")
    c.create(f"{base}/dw/b", b"y")
    deadline = time.time() + 15
    while time.time() < deadline and (b"2" not in data or ["a", "b"] not in kids):
        time.sleep(0.05)
    assert b"2" in data and ["a", "b"] in kids, (data, kids)
    deadline = time.time() + 10
    while time.time() < deadline and cache.get_data(f"{base}/dw/b") is None:
        time.sleep(0.05)
    assert cache.get_data(f"{base}/dw/b").data == b"y"
    assert TreeEvent.NODE_ADDED in events
    cache.close()
    stop([c, w])
    return "data/children watch: changes seen before and after session expiry; tree cache mirrors the subtree"


def transactions(hosts_list, base):
    (c,) = clients(hosts_list, 1)
    c.ensure_path(base)
    t = c.transaction()
    t.create(f"{base}/t1", b"1")
    t.create(f"{base}/t2", b"2")
    t.check(base, 0)
    assert all(r is True or isinstance(r, str) for r in t.commit())
    t = c.transaction()
    t.delete(f"{base}/t1")
    t.create(f"{base}/t2", b"dup")  # fails: whole transaction rolls back
    res = t.commit()
    assert c.exists(f"{base}/t1") is not None, res
    stop([c])
    return "transactions: committed together, rolled back together"


ALL = [lock_exclusion, semaphore, read_write_lock, election, queues, counter, barriers,
       party_and_partitioner, watchers_across_expiry, transactions]
