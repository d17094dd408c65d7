"""Tests for mnovs.dp.tunnel: OVS's options, defaults and error wording for tunnel ports."""

import socket

import pytest

from mnovs.dp.flow import make_key, make_mask, mask_of
from mnovs.dp.odp_util import format_actions, format_megaflow
from mnovs.dp.tunnel import (FLOW, INHERIT, TunnelConfigError, TunnelSpec, parse_tunnel_config,
                             spec_flags)


def ip(text):
    return socket.inet_aton(text)


def test_defaults_are_ovs_defaults():
    config, warnings = parse_tunnel_config('vx1', 'vxlan', {'remote_ip': '10.0.2.1'})
    assert warnings == []
    assert config.remote_ip == ip('10.0.2.1') and config.local_ip is None
    assert (config.in_key, config.out_key, config.dst_port) == (0, 0, 4789)
    assert (config.tos, config.ttl, config.csum, config.df) == (0, 64, False, True)


def test_key_sets_both_directions_and_in_out_key_override_it():
    config, _ = parse_tunnel_config('vx1', 'vxlan', {'remote_ip': '10.0.2.1', 'key': '42',
                                                     'out_key': 'flow'})
    assert (config.in_key, config.out_key) == (42, FLOW)
    config, _ = parse_tunnel_config('vx1', 'vxlan', {'remote_ip': 'flow', 'key': '0x10'})
    assert config.remote_ip == FLOW and config.in_key == config.out_key == 16


def test_every_option_is_read():
    config, warnings = parse_tunnel_config('vx1', 'vxlan', {
        'remote_ip': '10.0.2.1', 'local_ip': '10.0.1.1', 'dst_port': '8472', 'tos': 'inherit',
        'ttl': '5', 'csum': 'true', 'df_default': 'false'})
    assert warnings == []
    assert config.local_ip == ip('10.0.1.1') and config.dst_port == 8472
    assert (config.tos, config.ttl, config.csum, config.df) == (INHERIT, 5, True, False)
    assert spec_flags(config) == 0b110          # csum|key, no df


@pytest.mark.parametrize('options, message', [
    ({}, "vx1: vxlan type requires valid 'remote_ip' argument"),
    ({'remote_ip': 'nowhere'}, "vx1: vxlan type requires valid 'remote_ip' argument"),
    ({'remote_ip': '10.0.2.1', 'local_ip': 'flow'},
     "vx1: vxlan type requires 'remote_ip=flow' with 'local_ip=flow'"),
    ({'remote_ip': 'fe80::1'}, 'vx1: remote_ip=fe80::1: IPv6 tunnels are not supported by mnovs'),
    ({'remote_ip': '10.0.2.1', 'key': 'abc'}, "vx1: bad key 'abc': expected a number"),
    ({'remote_ip': '10.0.2.1', 'key': str(1 << 24)},
     'vx1: key 16777216 does not fit in a 24-bit VNI'),
    ({'remote_ip': '10.0.2.1', 'dst_port': '70000'}, 'vx1: invalid dst_port 70000'),
])
def test_a_port_that_cannot_work_gets_ovs_like_error(options, message):
    with pytest.raises(TunnelConfigError) as err:
        parse_tunnel_config('vx1', 'vxlan', options)
    assert str(err.value) == message


def test_soft_errors_are_warnings_as_in_ovs():
    config, warnings = parse_tunnel_config('vx1', 'vxlan', {
        'remote_ip': '10.0.2.1', 'tos': '3', 'colour': 'blue'})
    assert config.tos == 0
    assert sorted(warnings) == ['vx1: invalid TOS 3', "vx1: unknown vxlan argument 'colour'"]


def test_megaflow_prints_tunnel_metadata_before_in_port():
    key = make_key(in_port=3, tun_id=42, tun_src=ip('10.0.2.1'), tun_dst=ip('10.0.1.1'),
                   tun_flags=4, eth_type=0x0800)
    mask = bytes(a | b for a, b in zip(
        make_mask(['in_port', 'tun_id', 'tun_src', 'tun_dst', 'eth_type']), mask_of(tun_flags=7)))
    assert format_megaflow(key, mask) == (
        'tunnel(tun_id=0x2a,src=10.0.2.1,dst=10.0.1.1,flags(-df-csum+key)),'
        'in_port(3),eth(),eth_type(0x0800)')


def test_set_tunnel_prints_as_ovs_set_tunnel():
    spec = TunnelSpec(42, bytes(4), ip('10.0.2.1'), 0, 64, 4789, 0b101)
    assert format_actions((('set_tunnel', spec), ('output', 5))) == (
        'set(tunnel(tun_id=0x2a,dst=10.0.2.1,ttl=64,tp_dst=4789,flags(df|key))),5')
    keyless = TunnelSpec(0, ip('10.0.1.1'), ip('10.0.2.1'), 0x10, 3, 8472, 0b011)
    assert format_actions((('set_tunnel', keyless),)) == (
        'set(tunnel(src=10.0.1.1,dst=10.0.2.1,tos=0x10,ttl=3,tp_dst=8472,flags(df|csum)))')
