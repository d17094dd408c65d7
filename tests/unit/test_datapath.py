"""Datapath megaflow bookkeeping: limits, eviction, expiry, upcalls, lost upcalls."""

from types import SimpleNamespace

from mnovs.dp.datapath import Datapath
from mnovs.dp.flow import key_fields, make_key, make_mask, md_of

MASK = make_mask(['in_port', 'eth_dst'])


def key(n, port=1):
    return make_key(in_port=port, eth_dst=n.to_bytes(6, 'big'))


def fake_port(no):
    sent = []
    return SimpleNamespace(port_no=no, md=md_of(no), name=f'p{no}', up=True, sent=sent, ring=None,
                           tunnel=None,
                           rx_packets=0, rx_bytes=0, rx_dropped=0,
                           send=lambda pkt: sent.append(bytes(pkt)))


def test_flow_limit_evicts_least_recently_used():
    deleted = []
    dp = Datapath('t', upcall=None, flow_deleted=deleted.append, flow_limit=20,
                  max_idle=1000.0)
    flows = [dp.flow_put(key(n), MASK, (), now=float(n)) for n in range(20)]
    flows[0].used = 100.0                     # recently used: must survive
    dp.flow_put(key(99), MASK, (), now=50.0)
    assert len(dp.flow_dump()) <= 20
    assert flows[0].alive and not flows[1].alive
    assert dp.stats()['evicted'] == len(deleted) >= 1


def test_idle_megaflows_expire_and_are_reported():
    deleted = []
    dp = Datapath('t', upcall=None, flow_deleted=deleted.append, max_idle=10.0)
    old = dp.flow_put(key(1), MASK, (), now=0.0)
    fresh = dp.flow_put(key(2), MASK, (), now=8.0)
    dp.run_periodic(now=12.0)
    assert deleted == [old] and fresh.alive


def test_replacing_a_megaflow_reports_the_old_one():
    deleted = []
    dp = Datapath('t', upcall=None, flow_deleted=deleted.append)
    first = dp.flow_put(key(1), MASK, (('output', 1),), now=0.0)
    second = dp.flow_put(key(1), MASK, (('output', 2),), now=0.0)
    assert deleted == [first] and dp.flow_dump() == [second]


def receive(dp, port, packet, now=0.0):
    """A frame arrives: through the caches; a miss waits in the upcall queue."""
    dp._input(port, port.md, memoryview(packet), dp.emc.table.get, now)


def test_miss_is_queued_then_installs_megaflow_and_executes():
    dp = Datapath('t', upcall=lambda packet, k: ((('output', 2),), MASK, None))
    dp.ports.update({1: fake_port(1), 2: fake_port(2)})
    packet = bytes(10) + bytes.fromhex('000000000005') + bytes(54)
    receive(dp, dp.ports[1], packet)
    assert dp.flow_dump() == [] and dp.ports[2].sent == [] and dp.n_queued == 1
    assert dp.handle_upcalls() == 1
    (flow,) = dp.flow_dump()
    assert flow.packets == 1 and flow.bytes == 60
    assert dp.ports[2].sent == [packet]
    assert dp.stats()['missed'] == 1 and dp.n_queued == 0


def test_packets_queued_behind_a_miss_use_its_megaflow():
    calls = []

    def upcall(packet, k):
        calls.append(k)
        return (('output', 2),), MASK, None
    dp = Datapath('t', upcall=upcall)
    dp.ports.update({1: fake_port(1), 2: fake_port(2)})
    packets = [bytes(10) + bytes.fromhex('000000000005') + bytes([n]) * 54 for n in range(3)]
    for packet in packets:
        receive(dp, dp.ports[1], packet)
    dp.handle_upcalls()
    (flow,) = dp.flow_dump()
    assert len(calls) == 1 and flow.packets == 3
    assert dp.ports[2].sent == packets              # in order


def test_full_upcall_queue_loses_and_counts():
    dp = Datapath('t', upcall=lambda packet, k: ((), MASK, None), upcall_queue_len=4)
    dp.ports[1] = fake_port(1)
    for n in range(10):
        receive(dp, dp.ports[1], bytes(10) + n.to_bytes(6, 'big') + bytes(54))
    stats = dp.stats()
    assert stats['queued'] == 4 and stats['lost'] == 6
    assert stats['drops']['upcall-queue-full'] == 6
    assert dp.handle_upcalls() == 4 and len(dp.flow_dump()) == 4


def test_upcalls_are_served_one_port_at_a_time():
    # A flood of new flows on port 1 must not starve port 2's upcall.
    seen = []

    def upcall(packet, k):
        seen.append(key_fields(k)['in_port'])
        return (), None, None
    dp = Datapath('t', upcall=upcall)
    dp.ports.update({1: fake_port(1), 2: fake_port(2)})
    for n in range(100):
        receive(dp, dp.ports[1], bytes(10) + n.to_bytes(6, 'big') + bytes(54))
    receive(dp, dp.ports[2], bytes(10) + bytes(60))
    dp.handle_upcalls(budget=4)
    assert 2 in seen and len(seen) == 4


