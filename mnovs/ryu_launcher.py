"""mnovs-ryu: run stock Ryu apps on Python 3.11, as ryu-manager would.

    mnovs-ryu ryu.app.simple_switch_13
    mnovs-ryu --ofp-tcp-listen-port 6653 ryu.app.simple_monitor_13

Ryu 4.34's own ryu-manager dies on Python 3.11 with an ImportError: eventlet
0.33 no longer defines eventlet.wsgi.ALREADY_HANDLED, which Ryu imports. This
launcher defines it before Ryu is imported and then hands over to Ryu's
manager unchanged. Ryu is a controller-side dependency: nothing in the switch
imports it.
"""

import sys


def main():
    import eventlet.wsgi
    if not hasattr(eventlet.wsgi, 'ALREADY_HANDLED'):
        eventlet.wsgi.ALREADY_HANDLED = object()
    from ryu.cmd import manager
    sys.argv[0] = 'ryu-manager'
    manager.main()


if __name__ == '__main__':
    main()
