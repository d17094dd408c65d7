"""A stand-in vswitchd that serves only the bridge-layer contract, for testing the DB side.

    PYTHONPATH=.:tests/integration python -m mnovs.bridge --vswitchd fake_vswitchd:main

It keeps the last `bridge/apply` document and answers `bridge/status` from it:
an interface that exists in /sys/class/net (or an internal port) gets an
OpenFlow port number (its ofport_request, else the lowest free one; LOCAL
for the port named like the bridge), one that does not gets OVS's error.
Every configured controller is reported connected (so a test sees that the
switch got it). No packets move. It writes its pid file and stops on SIGTERM, as a vswitchd.
"""

import argparse
import inspect
import json
import os
import selectors
import signal

from mnovs import daemon, paths
from mnovs.unixctl import CommandError, UnixctlServer

OFPP_LOCAL = 0xfffffffe


def read_sys(name, attribute):
    with open(f'/sys/class/net/{name}/{attribute}') as f:
        return f.read().strip()


class FakeSwitch:
    def __init__(self, name):
        self.name = name
        self.state = None
        self.applies = 0

    def apply(self, document):
        try:
            state = json.loads(document)
        except ValueError as err:
            raise CommandError(f'bad JSON: {err}') from None
        if not isinstance(state, dict) or not isinstance(state.get('ports'), list):
            raise CommandError('expected an object with "ports"')
        self.state = state
        self.applies += 1
        return ''

    def status(self):
        ports, used = {}, set()
        entries = self.state['ports'] if self.state else []
        for entry in entries:
            if entry['name'] == self.name:
                number = OFPP_LOCAL
            else:
                number = entry['ofport_request'] or min(set(range(1, 1000)) - used)
            used.add(number)
            ports[entry['name']] = self.port_status(entry, number)
        return json.dumps({'datapath_id': self.state and self.state['datapath_id'],
                           'applies': self.applies, 'ports': ports,
                           'controllers': {t: {'is_connected': True} for t in
                                           (self.state or {}).get('controllers', [])}})

    def port_status(self, entry, number):
        name = entry['name']
        if entry['type'] != 'internal' and not os.path.exists(f'/sys/class/net/{name}'):
            return {'ofport': -1,
                    'error': f'could not open network device {name} (No such device)'}
        if entry['type'] == 'internal':
            return {'ofport': number, 'link_state': 'up', 'admin_state': 'up', 'error': None}
        return {'ofport': number, 'ifindex': int(read_sys(name, 'ifindex')),
                'mac_in_use': read_sys(name, 'address'), 'link_state': 'up',
                'admin_state': 'up', 'error': None,
                'statistics': {'rx_packets': 0, 'tx_packets': 0}}


def control_server(name, selector):
    """The control socket, with whichever mnovs.unixctl this tree has.

    Before the unixctl merge: a line protocol at <name>.ctl, accepted by hand;
    after: OVS's JSON-RPC at <name>.<pid>.ctl, served from the selector.
    """
    if 'selector' in inspect.signature(UnixctlServer).parameters:
        return UnixctlServer(paths.ctl_path(name, os.getpid()), selector, 'fake')
    server = UnixctlServer(paths.ctl_path(name))
    selector.register(server.sock, selectors.EVENT_READ, server.handle_accept)
    return server


def main(argv):
    parser = argparse.ArgumentParser()
    parser.add_argument('--name', required=True)
    args, _ = parser.parse_known_args(argv)
    pidfile = daemon.Pidfile(paths.pid_path(args.name))
    switch = FakeSwitch(args.name)
    selector = selectors.DefaultSelector()
    server = control_server(args.name, selector)
    server.register('bridge/apply', 'JSON', 1, 1, switch.apply)
    server.register('bridge/status', '', 0, 0, switch.status)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    while not stopping:
        for key, events in selector.select(0.2):
            key.data(events)
    server.close()
    pidfile.remove()
    return 0
