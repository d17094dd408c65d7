"""Where a vswitchd keeps its run-time files, by switch name.

    /var/run/mnovs/<name>.ctl   control socket (unixctl)
    /var/run/mnovs/<name>.pid   pid of the vswitchd
    /tmp/<name>-pyovs.log       log (Mininet keeps its switch logs in /tmp)
"""

import os

RUN_DIR = os.environ.get('MNOVS_RUN_DIR', '/var/run/mnovs')
LOG_DIR = os.environ.get('MNOVS_LOG_DIR', '/tmp')


def ctl_path(name):
    return os.path.join(RUN_DIR, f'{name}.ctl')


def pid_path(name):
    return os.path.join(RUN_DIR, f'{name}.pid')


def log_path(name):
    return os.path.join(LOG_DIR, f'{name}-pyovs.log')
