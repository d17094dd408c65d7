"""A private mnovs database, bridge layer and switches for a test, in its own directories.

MNOVS_RUN_DIR, MNOVS_DB_DIR and MNOVS_LOG_DIR point every mnovs process the
test starts at a temporary directory, so it touches neither /var/run/mnovs nor
the system's OVS; OVS_RUNDIR points ovs-vsctl there. Tests of the
bridge layer alone may run tests/integration/fake_vswitchd.py in place of
mnovs's vswitchd (fake=True).
"""

import os
import subprocess
import sys
import time

import pytest

from mnovs import daemon

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


class MnovsDb:
    """A private mnovs database and bridge layer in directory `base`.

    Args:
        fake: switches are fake_vswitchd (the contract only) instead of mnovs's vswitchd.
    """

    def __init__(self, base, fake=False):
        self.fake = fake
        self.run_dir = os.path.join(base, 'run')
        self.env = dict(os.environ, MNOVS_RUN_DIR=self.run_dir,
                        MNOVS_DB_DIR=os.path.join(base, 'db'), MNOVS_LOG_DIR=str(base),
                        PYTHONPATH=f'{ROOT}:{HERE}', OVS_RUNDIR=self.run_dir)
        self.log = os.path.join(base, 'mnovs-bridge.log')
        self.bridge_proc = None

    def python(self, code):
        subprocess.run([sys.executable, '-c', code], env=self.env, check=True, cwd=ROOT)

    def start(self):
        self.python('from mnovs import ovs_ctl; ovs_ctl.start_ovsdb()')
        self.start_bridge_layer()

    def start_bridge_layer(self):
        argv = [sys.executable, '-m', 'mnovs.bridge', '--log-file', self.log]
        if self.fake:
            argv += ['--vswitchd', 'fake_vswitchd:main']
        with open(self.log, 'ab') as log:
            self.bridge_proc = subprocess.Popen(
                argv,
                env=self.env, cwd=ROOT, stdout=log, stderr=log, start_new_session=True)
        self.wait_for(lambda: daemon.live_pid(self.path('mnovs-bridge.pid'))
                      == self.bridge_proc.pid, 'bridge layer pid file')

    def kill_bridge_layer(self):
        self.bridge_proc.kill()
        self.bridge_proc.wait()

    def stop(self):
        if self.bridge_proc and self.bridge_proc.poll() is None:
            self.bridge_proc.terminate()
            self.bridge_proc.wait(5)
        subprocess.run([sys.executable, '-m', 'mnovs.ovs_ctl', 'stop'], env=self.env,
                       cwd=ROOT, capture_output=True, check=False)

    def path(self, name):
        return os.path.join(self.run_dir, name)

    def vsctl(self, *args):
        return subprocess.run(['ovs-vsctl', '--timeout=20', *args], env=self.env,
                              capture_output=True, text=True, check=False)

    def get(self, *args):
        done = self.vsctl('get', *args)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def pid(self, bridge):
        return daemon.live_pid(self.path(f'{bridge}.pid'))

    @staticmethod
    def wait_for(predicate, what, timeout=15.0):
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, f'timed out waiting for {what}'
            time.sleep(0.05)


@pytest.fixture
def veth():
    """veth(name) makes a veth pair NAME/NAMEp in the root namespace; removed after the test."""
    names = []

    def make(name):
        subprocess.run(['ip', 'link', 'add', name, 'type', 'veth', 'peer', 'name', name + 'p'],
                       check=True)
        names.append(name)
        return name
    yield make
    for name in names:
        subprocess.run(['ip', 'link', 'del', name], check=False, capture_output=True)
