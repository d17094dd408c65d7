"""Where mnovs keeps its run-time files: OVS's layout in mnovs's own run directory.

    /var/run/mnovs/<name>.pid         pid of the daemon, fcntl-locked while it runs
    /var/run/mnovs/<name>.<pid>.ctl   its control socket (unixctl)
    /var/run/mnovs/<name>.mgmt        a bridge's OpenFlow management socket
    /tmp/<name>-pyovs.log             log (Mininet keeps its switch logs in /tmp)

The run directory is OVS_RUNDIR for OVS's own tools: `OVS_RUNDIR=/var/run/mnovs
ovs-appctl -t s1 dpctl/show` reads s1.pid and connects to s1.<pid>.ctl, as it
does for ovs-vswitchd in /var/run/openvswitch. MNOVS_RUN_DIR moves it.
"""

import os
import re

RUN_DIR = os.environ.get('MNOVS_RUN_DIR', '/var/run/mnovs')
LOG_DIR = os.environ.get('MNOVS_LOG_DIR', '/tmp')


def ctl_path(name, pid):
    return os.path.join(RUN_DIR, f'{name}.{pid}.ctl')


def pid_path(name):
    return os.path.join(RUN_DIR, f'{name}.pid')


def log_path(name):
    return os.path.join(LOG_DIR, f'{name}-pyovs.log')


def mgmt_path(name):
    return os.path.join(RUN_DIR, f'{name}.mgmt')


def remove_switch_files(name):
    """Remove what a switch that died unwarned (SIGKILL) left: pid file, sockets."""
    for path in (pid_path(name), mgmt_path(name), *ctl_paths(name)):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def ctl_paths(name):
    """The control sockets of `name` present in the run directory, any pid."""
    pattern = re.compile(re.escape(name) + r'\.\d+\.ctl')
    try:
        entries = os.listdir(RUN_DIR)
    except FileNotFoundError:
        return []
    return [os.path.join(RUN_DIR, e) for e in sorted(entries) if pattern.fullmatch(e)]
