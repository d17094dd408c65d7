"""link_event reads a link notification's name and flags as pyroute2 would decode them."""

import pytest

from mnovs.linkmon import IFF_LOWER_UP, IFF_UP, RTM_NEWLINK, ifinfmsg, link_event


def encoded(name, flags, **attrs):
    msg = ifinfmsg()
    msg['index'] = 7
    msg['flags'] = flags
    msg['attrs'] = [('IFLA_ADDRESS', '02:00:00:00:00:01'), ('IFLA_MTU', 1500),
                    *(attrs.items()), ('IFLA_IFNAME', name)]
    msg['header']['type'] = RTM_NEWLINK
    msg.encode()
    return bytes(msg.data)


@pytest.mark.parametrize('name,flags', [('s1-eth1', IFF_UP | IFF_LOWER_UP), ('x', 0),
                                        ('a-fifteen-chars', IFF_UP)])
def test_name_and_flags_match_pyroute2(name, flags):
    raw = encoded(name, flags)
    decoded = ifinfmsg(raw)
    decoded.decode()
    assert link_event(raw) == (decoded.get_attr('IFLA_IFNAME'), decoded['flags']) == (name, flags)


def test_truncated_or_nameless_messages_give_no_name():
    raw = encoded('s1-eth1', IFF_UP)
    assert link_event(raw[:20]) == (None, 0)
    assert link_event(raw[:40])[0] is None       # cut before the name attribute
