"""INV.* through redis-py (RESP3 is its default from 8.x), under RESP2 and
RESP3: run by redispy.rs with PYTHONPATH set to the pinned redis-py. Argument
1 is the server's port. Prints one line per protocol when every check holds;
any failed check raises (exit status 1)."""
import sys

import redis
import redis.connection

port = int(sys.argv[1])
assert redis.connection.DEFAULT_RESP_VERSION == 3, "redis-py's default is RESP3"

FIELDS = ["stock", "reserved", "available", "sold", "version", "open", "records"]


def as_dict(reply, protocol):
    """INV.GET / INV.TX: a map under RESP3, flat pairs under RESP2."""
    if protocol == 3:
        assert isinstance(reply, dict), reply
        return reply
    assert isinstance(reply, list) and len(reply) % 2 == 0, reply
    return dict(zip(reply[0::2], reply[1::2]))


for protocol in (None, 2, 3):  # None: redis-py's default
    r = redis.Redis(port=port, protocol=protocol, decode_responses=True)
    effective = r.connection_pool.get_connection().protocol
    assert effective == (protocol or 3), effective
    sku = "py:%s" % protocol
    assert r.execute_command("INV.SET", sku, 10) == "OK"
    assert r.execute_command("INV.RESERVE", sku, "t1", 3, "TTL", 60000) == ["RESERVED", 7, 2]
    # A retry replays; a pipeline carries several commands in one round trip.
    p = r.pipeline(transaction=False)
    p.execute_command("INV.RESERVE", sku, "t1", 3)
    p.execute_command("INV.CANCEL", sku, "t2")
    p.execute_command("INV.RESERVE", sku, "t2", 1)
    assert p.execute() == [["RESERVED", 7, 2], ["CANCELLED", 7, 3], ["CANCELLED", 7, 3]]

    stock = as_dict(r.execute_command("INV.GET", sku), effective)
    assert list(stock) == FIELDS, list(stock)
    assert [stock[f] for f in FIELDS] == [10, 3, 7, 0, 3, 1, 2], stock
    tx = as_dict(r.execute_command("INV.TX", sku, "t1"), effective)
    assert tx["state"] == "RESERVED" and tx["qty"] == 3 and tx["deadline"] > 0, tx
    assert r.execute_command("INV.GET", "py:missing") is None
    assert r.execute_command("INV.TX", sku, "never") is None

    # MULTI/EXEC through redis-py's transactions.
    p = r.pipeline(transaction=True)
    p.execute_command("INV.CONFIRM", sku, "t1")
    p.execute_command("INV.ADD", sku, 5)
    assert p.execute() == [["CONFIRMED", 7, 4], 12]

    # Errors are redis-py's ResponseError with the module's text.
    assert r.execute_command("INV.RESERVE", sku, "t4", 1)[0] == "RESERVED"
    for args, start in [
        (("INV.RESERVE", sku, "t3", 0), "qty must be"),
        (("INV.RESERVE", sku, "t4", 2), "TXCONFLICT"),
        (("INV.SET", sku, 1, "IFVERSION", 99), "VERSION"),
    ]:
        try:
            r.execute_command(*args)
        except redis.ResponseError as e:
            assert str(e).startswith(start) or start in str(e), (args, str(e))
        else:
            raise AssertionError("no error for %r" % (args,))
    print("ok protocol=%d" % effective)
