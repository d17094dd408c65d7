"""The sFlow agent, its options and the sample action, with real UDP collectors on loopback.

- Options: OVS's defaults, values the database allows but sFlow cannot use.
- Targets and the agent address, by OVS's rules.
- The agent: flow samples and counter samples as a collector receives
  them (decoded by tests/unit/sflow_decode.py), datagrams under 1400 bytes,
  sequence numbers, a collector that is not there or comes and goes.
- The sample action in the datapath, fast form and interpreter: over
  100,000 packets at sampling=64 the samples are within 3 standard
  deviations of the expectation and the sample pool grows by exactly the
  packets seen; at sampling=1 with a small upcall queue the switch forwards
  everything and counts the samples it could not queue.
- OFProto and xlate: the sample action leads every megaflow and its cookie
  says where the packet went; turning sFlow off revalidates it away.
"""

import math
import socket
from types import SimpleNamespace

import pytest
from sflow_decode import decode_datagram
from test_datapath import fake_port, receive
from test_ofproto import Switch as OFSwitch, apply, output, udp

from mnovs.dp import actions as odp_actions
from mnovs.dp.datapath import Datapath
from mnovs.dp.flow import make_key, make_mask
from mnovs.dp.odp_util import (
    decode_sflow_cookie, decode_sflow_upcall, encode_sflow_cookie, format_actions)
from mnovs.dp.sample import UINT32_MAX, SampleTap
from mnovs.ofagent.xlate import compose_sflow_action
from mnovs.sflow import wire
from mnovs.sflow.agent import SflowAgent
from mnovs.sflow.config import (
    DEFAULT_PORT, SflowOptions, choose_agent_address, parse_options, parse_target)

LO_IFINDEX = 1
SO_RCVBUFFORCE = 33            # Linux; root may pass rmem_max
MASK = make_mask(['in_port', 'eth_dst'])


