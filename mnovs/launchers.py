"""mnovs-appctl, mnovs-vsctl, mnovs-ofctl: OVS's own tools, pointed at mnovs.

    mnovs-appctl -t s1 dpctl/show       = OVS_RUNDIR=/var/run/mnovs ovs-appctl -t s1 dpctl/show
    mnovs-vsctl show                    = OVS_RUNDIR=/var/run/mnovs ovs-vsctl show
    mnovs-ofctl -O OpenFlow13 dump-flows s1

mnovs speaks OVS's protocols and keeps OVS's run-time layout in its own run
directory (mnovs.paths.RUN_DIR), so the unmodified binaries work once
OVS_RUNDIR points there: ovs-appctl finds <name>.pid and <name>.<pid>.ctl,
ovs-vsctl its database at db.sock, ovs-ofctl a bridge at <name>.mgmt. Each
launcher sets OVS_RUNDIR and execs the tool with the user's arguments, so the
tool's output, messages and exit codes are OVS's own.

    python -m mnovs.launchers appctl -t s1 dpctl/show     (the same, uninstalled)
"""

import os
import sys

from mnovs import paths

TOOLS = {'appctl': 'ovs-appctl', 'vsctl': 'ovs-vsctl', 'ofctl': 'ovs-ofctl'}


def launch(tool, args):
    """Exec OVS's `tool` with `args` and OVS_RUNDIR set to mnovs's run directory.

    Returns only if the tool cannot be run: 127, after a one-line message.
    """
    env = dict(os.environ, OVS_RUNDIR=paths.RUN_DIR)
    try:
        os.execvpe(tool, [tool, *args], env)
    except OSError as err:
        print(f'mnovs: cannot run {tool}: {err.strerror} (it comes with openvswitch-common)',
              file=sys.stderr)
    return 127


def appctl():
    return launch('ovs-appctl', sys.argv[1:])


def vsctl():
    return launch('ovs-vsctl', sys.argv[1:])


def ofctl():
    return launch('ovs-ofctl', sys.argv[1:])


def main(argv):
    if not argv or argv[0] not in TOOLS:
        print(f'usage: python -m mnovs.launchers {{{"|".join(TOOLS)}}} [ARG...]',
              file=sys.stderr)
        return 2
    return launch(TOOLS[argv[0]], argv[1:])


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
