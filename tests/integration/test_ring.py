"""The PACKET_MMAP receive ring on a real veth: reading, and recovery from a given-up slot."""

import socket
import subprocess
import time

import pytest

from mnovs.dp.datapath import Datapath
from mnovs.dp.netdev import STATUS, TP_STATUS_KERNEL

FRAME = bytes.fromhex('020000000002' '020000000001' '0800') + bytes(50)


@pytest.fixture
def veth():
    subprocess.run(['ip', 'link', 'add', 'mnring0', 'type', 'veth', 'peer', 'name', 'mnring1'],
                   check=True)
    try:
        for name in ('mnring0', 'mnring1'):
            # No IPv6 chatter from the kernel: the test counts every frame.
            with open(f'/proc/sys/net/ipv6/conf/{name}/disable_ipv6', 'w') as f:
                f.write('1')
            subprocess.run(['ip', 'link', 'set', name, 'up'], check=True)
        yield 'mnring0', 'mnring1'
    finally:
        subprocess.run(['ip', 'link', 'del', 'mnring0'], check=False)


def send(ifname, count):
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
        sock.bind((ifname, 0))
        for _ in range(count):
            sock.send(FRAME)
    time.sleep(0.1)


@pytest.fixture
def ring_port(veth):
    """(datapath, its port on the veth's switch side with an 8-slot ring, the
    sender side's name, the list that grows by one per upcall)."""
    sender, switch_side = veth
    seen = []
    dp = Datapath('ring', upcall=lambda packet, key: (seen.append(1) or (), None, None),
                  ring_slots=8)
    port = dp.add_port(switch_side, 1)
    try:
        yield dp, port, sender, seen
    finally:
        dp.close()


def test_ring_recovers_from_a_given_up_slot_when_full(ring_port):
    dp, port, sender, seen = ring_port
    send(sender, 8)                 # fill every slot
    # The kernel gives up slot 0 (as kernels before 5.7 could, for an skb
    # their vnet header could not describe): the reader waits there, the
    # ring is otherwise full, and poll stays quiet. Only the housekeeping
    # can move the reader on.
    STATUS.pack_into(port.ring_view, 0, TP_STATUS_KERNEL)
    now = time.monotonic()
    dp.check_rings(now)             # starts the grace period
    assert seen == []
    dp.check_rings(now + 1.0)       # a second later: skips the slot, reads on
    dp.handle_upcalls()
    assert len(seen) == 7
    assert dp.stats()['drops'].get('rx-slot-abandoned') == 1
    send(sender, 3)                 # and the ring goes on working
    dp.port_input(port)
    dp.handle_upcalls()
    assert len(seen) == 10


def test_frames_left_without_a_wakeup_are_read_by_the_ring_check(ring_port):
    # A reader out of step with the kernel's head gets no wake-up for the
    # frames at its slot (the socket is readable only while the slot before
    # the head is full). check_rings reads them and counts the recovery.
    dp, port, sender, seen = ring_port
    send(sender, 3)
    now = time.monotonic()
    dp.check_rings(now)             # its wake-up may still be on the way: wait
    assert seen == [] and dp.stats()['recoveries'] == {}
    dp.check_rings(now + 0.1)       # still waiting at the next check: missed
    dp.handle_upcalls()
    assert len(seen) == 3
    assert dp.stats()['recoveries'] == {'rx-missed-wakeup': 1}
    send(sender, 2)
    dp.port_input(port)             # a normal wake-up: no recovery counted
    dp.check_rings(now + 0.2)
    dp.check_rings(now + 0.3)
    dp.handle_upcalls()
    assert len(seen) == 5 and dp.stats()['recoveries'] == {'rx-missed-wakeup': 1}


def test_a_reader_ahead_of_the_kernel_steps_back(ring_port):
    # After a skip the reader can be one slot ahead of the kernel's head:
    # the next frame lands just behind it.
    dp, port, sender, seen = ring_port
    port.rx_slot = 1
    send(sender, 1)                 # into slot 0, behind the reader
    dp.port_input(port)
    dp.handle_upcalls()
    assert len(seen) == 1 and dp.stats()['recoveries'] == {'rx-resync': 1}
    send(sender, 2)                 # in step again: slots 1 and 2
    dp.port_input(port)
    dp.handle_upcalls()
    assert len(seen) == 3 and dp.stats()['recoveries'] == {'rx-resync': 1}
    assert 'rx-slot-abandoned' not in dp.stats()['drops']
