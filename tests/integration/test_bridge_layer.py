"""The bridge layer against a real ovsdb-server and ovs-vsctl, with a stand-in vswitchd.

Everything runs in a private run directory (MNOVS_RUN_DIR, MNOVS_DB_DIR), so
these tests touch neither /var/run/mnovs nor the system's OVS. The switch
processes are tests/integration/fake_vswitchd.py, which serves the contract
(bridge/apply, bridge/status) and moves no packets: what is tested is the
database side -- processes per Bridge row, status and cur_cfg written back,
what ovs-vsctl prints, adoption after a restart, restart of a dead switch.
"""

import os
import signal
import subprocess
import sys

import pytest
from mnovs_db import ROOT, MnovsDb

from mnovs import daemon, process

if os.geteuid() != 0:
    pytest.skip('needs root (ovsdb-server, veths)', allow_module_level=True)
pytestmark = pytest.mark.integration


@pytest.fixture
def db(tmp_path):
    mnovs_db = MnovsDb(tmp_path, fake=True)
    try:
        mnovs_db.start()
        yield mnovs_db
    finally:
        mnovs_db.stop()
    assert not os.path.exists(mnovs_db.path('ovsdb-server.pid'))


def test_add_br_and_port_write_status_and_cur_cfg(db, veth):
    port = veth('tbl0')
    done = db.vsctl('add-br', 'tb1', '--', 'add-port', 'tb1', port)
    assert done.returncode == 0 and done.stderr == '', done.stderr
    assert db.get('interface', port, 'ofport') == '1'
    assert db.get('interface', 'tb1', 'ofport') == '65534'
    assert db.get('interface', port, 'ifindex') == \
        open(f'/sys/class/net/{port}/ifindex').read().strip()
    assert db.get('interface', port, 'link_state') == 'up'
    assert db.get('bridge', 'tb1', 'datapath_id').strip('"') != '[]'
    assert db.get('open_vswitch', '.', 'cur_cfg') == db.get('open_vswitch', '.', 'next_cfg')
    assert process.is_alive(db.pid('tb1'))


def test_missing_interface_error_is_printed_by_ovs_vsctl(db):
    assert db.vsctl('add-br', 'tb1').returncode == 0
    done = db.vsctl('add-port', 'tb1', 'nosuch0')
    assert done.returncode == 0
    assert "Error detected while setting up 'nosuch0'" in done.stderr
    assert 'could not open network device nosuch0 (No such device)' in done.stderr
    assert db.get('interface', 'nosuch0', 'ofport') == '-1'


def test_ofport_request_and_datapath_id_apply_live(db, veth):
    port = veth('tbl1')
    db.vsctl('add-br', 'tb1', '--', 'add-port', 'tb1', port)
    pid = db.pid('tb1')
    db.vsctl('set', 'interface', port, 'ofport_request=7', '--',
             'set', 'bridge', 'tb1', 'other_config:datapath-id=00000000000000aa')
    assert db.get('interface', port, 'ofport') == '7'
    assert db.get('bridge', 'tb1', 'datapath_id') == '"00000000000000aa"'
    assert db.pid('tb1') == pid, 'a live change must not restart the switch'


def test_bridges_of_one_transaction_start_and_del_br_stops(db):
    names = [f'tb{i}' for i in range(1, 6)]
    args = []
    for name in names:
        args += ['--', 'add-br', name]
    assert db.vsctl(*args).returncode == 0
    pids = {name: db.pid(name) for name in names}
    assert all(process.is_alive(pid) for pid in pids.values())
    assert db.vsctl('--', *sum((['del-br', n, '--'] for n in names[:3]), [])[:-1]).returncode == 0
    db.wait_for(lambda: not any(process.is_alive(pids[n]) for n in names[:3]), 'stopped')
    assert all(process.is_alive(pids[n]) for n in names[3:])
    assert not os.path.exists(db.path('tb1.pid'))


def test_restarted_bridge_layer_adopts_running_switches(db, veth):
    port = veth('tbl2')
    db.vsctl('add-br', 'tb1', '--', 'add-port', 'tb1', port)
    pid = db.pid('tb1')
    db.kill_bridge_layer()
    assert process.is_alive(pid), 'switches outlive the bridge layer'
    db.start_bridge_layer()
    db.vsctl('set', 'interface', port, 'ofport_request=9')
    assert db.get('interface', port, 'ofport') == '9'
    assert db.pid('tb1') == pid
    with open(db.log) as log:
        assert 'tb1: adopted running vswitchd' in log.read()


def test_dead_switch_comes_back_with_its_config(db, veth):
    port = veth('tbl3')
    db.vsctl('add-br', 'tb1', '--', 'add-port', 'tb1', port, '--',
             'set', 'interface', port, 'ofport_request=4', '--',
             'set-controller', 'tb1', 'tcp:127.0.0.1:6653')
    pid = db.pid('tb1')
    os.kill(pid, signal.SIGKILL)
    db.wait_for(lambda: db.pid('tb1') not in (None, pid) and process.is_alive(db.pid('tb1')),
                'restarted switch')
    db.vsctl('set', 'interface', port, 'ofport_request=5')
    assert db.get('interface', port, 'ofport') == '5'
    # The fake reports each controller it was given as connected.
    listed = db.vsctl('--bare', '--columns=target,is_connected', 'list', 'controller')
    assert listed.stdout.split() == ['tcp:127.0.0.1:6653', 'true']


def test_bridges_deleted_while_the_bridge_layer_was_down_are_stopped(db):
    db.vsctl('add-br', 'tb1', '--', 'add-br', 'tb2')
    pid1, pid2 = db.pid('tb1'), db.pid('tb2')
    db.kill_bridge_layer()
    assert db.vsctl('--no-wait', 'del-br', 'tb1').returncode == 0
    db.start_bridge_layer()
    db.wait_for(lambda: not process.is_alive(pid1), 'tb1 stopped')
    assert process.is_alive(pid2)


def test_a_second_bridge_layer_leaves_the_running_one_alone(db):
    first = db.bridge_proc.pid
    second = subprocess.run([sys.executable, '-m', 'mnovs.bridge', '--log-file', db.log],
                            env=db.env, cwd=ROOT, timeout=10, check=False)
    assert second.returncode == 0
    assert daemon.live_pid(db.path('mnovs-bridge.pid')) == first
    assert db.bridge_proc.poll() is None