@pytest.fixture
def collector():
    """A UDP socket on loopback; .target is its "IP:PORT"; .datagrams() drains it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 8 << 20)   # read at the end
    sock.bind(('127.0.0.1', 0))
    sock.settimeout(0.5)

    def datagrams():
        got = []
        try:
            while True:
                got.append(decode_datagram(sock.recv(65536)))
                sock.settimeout(0.05)
        except socket.timeout:
            pass
        sock.settimeout(0.5)
        return got
    yield SimpleNamespace(sock=sock, target=f'127.0.0.1:{sock.getsockname()[1]}',
                          datagrams=datagrams)
    sock.close()


def options(targets, sampling=64, polling=0, header=128, agent='127.0.0.1', sub_id=0):
    return SflowOptions(tuple(targets), sampling, polling, header, agent, sub_id, ())


def fake_dp(ports=()):
    """What the agent reads of a Datapath; port names must be real interfaces for ifindexes."""
    return SimpleNamespace(sample_pool=0, sample_lost=0,
                           ports={no: SimpleNamespace(port_no=no, name=name)
                                  for no, name in ports},
                           stats=lambda: {'hit': 5, 'missed': 2, 'lost': 0, 'masks_hit': 7,
                                          'flows': 1, 'masks_total': 1})


def frame(n=0, size=100):
    return bytes(10) + bytes.fromhex('0000000000020000000000010800') + bytes([n % 256]) * size


# --- options ---------------------------------------------------------------------

def test_options_take_ovs_defaults():
    opts = parse_options({'targets': ['127.0.0.1'], 'sampling': None, 'polling': None,
                          'header': None, 'agent': None})
    assert (opts.sampling, opts.polling, opts.header, opts.agent, opts.errors) == \
        (400, 30, 128, None, ())
    assert parse_options(None) is None


def test_options_that_cannot_work_are_errors_not_crashes():
    opts = parse_options({'targets': ['x'], 'sampling': -5, 'polling': -1, 'header': 0})
    assert opts.sampling == 0 and opts.polling == 0 and opts.header == 128
    assert len(opts.errors) == 3 and 'sampling=-5' in opts.errors[0]


@pytest.mark.parametrize('doc', ['x', {'targets': 'a'}, {'targets': [1]}, {'sampling': '64'},
                                 {'agent': 5}])
def test_a_document_of_the_wrong_shape_is_refused(doc):
    with pytest.raises(ValueError, match='bridge/apply: sflow'):
        parse_options(doc)


def test_targets_parse_as_ovs_does():
    assert parse_target('127.0.0.1') == (socket.AF_INET, ('127.0.0.1', DEFAULT_PORT))
    assert parse_target('10.0.0.1:6344') == (socket.AF_INET, ('10.0.0.1', 6344))
    assert parse_target('[::1]:7000') == (socket.AF_INET6, ('::1', 7000))
    with pytest.raises(ValueError, match='bad IP address "collector.example"'):
        parse_target('collector.example:6343')
    with pytest.raises(ValueError, match='bad port number "99999"'):
        parse_target('10.0.0.1:99999')


def test_agent_address_by_ovs_rules():
    assert choose_agent_address('lo', ['10.0.0.1']) == (bytes([127, 0, 0, 1]), None)
    assert choose_agent_address('192.0.2.7', ['127.0.0.1']) == (bytes([192, 0, 2, 7]), None)
    address, warning = choose_agent_address('nosuchdev0', ['127.0.0.1:6343'])
    assert address == bytes([127, 0, 0, 1]) and 'nosuchdev0' in warning   # route source
    assert choose_agent_address(None, ['bad target']) == (None, None)


# --- the agent ------------------------------------------------------------------

def test_flow_samples_reach_the_collector(collector):
    dp = fake_dp([(1, 'lo')])
    agent = SflowAgent('s1', options([collector.target]), dp, lambda: 0xab)
    assert agent.enabled and agent.probability == UINT32_MAX // 64
    for n in range(3):
        dp.sample_pool += 64
        agent.received(frame(n), 1, 0, 7, dp.sample_pool)
    dp.sample_lost = 2
    agent.received(frame(3, size=300), 9, 0x2005, wire.OUTPUT_MULTIPLE | 2, dp.sample_pool)
    assert collector.datagrams() == []                  # held for the tick...
    agent.run(agent.started + 1.0)                      # ...which comes every second
    (d,) = collector.datagrams()
    assert (d['version'], d['agent'], d['sequence']) == (5, bytes([127, 0, 0, 1]), 1)
    samples = d['samples']
    assert [s['sequence'] for s in samples] == [1, 2, 3, 4]
    assert [s['pool'] for s in samples] == [64, 128, 192, 192]
    assert [s['drops'] for s in samples] == [0, 0, 0, 2]
    assert [s['input'] for s in samples] == [LO_IFINDEX] * 3 + [0]   # port 9: unknown
    assert samples[3]['output'] == wire.OUTPUT_MULTIPLE | 2
    assert samples[3]['switch'] == (0, 0, 5, 1)
    assert samples[0]['header']['bytes'] == frame(0)[10:]
    assert samples[3]['header']['frame_length'] == len(frame(3, size=300)) - 10 + 4
    assert len(samples[3]['header']['bytes']) == 128
    assert all(s['source'] == 2 << 24 | 1000 and s['rate'] == 64 for s in samples)
    agent.close()


def test_datagrams_stay_under_1400_bytes_and_count_up(collector):
    dp = fake_dp([(1, 'lo')])
    agent = SflowAgent('s1', options([collector.target], header=200), dp, lambda: 1)
    for n in range(40):
        dp.sample_pool += 1
        agent.received(frame(n, size=300), 1, 0, LO_IFINDEX, dp.sample_pool)
    agent.flush()
    got = collector.datagrams()
    assert len(got) > 5
    assert [d['sequence'] for d in got] == list(range(1, len(got) + 1))
    assert [s['sequence'] for d in got for s in d['samples']] == list(range(1, 41))
    sizes = [sum(8 + 32 + 24 + 16 + 16 + 200 for _ in d['samples']) + 28 for d in got]
    assert max(sizes) <= wire.MAX_DATAGRAM_SIZE
    assert agent.receiver.sent == len(got)


def test_counter_samples_for_each_port_and_the_bridge(collector):
    dp = fake_dp([(1, 'lo')])
    agent = SflowAgent('s1', options([collector.target], polling=1), dp, lambda: 0xab)
    agent.run(agent.next_poll)
    (d,) = collector.datagrams()
    port, bridge = d['samples']
    assert port['source'] == LO_IFINDEX and port['port_name'] == 'lo'
    assert port['openflow_port'] == (0xab, 1)
    assert port['generic']['ifindex'] == LO_IFINDEX and port['generic']['status'] & 1
    with open('/sys/class/net/lo/statistics/rx_packets') as f:
        assert port['generic']['in_ucast'] <= int(f.read()) & 0xffffffff
    assert bridge['source'] == 2 << 24 | 1000 and bridge['ovsdp'] == (5, 2, 0, 7, 1, 1)
    assert 2203 in bridge['records']
    agent.run(agent.next_poll)
    (d,) = collector.datagrams()
    assert [s['sequence'] for s in d['samples']] == [2, 2]         # per source


def test_a_collector_that_is_not_there_then_comes(collector):
    """ICMP port unreachable makes later sends fail: counted, never raised."""
    target = collector.target
    port = collector.sock.getsockname()[1]
    collector.sock.close()
    dp = fake_dp([(1, 'lo')])
    agent = SflowAgent('s1', options([target, 'not-an-ip']), dp, lambda: 1)
    assert agent.enabled
    assert any('not-an-ip' in e and 'bad IP address' in e for e in agent.status()['errors'])
    for _ in range(5):
        agent.received(frame(), 1, 0, 1, 1)
        agent.flush()
    (live, _) = agent.collectors
    assert live.failed >= 1 and live.sent + live.failed == 5
    back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    back.bind(('127.0.0.1', port))
    back.settimeout(1)
    try:
        for _ in range(2):      # the first send may report the last datagram's refusal
            agent.received(frame(), 1, 0, 1, 1)
            agent.flush()
        assert decode_datagram(back.recv(65536))['samples'][0]['sequence'] in (6, 7)
    finally:
        back.close()
    assert 'target not-an-ip' in agent.show() and 'sent' in agent.show()
    agent.close()


def test_no_usable_target_leaves_sflow_disabled():
    agent = SflowAgent('s1', options(['bad', '10.0.0.1:0x']), fake_dp(), lambda: 1)
    assert not agent.enabled
    assert 'no collectors could be initialized, sFlow disabled' in agent.status()['errors']
    agent.received(frame(), 1, 0, 1, 1)     # an upcall still queued: harmless
    agent.run(10.0)
    agent.close()


# --- the sample action in the datapath -----------------------------------------------

def sample_action(sampling, output_if=2):
    return ('sample', max(1, UINT32_MAX // sampling),
            (('userspace', encode_sflow_cookie(0, output_if)),))


def sampled_datapath(collector, sampling, actions_after, queue_len=4096):
    """A Datapath with two fake ports, an agent on `collector`, and one sampled megaflow."""
    agent = None

    def userspace(packet, userdata, in_port):
        agent.received(packet, in_port, *decode_sflow_upcall(userdata))
    dp = Datapath('t', upcall=None, userspace=userspace, upcall_queue_len=queue_len)
    dp.ports.update({1: fake_port(1), 2: fake_port(2)})
    agent = SflowAgent('t', options([collector.target], sampling=sampling), dp, lambda: 1)
    flow = dp.flow_put(make_key(in_port=1, eth_dst=b'\0\0\0\0\0\2'), MASK,
                       (sample_action(sampling),) + actions_after)
    return dp, agent, flow


@pytest.mark.parametrize('fast', [True, False], ids=['fast-outs', 'interpreter'])
def test_sampling_64_over_100000_packets(collector, fast):
    n, rate = 100_000, 64
    # A push_vlan keeps the flow off the fast form (the interpreter's exec_sample).
    after = (('output', 2),) if fast else (('push_vlan', 0x8100, 5), ('output', 2))
    dp, agent, flow = sampled_datapath(collector, rate, after)
    assert isinstance(flow.fast_outs[0], SampleTap) if fast else flow.fast_outs is None
    packet = frame()
    taken = 0
    for i in range(n):
        receive(dp, dp.ports[1], packet)
        if i % 1000 == 999:
            taken += dp.handle_upcalls(budget=10_000)
    taken += dp.handle_upcalls(budget=10_000)
    agent.flush()
    expected = n / rate
    sd = math.sqrt(n * (1 / rate) * (1 - 1 / rate))
    assert abs(taken - expected) <= 3 * sd, (taken, expected, sd)
    assert dp.sample_pool == n and dp.sample_lost == 0
    assert len(dp.ports[2].sent) == n                   # every packet forwarded
    samples = [s for d in collector.datagrams() for s in d['samples']]
    assert len(samples) == taken == agent.sequence
    pools = [s['pool'] for s in samples]
    assert pools == sorted(pools) and len(set(pools)) == len(pools) and pools[-1] <= n
    assert all(s['output'] == 2 and s['rate'] == rate for s in samples)
    assert f'sample pool: {n}; flow samples: {taken}' in agent.show()


def test_sampling_1_counts_the_samples_it_cannot_queue(collector):
    dp, agent, _ = sampled_datapath(collector, 1, (('output', 2),), queue_len=50)
    for _ in range(500):
        receive(dp, dp.ports[1], frame())
    assert len(dp.ports[2].sent) == 500                 # forwarding goes on
    assert dp.sample_lost == 450 and dp.sample_pool == 500
    dp.handle_upcalls(budget=1000)
    agent.flush()
    samples = [s for d in collector.datagrams() for s in d['samples']]
    assert len(samples) == 50 and samples[-1]['drops'] == 450
    assert [s['pool'] for s in samples] == list(range(1, 51))     # the pool at each draw
    assert 'samples lost (upcall queue full): 450' in agent.show()


def test_exec_sample_probability_edges():
    calls = []
    dp = SimpleNamespace(sample_pool=0, sample_lost=0, output=lambda no, pkt: calls.append(no),
                         userspace=lambda pkt, data: calls.append(data) or True)
    odp_actions.execute(dp, frame(), (('sample', UINT32_MAX, (('output', 3),)), ('output', 2)))
    odp_actions.execute(dp, frame(), (('sample', 0, (('userspace', b'x'),)), ('output', 2)))
    assert calls == [3, 2, 2] and dp.sample_pool == 2
    odp_actions.execute(dp, frame(), (('sample', UINT32_MAX, (('userspace', b'S'),)),))
    assert calls[-1] == b'S' + (3).to_bytes(8, 'big')       # the pool follows the userdata
    odp_actions.validate_actions((sample_action(400),))
    with pytest.raises(ValueError):
        odp_actions.validate_actions((('sample', -1, ()),))
    with pytest.raises(ValueError):
        odp_actions.validate_actions((('sample', 5, (('nosuch',),)),))


def test_dump_syntax_is_ovs():
    assert format_actions((sample_action(64, 5), ('output', 2))) == \
        'sample(sample=1.6%,actions(userspace(pid=0,sFlow(vid=0,pcp=0,output=5)))),2'
    assert format_actions((sample_action(400),)).startswith('sample(sample=0.2%,')


# --- xlate and OFProto ---------------------------------------------------------------

def test_compose_sflow_action_encodes_the_outputs():
    sflow = SimpleNamespace(probability=99, ifindex={2: 12, 3: 0}.get)

    def output_of(actions):
        return decode_sflow_cookie(compose_sflow_action(sflow, actions, 0x1005)[0][2][0][1])
    assert output_of((('output', 2),)) == (0x1005, 12)
    assert output_of((('output', 3),)) == (0x1005, wire.OUTPUT_MULTIPLE | 1)  # no ifindex
    assert output_of((('output', 2), ('output', 3))) == (0x1005, wire.OUTPUT_MULTIPLE | 2)
    assert output_of(()) == (0x1005, wire.OUTPUT_DROPPED)


@pytest.mark.parametrize('fail_mode', ['secure', 'standalone'])
def test_ofproto_samples_every_megaflow_and_stops_when_cleared(collector, fail_mode):
    switch = OFSwitch(fail_mode=fail_mode)
    if fail_mode == 'secure':
        channel = switch.connect()
        switch.flow_mod(channel, priority=1, instructions=apply(output(2)))
    ofproto = switch.ofproto
    ofproto.set_sflow(options([collector.target], sampling=1))
    assert ofproto.ctx.sflow is ofproto.sflow and ofproto.need_revalidate
    ofproto.run()
    switch.receive(1, udp(1, 2))
    (flow,) = switch.dp.flow_dump()
    assert flow.actions[0][0] == 'sample' and flow.actions[0][1] == UINT32_MAX
    assert len(switch.port(2).frames()) == 1
    switch.receive(1, udp(1, 2))                        # a hit: the SampleTap
    switch.dp.handle_upcalls()
    ofproto.sflow.flush()
    samples = [s for d in collector.datagrams() for s in d['samples']]
    assert len(samples) == 2 and samples[1]['pool'] == 2
    agent = ofproto.sflow
    ofproto.run()
    ofproto.set_sflow(options([collector.target], sampling=1))     # same: no change
    assert ofproto.sflow is agent and not ofproto.need_revalidate
    ofproto.set_sflow(None)
    assert ofproto.ctx.sflow is None and ofproto.sflow is None
    ofproto.run()
    assert switch.dp.flow_dump() == []                  # the sampled megaflow is gone
    switch.receive(1, udp(1, 2))
    (flow,) = switch.dp.flow_dump()
    assert flow.actions[0][0] != 'sample'


def test_trace_shows_the_sample_action_and_why_vlan_is_in_the_megaflow():
    from test_trace import TracedSwitch
    switch = TracedSwitch()
    switch.ctx.sflow = SimpleNamespace(probability=UINT32_MAX // 64, ifindex=lambda port: 7)
    text = switch.trace('in_port=1,dl_src=00:00:00:00:00:01,dl_dst=00:00:00:00:00:02')
    assert ('Datapath actions: sample(sample=1.6%,actions(userspace(pid=0,'
            f'sFlow(vid=0,pcp=0,output={wire.OUTPUT_DROPPED}))))') in text
    assert "vlan_tci=0x0000  sFlow: the sample action's cookie holds the output VLAN" in text
    assert 'rewrites after the last output' not in text


def test_tunnel_records_hook_for_vxlan(collector):
    """The VXLAN work passes encoded tunnel records; they lead the flow sample."""
    dp = fake_dp([(1, 'lo')])
    agent = SflowAgent('s1', options([collector.target]), dp, lambda: 1)
    ingress = [wire.record_ipv4_tunnel(wire.FLOW_EX_IPV4_TUNNEL_INGRESS, 100, 17,
                                       bytes([192, 0, 2, 1]), bytes([192, 0, 2, 2]),
                                       40000, 4789, 0, 0),
               wire.record_vni(wire.FLOW_EX_VNI_INGRESS, 42)]
    agent.received(frame(), 1, 0, 1, 1, tunnel_records=ingress)
    agent.flush()
    (d,) = collector.datagrams()
    records = d['samples'][0]['records']
    assert set(records) == {1024, 1030, 1001, 1}
    assert records[1030] == (42).to_bytes(4, 'big') and len(records[1024]) == 32
    agent.close()


def test_a_sample_drawn_for_the_previous_agent_is_dropped(collector):
    dp = fake_dp([(1, 'lo')])
    dp.sample_pool = 10                 # packets sampled before this agent began
    agent = SflowAgent('s1', options([collector.target]), dp, lambda: 1)
    agent.received(frame(), 1, 0, 1, 9)         # queued under the old options
    agent.received(frame(), 1, 0, 1, 11)
    agent.flush()
    (d,) = collector.datagrams()
    assert [(s['sequence'], s['pool']) for s in d['samples']] == [(1, 1)]
    agent.close()
