"""INV.* through redis-py's cluster client, which routes each command by the
keys the server reports (COMMAND's key positions, or COMMAND GETKEYS for the
multi-key commands, whose keys move with BUYER and QTY): run by redispy.rs
against a real 3-master cluster with PYTHONPATH set to the pinned redis-py.
Argument 1 is one node's port. Prints "ok cluster" when every check holds;
any failed check raises (exit status 1)."""
import sys

import redis
from redis.cluster import RedisCluster

port = int(sys.argv[1])
rc = RedisCluster(host="127.0.0.1", port=port, decode_responses=True)

# Keys on every master: each command must reach its key's owner (a wrong
# node answers MOVED, which redis-py would follow only for commands it
# routed itself; a CROSSSLOT or a key not found would fail the checks).
for tag in ("a", "b", "c", "d", "e", "f"):
    k1, k2 = "{%s}:tee" % tag, "{%s}:mug" % tag
    assert rc.execute_command("INV.SET", k1, 10) == "OK"
    assert rc.execute_command("INV.SET", k2, 10) == "OK"
    assert rc.execute_command("INV.RULES", k1, "LIMIT", 3) == "OK"
    r = rc.execute_command("INV.RESERVE", k1, "o1", 2, "BUYER", "alice")
    assert r == ["RESERVED", 8, 3], r
    try:
        rc.execute_command("INV.MRESERVE", "o2", 0, k1, 1, k2, 1)
    except redis.ResponseError as e:
        assert "per-buyer limit" in str(e), str(e)
    else:
        raise AssertionError("a reserve without BUYER on a key with a limit")
    r = rc.execute_command("INV.MRESERVE", "o2", "BUYER", "bob", 0, k1, 1, k2, 2)
    assert r[0] == "RESERVED", r
    r = rc.execute_command("INV.MCONFIRM", "o2", k1, "QTY", 1, k2, "QTY", 1)
    assert r[0] == "CONFIRMED", r
    r = rc.execute_command("INV.MCONFIRM", "o1", k1)
    assert r[0] == "CONFIRMED", r
    b = rc.execute_command("INV.BUYER", k2, "bob")
    assert b == ["held", 0, "bought", 1] or b == {"held": 0, "bought": 1}, b
    assert rc.execute_command("INV.ADJUST", k2, "none", 1)[0] == "UNKNOWN"
print("ok cluster")