def test_userspace_action_is_queued_with_its_input_port():
    got = []
    dp = Datapath('t', upcall=None,
                  userspace=lambda packet, userdata, in_port: got.append((userdata, in_port)))
    dp.execute(memoryview(bytes(70)), (('userspace', b'cookie'),), in_port=3)
    assert got == [] and dp.n_queued == 1
    dp.handle_upcalls()
    assert got == [(b'cookie', 3)]


def test_upcall_queues_exist_only_while_they_hold_upcalls():
    # A controller's packet-outs may name any in_port: no empty queue stays.
    got = []
    dp = Datapath('t', upcall=None,
                  userspace=lambda packet, userdata, in_port: got.append(in_port))
    for in_port in range(1, 1001):
        dp.execute(memoryview(bytes(70)), (('userspace', b'c'),), in_port=in_port)
    assert len(dp.upcall_queues) == 1000
    while dp.handle_upcalls():
        pass
    assert len(got) == 1000 and dp.upcall_queues == {} and dp.queued_bytes == 0


def test_upcall_queues_are_bounded_in_bytes_too(monkeypatch):
    monkeypatch.setattr('mnovs.dp.datapath.UPCALL_QUEUE_BYTES', 3 * 65546)
    dp = Datapath('t', upcall=lambda packet, k: ((), None, None))
    dp.ports[1] = fake_port(1)
    for n in range(5):                          # 64 KB GSO frames
        receive(dp, dp.ports[1], bytes(10) + n.to_bytes(6, 'big') + bytes(65530))
    assert dp.n_queued == 3 and dp.stats()['drops']['upcall-queue-full'] == 2


def test_deleting_a_port_drops_its_queued_upcalls():
    dp = Datapath('t', upcall=None)
    dp.ports[1] = fake_port(1)
    dp.ports[1].close = lambda: None
    receive(dp, dp.ports[1], bytes(70))
    dp.del_port(1)
    assert dp.n_queued == 0 and dp.stats()['drops']['port-deleted'] == 1
    assert dp.handle_upcalls() == 0


def test_uncacheable_translation_executes_without_installing():
    dp = Datapath('t', upcall=lambda packet, k: ((('output', 2),), None, None))
    dp.ports[2] = fake_port(2)
    dp.handle_miss(memoryview(bytes(70)), key(5), now=1.0)
    assert dp.flow_dump() == [] and len(dp.ports[2].sent) == 1


def test_failing_upcall_is_counted_lost_not_raised():
    def broken(packet, k):
        raise RuntimeError('slow path bug')
    dp = Datapath('t', upcall=broken)
    dp.ports[1] = fake_port(1)
    for _ in range(20):
        receive(dp, dp.ports[1], bytes(70))
    dp.handle_upcalls()
    assert dp.stats()['lost'] == 20 and dp.stats()['drops']['upcall-error'] == 20


def test_deleting_a_port_deletes_its_megaflows():
    dp = Datapath('t', upcall=None)
    dp.ports[1] = SimpleNamespace(port_no=1, close=lambda: None)
    dp.ports[2] = SimpleNamespace(port_no=2, close=lambda: None)
    from_1 = dp.flow_put(key(1, port=1), MASK, (('output', 2),))
    to_1 = dp.flow_put(key(2, port=2), MASK, (('output', 1),))
    other = dp.flow_put(key(3, port=2), MASK, (('output', 3),))
    dp.del_port(1)
    assert not from_1.alive and not to_1.alive and other.alive


def test_a_deleted_megaflow_left_in_the_emc_never_forwards():
    # The EMC learns of no deletion: its entry points to a dead megaflow,
    # which the datapath must take for a miss and replace.
    frame = bytes.fromhex('000000000002' '000000000001' '0800') + bytes(46)
    upcalls = []

    def upcall(packet, k):
        upcalls.append(k)
        return (('output', len(upcalls) + 1),), make_mask(['in_port']), None
    dp = Datapath('t', upcall=upcall)
    port = fake_port(1)
    dp.ports.update({1: port, 2: fake_port(2), 3: fake_port(3)})
    packet = bytes(10) + frame
    receive(dp, port, packet)                              # upcall: output 2
    dp.handle_upcalls()
    receive(dp, port, packet)                              # classifier hit, EMC filled
    receive(dp, port, packet)                              # EMC hit
    assert len(upcalls) == 1 and len(dp.ports[2].sent) == 3
    dp.flow_flush()
    receive(dp, port, packet)                              # dead entry: a miss
    dp.handle_upcalls()
    assert len(upcalls) == 2 and len(dp.ports[3].sent) == 1 and len(dp.ports[2].sent) == 3
    receive(dp, port, packet)
    assert dp.emc.table[upcalls[0]].alive and len(dp.ports[3].sent) == 2
