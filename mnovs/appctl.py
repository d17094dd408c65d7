"""mnovs-appctl: send a command to a running vswitchd, as ovs-appctl does.

    mnovs-appctl s1 dpctl/show
    mnovs-appctl -t /var/run/mnovs/s1.ctl dpctl/dump-flows
    mnovs-appctl s1 list-commands

The target is a switch name (its socket is /var/run/mnovs/NAME.ctl) or a path
to a control socket. Exit status: 0 on success, 2 if the command failed, 1 if
the switch could not be reached.
"""

import argparse
import sys

from mnovs import paths, unixctl


def target_path(target):
    return target if '/' in target else paths.ctl_path(target)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='mnovs-appctl', description='Send a command to a running mnovs vswitchd.')
    parser.add_argument('-t', '--target', help='switch name or control socket path')
    parser.add_argument('--timeout', type=float, default=5.0, help='seconds to wait')
    parser.add_argument('words', nargs='+', metavar='[SWITCH] COMMAND [ARG...]')
    args = parser.parse_args(argv)
    words = args.words
    target = args.target
    if target is None:
        if len(words) < 2:
            print('mnovs-appctl: give a switch and a command, e.g. "mnovs-appctl s1 dpctl/show"',
                  file=sys.stderr)
            return 1
        target, words = words[0], words[1:]
    path = target_path(target)
    try:
        ok, out = unixctl.call(path, words, args.timeout)
    except OSError as err:
        print(f'mnovs-appctl: cannot talk to {target} at {path}: {err.strerror or err}',
              file=sys.stderr)
        return 1
    if out:
        print(out, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 2


if __name__ == '__main__':
    sys.exit(main())
