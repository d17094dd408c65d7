"""dpctl/show names the LOCAL port and each port's type as OVS does."""

from types import SimpleNamespace

from mnovs import dpctl
from mnovs.dp.datapath import LOCAL_PORT, Datapath
from mnovs.dp.tunnel import parse_tunnel_config


def port(port_no, name, tunnel=None):
    return SimpleNamespace(port_no=port_no, name=name, up=True, ring=None, tunnel=tunnel,
                           rx_packets=0, rx_errors=0, rx_dropped=0, rx_bytes=0,
                           tx_packets=0, tx_dropped=0, tx_bytes=0)


def test_show_names_local_and_tunnel_ports():
    dp = Datapath('s1', upcall=None)
    config, _ = parse_tunnel_config('vx1', 'vxlan', {'remote_ip': 'flow', 'in_key': '5',
                                                     'out_key': 'flow', 'local_ip': '10.0.1.1'})
    dp.ports.update({1: port(1, 's1-eth1'), 3: port(3, 'vx1', config),
                     LOCAL_PORT: port(LOCAL_PORT, 's1')})
    text = dpctl.show(dp)
    assert '  port 1: s1-eth1 (up)' in text
    assert ('  port 3: vx1 (vxlan: remote_ip=flow, local_ip=10.0.1.1, in_key=5, '
            'out_key=flow, dst_port=4789; up)') in text
    assert text.index('port 3:') < text.index('  port LOCAL: s1 (up)')
